//! The indicator engine: folds stored events, in log order, into per-agency, per-period counters for months,
//! quarters and years at once. Exact after every event; a query only sums what is already counted.

use super::life::{Code, Col, Fact, Life, Use, COLS};
use super::scheme::{kind_slot, secs, Scheme, Secs, KINDS};
use crate::Catalogue;
use chrono::{DateTime, Utc};
use domain::calendar::{Cut, PeriodKind};
use domain::event::EventData;
use domain::StoredEvent;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One agency-period cell of the engine: its counters, by column index (`COLS` of them). Not a table `Row`.
pub type Tally = [i64; COLS];

/// Strings numbered in order of first sight.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Interner {
    names: Vec<String>,
    #[serde(skip)]
    numbers: HashMap<String, u32>,
}

impl Interner {
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&n) = self.numbers.get(name) {
            return n;
        }
        let n = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.numbers.insert(name.to_owned(), n);
        n
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.numbers.get(name).copied()
    }

    pub fn name(&self, n: u32) -> &str {
        &self.names[n as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Rebuilds the lookup after deserialising.
    pub fn reindex(&mut self) {
        self.numbers = self
            .names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
    }
}

/// Reads a dossier's stored events before a position, for a dossier the engine no longer holds in memory.
pub type Loader<'a> = dyn FnMut(&str, u64) -> Result<Vec<StoredEvent>, String> + 'a;

/// Why the engine could not fold an event. The engine is left as it was before that event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    /// Events must come in log order, without gaps (one already folded is ignored).
    #[error("the indicator engine is at position {at} and was handed position {handed}")]
    OutOfOrder { at: u64, handed: u64 },
    /// A dropped dossier's earlier events could not be read back (the loader's reason).
    #[error("{0}")]
    Reload(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct UseKey {
    kind: u8,
    agency: u32,
    period: i32,
    procedure: u32,
    usage: Use,
}

/// Everything the engine holds. Closed dossiers (returned or withdrawn) are dropped from memory: only a correction
/// can follow, and then their earlier events are read back through the loader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Engine {
    cut: Cut,
    pub(crate) agencies: Interner,
    pub(crate) procedures: Interner,
    /// Per agency, per period kind: period index → counters.
    #[serde(with = "tallies")]
    pub(crate) cells: Vec<[BTreeMap<i32, Tally>; 3]>,
    #[serde(with = "pairs")]
    pub(crate) usage: HashMap<UseKey, u32>,
    lives: HashMap<String, Life>,
    /// (instant, dossier): an open dossier that becomes late at that instant, once the log knows it.
    timers: BTreeSet<(Secs, String)>,
    /// The latest instant the log knows of: the greatest `recorded_at` or `occurred_at` so far.
    horizon: Secs,
    position: u64,
    recorded_at: Option<DateTime<Utc>>,
    pub(crate) catalogue: Catalogue,
    /// Dossiers read back through the loader (a measure of how often eviction costs a read).
    pub reloads: u64,
    /// Every this many positions, resolved dossiers whose processing ended more than `settled_after` before the
    /// horizon leave memory too: only a return or a correction can follow, and they are rare that late.
    sweep_every_events: u64,
    settled_after: Secs,
}

/// By default: sweep every 65,536 events; a dossier resolved 90 days before the log's time is settled.
const SWEEP_EVERY_EVENTS: u64 = 1 << 16;
const SETTLED_AFTER_SECS: Secs = 90 * 86_400;

impl Engine {
    pub fn new(cut: Cut) -> Engine {
        Engine {
            cut,
            agencies: Interner::default(),
            procedures: Interner::default(),
            cells: Vec::new(),
            usage: HashMap::new(),
            lives: HashMap::new(),
            timers: BTreeSet::new(),
            horizon: Secs::MIN,
            position: 0,
            recorded_at: None,
            catalogue: Catalogue::default(),
            reloads: 0,
            sweep_every_events: SWEEP_EVERY_EVENTS,
            settled_after: SETTLED_AFTER_SECS,
        }
    }

    /// Changes how often settled dossiers are dropped, and how long after their end (tests make both small, so
    /// that reading dossiers back is exercised often).
    pub fn with_eviction(mut self, sweep_every_events: u64, settled_after: Secs) -> Engine {
        self.sweep_every_events = sweep_every_events.max(1);
        self.settled_after = settled_after;
        self
    }

    /// Drops resolved dossiers that ended long enough before the horizon. Their contribution does not depend on
    /// the horizon and they have no timer, so nothing in the tables changes.
    fn sweep(&mut self) {
        let cutoff = self.horizon.saturating_sub(self.settled_after);
        self.lives
            .retain(|_, life| !life.ended().is_some_and(|end| end < cutoff));
    }

    pub fn cut(&self) -> Cut {
        self.cut
    }

    /// The last position folded.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The `recorded_at` of the last position folded.
    pub fn recorded_at(&self) -> Option<DateTime<Utc>> {
        self.recorded_at
    }

    /// The instant open dossiers are judged at when a period has not ended by then.
    pub fn horizon(&self) -> Secs {
        self.horizon
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Dossiers held in memory (open ones, and resolved ones not yet returned).
    pub fn dossiers_in_memory(&self) -> usize {
        self.lives.len()
    }

    pub fn scheme(&self, kind: PeriodKind) -> Scheme {
        Scheme::new(kind, self.cut)
    }

    pub fn agency_number(&self, code: &str) -> Option<u32> {
        self.agencies.get(code)
    }

    pub fn agency_code(&self, n: u32) -> &str {
        self.agencies.name(n)
    }

    pub fn agency_count(&self) -> usize {
        self.agencies.len()
    }

    pub fn procedure_number(&self, code: &str) -> Option<u32> {
        self.procedures.get(code)
    }

    fn intern_agency(&mut self, code: &str) -> u32 {
        let n = self.agencies.intern(code);
        while self.cells.len() <= n as usize {
            self.cells.push(Default::default());
        }
        n
    }

    /// Folds the next stored event. Events at or before the engine's position are ignored, so a follower may
    /// hand an event over twice. The loader is called only for an event of a dossier the engine has dropped.
    pub fn apply(&mut self, e: &StoredEvent, load: &mut Loader<'_>) -> Result<(), FoldError> {
        if e.position <= self.position {
            return Ok(());
        }
        if e.position != self.position + 1 {
            return Err(FoldError::OutOfOrder {
                at: self.position,
                handed: e.position,
            });
        }
        let dossier = match (&e.event.dossier, e.event.event_type().is_dossier_event()) {
            (Some(code), true) => Some(code.as_str()),
            _ => None,
        };
        // Read back a dropped dossier before changing anything, so that a failed read leaves the engine as it was.
        let reloaded = match dossier {
            Some(code)
                if !self.lives.contains_key(code)
                    && !matches!(e.event.data, EventData::Received(_)) =>
            {
                let earlier = load(code, e.position).map_err(FoldError::Reload)?;
                self.reloads += 1;
                Some(self.fold_life(&earlier))
            }
            _ => None,
        };
        self.position = e.position;
        self.recorded_at = Some(e.recorded_at);
        self.catalogue.apply(e);
        self.advance(secs(&e.recorded_at).max(secs(&e.event.occurred_at)));
        let Some(code) = dossier else {
            if self.position % self.sweep_every_events == 0 {
                self.sweep();
            }
            return Ok(());
        };
        let old = self.lives.remove(code).or(reloaded.flatten());
        let new = match (&e.event.data, old.clone()) {
            (EventData::Received(r), None) => {
                let agency = self.intern_agency(e.event.agency.as_ref().map_or("", |a| a.as_str()));
                let procedure = self.procedures.intern(r.procedure.as_str());
                Life::received(agency, procedure, secs(&e.event.occurred_at), r)
            }
            (_, Some(mut life)) => {
                self.fold_into(&mut life, e);
                life
            }
            // The log refuses both (a second receipt, an event before the receipt); nothing to count.
            (_, None) => return Ok(()),
        };
        if let Some(old) = &old {
            self.count(old, code, -1);
        }
        self.count(&new, code, 1);
        if !new.is_closed() {
            self.lives.insert(code.to_owned(), new);
        }
        if self.position % self.sweep_every_events == 0 {
            self.sweep();
        }
        Ok(())
    }

    fn fold_into(&mut self, life: &mut Life, e: &StoredEvent) {
        let (agencies, cells, procedures) =
            (&mut self.agencies, &mut self.cells, &mut self.procedures);
        life.apply(&e.event.occurred_at, &e.event.data, |code| match code {
            Code::Agency(a) => {
                let n = agencies.intern(a);
                while cells.len() <= n as usize {
                    cells.push(Default::default());
                }
                n
            }
            Code::Procedure(p) => procedures.intern(p),
        });
    }

    /// A dossier's life from its stored events (oldest first).
    fn fold_life(&mut self, events: &[StoredEvent]) -> Option<Life> {
        let mut life: Option<Life> = None;
        for e in events {
            match (&e.event.data, life.as_mut()) {
                (EventData::Received(r), None) => {
                    let agency =
                        self.intern_agency(e.event.agency.as_ref().map_or("", |a| a.as_str()));
                    let procedure = self.procedures.intern(r.procedure.as_str());
                    life = Some(Life::received(
                        agency,
                        procedure,
                        secs(&e.event.occurred_at),
                        r,
                    ));
                }
                (_, Some(l)) => self.fold_into(l, e),
                (_, None) => {}
            }
        }
        life
    }

    /// Adds (`sign` 1) or takes out (`sign` -1) everything `life` contributes, and keeps its timer in step.
    fn count(&mut self, life: &Life, code: &str, sign: i64) {
        let horizon = self.horizon;
        for kind in KINDS {
            let scheme = Scheme::new(kind, self.cut);
            let slot = kind_slot(kind);
            let (cells, usage) = (&mut self.cells, &mut self.usage);
            life.facts(&scheme, horizon, |fact| match fact {
                Fact::Cell {
                    agency,
                    period,
                    col,
                } => {
                    let row = cells[agency as usize][slot]
                        .entry(period)
                        .or_insert([0; COLS]);
                    row[col as usize] += sign;
                    if sign < 0 && row.iter().all(|v| *v == 0) {
                        cells[agency as usize][slot].remove(&period);
                    }
                }
                Fact::Used {
                    agency,
                    period,
                    procedure,
                    usage: u,
                } => {
                    let key = UseKey {
                        kind: slot as u8,
                        agency,
                        period,
                        procedure,
                        usage: u,
                    };
                    if sign > 0 {
                        *usage.entry(key).or_default() += 1;
                    } else if let Some(n) = usage.get_mut(&key) {
                        *n -= 1;
                        if *n == 0 {
                            usage.remove(&key);
                        }
                    }
                }
            });
        }
        if let Some(at) = life.wakes_at(horizon) {
            if sign > 0 {
                self.timers.insert((at, code.to_owned()));
            } else {
                self.timers.remove(&(at, code.to_owned()));
            }
        }
    }

    /// Moves the horizon forward to `to` (never back). Open dossiers that pass their due date by then are
    /// counted again.
    pub fn advance(&mut self, to: Secs) {
        if to <= self.horizon {
            return;
        }
        let mut woken = Vec::new();
        while let Some((at, _)) = self.timers.first() {
            if *at > to {
                break;
            }
            let (_, code) = self.timers.pop_first().expect("a first timer");
            woken.push(code);
        }
        let lives: Vec<(String, Life)> = woken
            .into_iter()
            .filter_map(|code| self.lives.get(&code).cloned().map(|l| (code, l)))
            .collect();
        for (code, life) in &lives {
            // Take out what it counted under the old horizon (its timer is already gone).
            self.count(life, code, -1);
        }
        self.horizon = to;
        for (code, life) in &lives {
            self.count(life, code, 1);
        }
    }

    /// The counters of one agency for one period: direct counts, with the open-dossier differences summed over
    /// every period up to it.
    pub fn counters(&self, agency: u32, kind: PeriodKind, period: i32) -> Tally {
        let Some(by_kind) = self.cells.get(agency as usize) else {
            return [0; COLS];
        };
        let periods = &by_kind[kind_slot(kind)];
        let mut row = periods.get(&period).copied().unwrap_or([0; COLS]);
        let (mut in_time, mut late, mut waiting_in_time, mut waiting_late) = (0, 0, 0, 0);
        for (_, r) in periods.range(..=period) {
            in_time += r[Col::TailInTime as usize] - r[Col::TailInTimeEnd as usize];
            late += r[Col::TailLate as usize];
            waiting_in_time += r[Col::TailWaitingInTime as usize];
            waiting_late += r[Col::TailWaitingLate as usize];
        }
        row[Col::OpenInTime as usize] += in_time;
        row[Col::OpenLate as usize] += late;
        row[Col::WaitingInTime as usize] += waiting_in_time;
        row[Col::WaitingLate as usize] += waiting_late;
        row
    }

    /// Whether any dossier of the agency used `procedure` as `usage` in the period.
    pub fn used(
        &self,
        agency: u32,
        kind: PeriodKind,
        period: i32,
        procedure: u32,
        usage: Use,
    ) -> bool {
        self.usage.contains_key(&UseKey {
            kind: kind_slot(kind) as u8,
            agency,
            period,
            procedure,
            usage,
        })
    }

    /// Folds every event from a source, in order: a rebuild.
    pub fn fold_all<I>(&mut self, events: I, load: &mut Loader<'_>) -> Result<(), FoldError>
    where
        I: IntoIterator<Item = StoredEvent>,
    {
        for e in events {
            self.apply(&e, load)?;
        }
        Ok(())
    }

    /// Restores the lookups a snapshot does not store.
    pub fn after_restore(&mut self) {
        self.agencies.reindex();
        self.procedures.reindex();
    }
}

/// The counters with each tally as a list: serde's derive stops at arrays of 32.
mod tallies {
    use super::{Tally, COLS};
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    type Cells = Vec<[BTreeMap<i32, Tally>; 3]>;

    pub fn serialize<S: Serializer>(cells: &Cells, s: S) -> Result<S::Ok, S::Error> {
        let lists: Vec<[Vec<(i32, &[i64])>; 3]> = cells
            .iter()
            .map(|kinds| {
                kinds
                    .each_ref()
                    .map(|m| m.iter().map(|(p, t)| (*p, &t[..])).collect())
            })
            .collect();
        lists.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cells, D::Error> {
        let lists = Vec::<[Vec<(i32, Vec<i64>)>; 3]>::deserialize(d)?;
        lists
            .into_iter()
            .map(|kinds| {
                let mut out: [BTreeMap<i32, Tally>; 3] = Default::default();
                for (slot, list) in kinds.into_iter().enumerate() {
                    for (period, values) in list {
                        let tally: Tally = values.try_into().map_err(|v: Vec<i64>| {
                            D::Error::custom(format!("a tally of {} counters, not {COLS}", v.len()))
                        })?;
                        out[slot].insert(period, tally);
                    }
                }
                Ok(out)
            })
            .collect()
    }
}

/// A map as a list of pairs: snapshot formats need not support struct keys.
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::HashMap;
    use std::hash::Hash;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &HashMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
