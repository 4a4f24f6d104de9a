//! Independent dossier lives, for the crash test's and the store benchmarks' writers: many disjoint streams with
//! no reference data, from several threads at once (each thread its own seed and code prefix). The province
//! generator of this crate ([`crate::Generator`]) makes one coherent province instead.
//!
//! Each dossier gets a plausible life (receipt by counter, online or post; transfers; supplement requests; due
//! extensions; resolution; return by some channel; now and then a withdrawal or a correction), with business
//! times that never go backwards within the dossier. Events of all dossiers are interleaved by time.

use chrono::{DateTime, Duration, FixedOffset, TimeZone};
use domain::event::*;
use domain::{AgencyCode, DossierCode, Event, ProcedureCode, Text};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

pub struct LifeGenerator {
    rng: StdRng,
    agencies: Vec<AgencyCode>,
    start: DateTime<FixedOffset>,
    span_secs: i64,
    prefix: String,
    next_dossier: u64,
}

impl LifeGenerator {
    /// Dossiers received between `start` and `start + span_days`; codes begin with `prefix`.
    pub fn new(
        seed: u64,
        prefix: &str,
        start: DateTime<FixedOffset>,
        span_days: i64,
    ) -> LifeGenerator {
        let agencies = (1..=20)
            .map(|i| AgencyCode::parse(&format!("000.{i:02}.00.H27")).expect("valid agency code"))
            .collect();
        LifeGenerator {
            rng: StdRng::seed_from_u64(seed),
            agencies,
            start,
            span_secs: span_days * 86_400,
            prefix: prefix.into(),
            next_dossier: 0,
        }
    }

    /// A generator over 2019 with the default prefix.
    pub fn for_2019(seed: u64) -> LifeGenerator {
        let start = domain::calendar::vietnam()
            .with_ymd_and_hms(2019, 1, 2, 8, 0, 0)
            .single()
            .expect("valid time");
        LifeGenerator::new(seed, "D", start, 360)
    }

    /// A UUIDv7 (as `events.md` recommends to senders) for an event sent at `at`, with seeded random bits.
    fn id(rng: &mut StdRng, at: DateTime<FixedOffset>) -> Uuid {
        let millis = at.timestamp_millis().max(0) as u64;
        uuid::Builder::from_unix_timestamp_millis(millis, &rng.gen()).into_uuid()
    }

    /// The events of one more dossier, in order.
    pub fn dossier(&mut self) -> Vec<Event> {
        let r = &mut self.rng;
        self.next_dossier += 1;
        let dossier = DossierCode::parse(&format!("{}-{:08}", self.prefix, self.next_dossier))
            .expect("valid dossier code");
        let agency = self.agencies[r.gen_range(0..self.agencies.len())].clone();
        let mut at = self.start + Duration::seconds(r.gen_range(0..self.span_secs));
        let channel = match r.gen_range(0..100) {
            0..=69 => Channel::Counter,
            70..=89 => Channel::Online,
            _ => Channel::Postal,
        };
        let online_level =
            (channel == Channel::Online).then(|| OnlineLevel::ALL[r.gen_range(0..4)]);
        let due = at + Duration::days(r.gen_range(3..20));
        let received = EventData::Received(Received {
            procedure: ProcedureCode::parse(&format!("1.{:06}", r.gen_range(1000..1200)))
                .expect("valid procedure"),
            channel,
            online_level,
            due_at: Some(due),
            result_by_post: Some(r.gen_bool(0.1)),
            applicant: Some(if r.gen_bool(0.8) {
                Applicant::Citizen
            } else {
                Applicant::Business
            }),
        });
        let mut steps = vec![(agency.clone(), at, received)];
        let mut holder = agency.clone();
        let mut involved = vec![agency.clone()];
        let advance = |r: &mut StdRng, at: &mut DateTime<FixedOffset>| {
            *at += Duration::seconds(r.gen_range(600..5 * 86_400))
        };
        if r.gen_bool(0.3) {
            advance(r, &mut at);
            let mut to = self.agencies[r.gen_range(0..self.agencies.len())].clone();
            if to == holder {
                to = self.agencies[(self.agencies.iter().position(|a| *a == to).expect("known")
                    + 1)
                    % self.agencies.len()]
                .clone();
            }
            steps.push((
                holder.clone(),
                at,
                EventData::Transferred(Transferred {
                    to_agency: to.clone(),
                    note: None,
                }),
            ));
            involved.push(to.clone());
            holder = to;
        }
        if r.gen_bool(0.2) {
            advance(r, &mut at);
            steps.push((
                holder.clone(),
                at,
                EventData::SupplementRequested(SupplementRequested {
                    note: Some(Text::parse("thiếu bản sao giấy tờ").expect("valid")),
                }),
            ));
            advance(r, &mut at);
            steps.push((
                holder.clone(),
                at,
                EventData::SupplementReceived(SupplementReceived {}),
            ));
        }
        if r.gen_bool(0.05) {
            advance(r, &mut at);
            steps.push((
                holder.clone(),
                at,
                EventData::DueExtended(DueExtended {
                    new_due_at: due + Duration::days(7),
                    reason: Text::parse("phiếu xin lỗi và hẹn lại").expect("valid"),
                }),
            ));
        }
        if r.gen_bool(0.03) {
            advance(r, &mut at);
            steps.push((
                holder.clone(),
                at,
                EventData::Withdrawn(Withdrawn { reason: None }),
            ));
        } else {
            advance(r, &mut at);
            let outcome = if r.gen_bool(0.95) {
                Outcome::Approved
            } else {
                Outcome::Rejected
            };
            steps.push((
                holder.clone(),
                at,
                EventData::Resolved(Resolved { outcome }),
            ));
            advance(r, &mut at);
            let channel = match r.gen_range(0..100) {
                0..=79 => Channel::Counter,
                80..=89 => Channel::Online,
                _ => Channel::Postal,
            };
            steps.push((
                involved[0].clone(),
                at,
                EventData::Returned(Returned { channel }),
            ));
        }
        if r.gen_bool(0.02) {
            advance(r, &mut at);
            steps.push((
                agency,
                at,
                EventData::Corrected(Corrected {
                    reason: Text::parse("nhập sai kênh").expect("valid"),
                    procedure: None,
                    channel: Some(Channel::Counter),
                    online_level: None,
                    received_at: None,
                    due_at: None,
                    result_by_post: None,
                }),
            ));
        }
        steps
            .into_iter()
            .map(|(agency, occurred_at, data)| Event {
                id: LifeGenerator::id(&mut self.rng, occurred_at),
                dossier: Some(dossier.clone()),
                agency: Some(agency),
                occurred_at,
                data,
            })
            .collect()
    }

    /// At least `n` events of whole dossiers, interleaved by business time (each dossier's own order kept).
    pub fn events(&mut self, n: usize) -> Vec<Event> {
        let mut all = Vec::with_capacity(n + 16);
        while all.len() < n {
            all.extend(self.dossier());
        }
        // A stable sort keeps each dossier's events in order, as their times never go backwards.
        all.sort_by_key(|e| e.occurred_at);
        all
    }
}
