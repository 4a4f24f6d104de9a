//! Reading tables out of the engine.

use super::engine::Engine;
use super::life::{Col, Use};
use super::profile::Definitions;
use super::scheme::vietnam_day;
use super::table::{group_rows, Counts, Group, Row};
use crate::catalogue::Offer;
use chrono::NaiveDate;
use domain::event::OfferLevel;
use domain::{AgencyCode, Period};
use std::collections::{BTreeSet, HashMap};

impl Engine {
    /// Every agency that is registered or appears in a dossier event, in code order.
    pub fn agency_codes(&self) -> Vec<AgencyCode> {
        let mut codes: BTreeSet<AgencyCode> =
            self.catalogue.agencies().map(|a| a.code.clone()).collect();
        for n in 0..self.agencies.len() {
            if let Ok(code) = AgencyCode::parse(self.agencies.name(n as u32)) {
                codes.insert(code);
            }
        }
        codes.into_iter().collect()
    }

    /// One agency's counts for a period, alone.
    pub fn agency_counts(&self, agency: &AgencyCode, period: Period) -> Counts {
        let offers = self
            .catalogue
            .offers_on(last_day(self, period), Some(agency));
        self.counts_with_offers(agency, period, &offers)
    }

    fn counts_with_offers(&self, agency: &AgencyCode, period: Period, offers: &[&Offer]) -> Counts {
        let kind = period.kind();
        let scheme = self.scheme(kind);
        let index = scheme.index_of(period);
        let mut c = Counts::default();
        if let Some(n) = self.agency_number(agency.as_str()) {
            let row = self.counters(n, kind, index);
            let before = self.counters(n, kind, index - 1);
            let v = |col: Col| row[col as usize];
            c.received = v(Col::Received);
            c.received_counter = v(Col::ReceivedCounter);
            c.received_online = v(Col::ReceivedOnline);
            c.received_postal = v(Col::ReceivedPostal);
            c.level3 = v(Col::Level3);
            c.level4 = v(Col::Level4);
            c.partial = v(Col::Partial);
            c.full = v(Col::Full);
            c.postal_received = v(Col::ReceivedPostal);
            c.postal_returned = v(Col::PostalReturned);
            c.postal_dossiers = v(Col::PostalDossiers);
            c.returned = v(Col::Returned);
            c.returned_counter = v(Col::ReturnedCounter);
            c.returned_online = v(Col::ReturnedOnline);
            c.returned_postal = v(Col::ReturnedPostal);
            c.carried_over = before[Col::OpenInTime as usize] + before[Col::OpenLate as usize];
            c.resolved_early = v(Col::ResolvedEarly);
            c.resolved_on_time = v(Col::ResolvedOnTime);
            c.resolved_late = v(Col::ResolvedLate);
            c.open_in_time = v(Col::OpenInTime);
            c.open_late = v(Col::OpenLate);
            c.withdrawn = v(Col::Withdrawn);
            c.transferred_in = v(Col::TransferredIn);
            c.transferred_out = v(Col::TransferredOut);
            c.withdrawn_at_end = v(Col::WithdrawnAtEnd);
            c.unresolved_early = v(Col::UnresolvedEarly);
            c.unresolved_on_time = v(Col::UnresolvedOnTime);
            c.unresolved_late = v(Col::UnresolvedLate);
            c.waiting_in_time = v(Col::WaitingInTime);
            c.waiting_late = v(Col::WaitingLate);
            c.due_met = v(Col::DueMet);
            c.due_missed = v(Col::DueMissed);
        }
        // Procedure coverage: the offers in force on the period's last day.
        let used = |procedure: &str, usage: Use| match (
            self.agency_number(agency.as_str()),
            self.procedure_number(procedure),
        ) {
            (Some(a), Some(p)) => self.used(a, kind, index, p, usage),
            _ => false,
        };
        for offer in offers {
            c.procedures_offered += 1;
            let procedure = offer.procedure.as_str();
            if offer.online_level != OfferLevel::None {
                c.procedures_online += 1;
                c.procedures_online_used += used(procedure, Use::Online) as i64;
            }
            if offer.postal_receive {
                c.procedures_postal_receive += 1;
                c.procedures_postal_receive_used += used(procedure, Use::PostalReceive) as i64;
            }
            if offer.postal_return {
                c.procedures_postal_return += 1;
                c.procedures_postal_return_used += used(procedure, Use::PostalReturn) as i64;
            }
        }
        c
    }

    /// Every agency's counts for a period.
    pub fn per_agency(&self, period: Period) -> Vec<(AgencyCode, Counts)> {
        let mut offers: HashMap<&AgencyCode, Vec<&Offer>> = HashMap::new();
        for offer in self.catalogue.offers_on(last_day(self, period), None) {
            offers.entry(&offer.agency).or_default().push(offer);
        }
        self.agency_codes()
            .into_iter()
            .map(|code| {
                let counts =
                    self.counts_with_offers(&code, period, offers.get(&code).map_or(&[], |o| o));
                (code, counts)
            })
            .collect()
    }

    /// The rows of a grouping for a period, under the national definitions.
    pub fn table(&self, period: Period, group: Group, scope: Option<&AgencyCode>) -> Vec<Row> {
        self.table_under(period, group, scope, Definitions::default())
    }

    /// The rows of a grouping for a period, under a profile's definitions (its cut is the engine's).
    pub fn table_under(
        &self,
        period: Period,
        group: Group,
        scope: Option<&AgencyCode>,
        defs: Definitions,
    ) -> Vec<Row> {
        group_rows(
            &self.catalogue,
            &self.per_agency(period),
            group,
            scope,
            period,
            self.cut(),
            defs,
        )
    }
}

/// The last day of a period, in Vietnam time, under the engine's cut.
fn last_day(engine: &Engine, period: Period) -> NaiveDate {
    let end = period.end(engine.cut()).timestamp();
    let day = vietnam_day(end - 1);
    NaiveDate::from_num_days_from_ce_opt((day + 719_163) as i32)
        .expect("period ends are valid dates")
}
