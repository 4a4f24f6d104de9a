//! The catalogue: agencies and their tree, the procedures each offers, and the targets in force, folded from the
//! reference events (`agency.registered`, `procedure.offered`, `target.set`).

use chrono::{DateTime, NaiveDate, Utc};
use domain::event::{AgencyLevel, EventData, OfferLevel, TargetScope};
use domain::{AgencyCode, Period, ProcedureCode, StoredEvent};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The deepest agency tree walked; deeper (or cyclic) parent chains stop there.
const TREE_DEPTH_MAX: usize = 16;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agency {
    pub code: AgencyCode,
    pub name: String,
    pub level: AgencyLevel,
    pub parent: Option<AgencyCode>,
    pub registered_at: DateTime<Utc>,
}

/// One offer of a procedure by an agency, as stated by one `procedure.offered` event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub agency: AgencyCode,
    pub procedure: ProcedureCode,
    pub name: String,
    pub online_level: OfferLevel,
    pub postal_receive: bool,
    pub postal_return: bool,
    pub effective_from: NaiveDate,
    pub position: u64,
    /// The procedure's field (lĩnh vực), when the offer names one.
    #[serde(default)]
    pub field: Option<ProcedureCode>,
    #[serde(default)]
    pub field_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub agency: TargetScope,
    pub from_period: Period,
    pub online_rate_min: f64,
    pub postal_rate_min: f64,
    pub position: u64,
}

/// The folded reference data.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Catalogue {
    agencies: BTreeMap<AgencyCode, Agency>,
    /// Every offer ever made, per (agency, procedure), oldest first: history is kept.
    offers: BTreeMap<(AgencyCode, ProcedureCode), Vec<Offer>>,
    targets: Vec<Target>,
    /// The last version applied per reference stream, so that applying an event twice changes nothing.
    versions: HashMap<String, u64>,
}

impl Catalogue {
    /// Folds one stored event; dossier events and events already applied are ignored.
    pub fn apply(&mut self, e: &StoredEvent) {
        if e.event.event_type().is_dossier_event() {
            return;
        }
        let key = e.event.stream().key();
        let seen = self.versions.entry(key).or_default();
        if e.version <= *seen {
            return;
        }
        *seen = e.version;
        let agency = e.event.agency.clone();
        match &e.event.data {
            EventData::AgencyRegistered(a) => {
                let code = agency.expect("agency events carry their agency");
                self.agencies.insert(
                    code.clone(),
                    Agency {
                        code,
                        name: a.name.to_string(),
                        level: a.level,
                        parent: a.parent.clone(),
                        registered_at: e.recorded_at,
                    },
                );
            }
            EventData::ProcedureOffered(p) => {
                let code = agency.expect("procedure events carry their agency");
                self.offers
                    .entry((code.clone(), p.procedure.clone()))
                    .or_default()
                    .push(Offer {
                        agency: code,
                        procedure: p.procedure.clone(),
                        name: p.name.to_string(),
                        online_level: p.online_level,
                        postal_receive: p.postal_receive,
                        postal_return: p.postal_return,
                        effective_from: p.effective_from,
                        position: e.position,
                        field: p.field.clone(),
                        field_name: p.field_name.as_ref().map(|n| n.to_string()),
                    });
            }
            EventData::TargetSet(t) => self.targets.push(Target {
                agency: t.agency.clone(),
                from_period: t.from_period,
                online_rate_min: t.online_rate_min,
                postal_rate_min: t.postal_rate_min,
                position: e.position,
            }),
            _ => {}
        }
    }

    pub fn agency(&self, code: &AgencyCode) -> Option<&Agency> {
        self.agencies.get(code)
    }

    pub fn agencies(&self) -> impl Iterator<Item = &Agency> {
        self.agencies.values()
    }

    /// Whether `agency` is `scope` or registered (at any depth) below it.
    pub fn in_scope(&self, scope: &AgencyCode, agency: &AgencyCode) -> bool {
        let mut current = Some(agency);
        for _ in 0..TREE_DEPTH_MAX {
            match current {
                Some(code) if code == scope => return true,
                Some(code) => current = self.agencies.get(code).and_then(|a| a.parent.as_ref()),
                None => return false,
            }
        }
        false
    }

    /// The agency itself and every agency above it, nearest first (each once, at most `TREE_DEPTH_MAX`).
    pub fn ancestors<'a>(&'a self, agency: &'a AgencyCode) -> Vec<&'a AgencyCode> {
        let mut chain = vec![agency];
        while let Some(parent) = self
            .agencies
            .get(*chain.last().expect("never empty"))
            .and_then(|a| a.parent.as_ref())
        {
            if chain.len() >= TREE_DEPTH_MAX || chain.contains(&parent) {
                break;
            }
            chain.push(parent);
        }
        chain
    }

    /// The offer in force for each (agency, procedure) on `on` (the latest with `effective_from <= on`), for one
    /// agency or all.
    pub fn offers_on(&self, on: NaiveDate, agency: Option<&AgencyCode>) -> Vec<&Offer> {
        self.offers
            .iter()
            .filter(|((a, _), _)| agency.is_none_or(|want| a == want))
            .filter_map(|(_, history)| {
                history
                    .iter()
                    .filter(|o| o.effective_from <= on)
                    .max_by_key(|o| (o.effective_from, o.position))
            })
            .collect()
    }

    /// The latest offer stated for (agency, procedure), whatever its effective date.
    pub fn latest_offer(&self, agency: &AgencyCode, procedure: &ProcedureCode) -> Option<&Offer> {
        self.offers
            .get(&(agency.clone(), procedure.clone()))
            .and_then(|h| h.last())
    }

    /// The field (code and name) of a procedure: as the latest offer of it, by any agency, that names one says.
    pub fn field_of(&self, procedure: &ProcedureCode) -> Option<(&ProcedureCode, Option<&str>)> {
        self.offers
            .iter()
            .filter(|((_, p), _)| p == procedure)
            .flat_map(|(_, history)| history.iter())
            .filter(|o| o.field.is_some())
            .max_by_key(|o| o.position)
            .map(|o| (o.field.as_ref().expect("filtered"), o.field_name.as_deref()))
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
}
