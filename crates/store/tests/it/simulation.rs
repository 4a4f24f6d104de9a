//! A seeded simulation: random streams of valid and invalid events, replays and id reuse, against an in-memory
//! model. After every step the log must answer as the model predicts, and the whole log is compared with the
//! model (positions and versions gapless, every event, every stream's head and versions, the audit root); every
//! 60 steps the log is closed and reopened. Each seed also picks how long the indexer lets entries wait (none,
//! a few milliseconds, or for ever until the close), so that reads are checked while the indexes are written
//! under them, and while everything since the open is in the in-memory tail.
//!
//! `CASETRAIL_SIM_SEED=n` replays one seed; `CASETRAIL_SIM_STEPS=n` sets the length (default 300);
//! `CASETRAIL_SIM_SEEDS=n` how many seeds the default run tries (default 4). A failure prints its seed.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use domain::event::*;
use domain::{
    decide, AgencyCode, Context, DossierCode, Event, ProcedureCode, StreamHead, Submitted, Text,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use store::{AppendError, AppendRequest, EventLog, MemoryHashes, SledLog};
use uuid::Uuid;

const AGENCIES: [&str; 4] = [
    "000.00.12.H27",
    "000.00.13.H27",
    "000.00.14.H27",
    "000.00.15.H27",
];

/// The model: what the log must contain, kept independently of the store.
#[derive(Default)]
struct Model {
    events: Vec<Event>,
    versions: Vec<u64>,
    by_id: HashMap<Uuid, usize>,
    heads: HashMap<String, StreamHead>,
}

/// What the model expects from one append.
#[derive(Debug, PartialEq)]
enum Expect {
    Accepted(Vec<(u64, u64, bool)>),
    Refused(Vec<(usize, &'static str)>),
}

impl Model {
    fn ctx() -> Context {
        // Every simulated business time is before mid-2019, except deliberately far-future ones.
        Context {
            now: DateTime::parse_from_rfc3339("2019-06-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            clock_skew: Duration::minutes(5),
        }
    }

    fn predict(&self, batch: &[Submitted]) -> Expect {
        let mut heads: HashMap<String, StreamHead> = HashMap::new();
        let mut new_ids: HashMap<Uuid, (usize, u64, u64)> = HashMap::new();
        let mut receipts = Vec::new();
        let mut refused = Vec::new();
        let mut next = self.events.len() as u64 + 1;
        for (i, s) in batch.iter().enumerate() {
            let e = &s.event;
            if let Some(&at) = self.by_id.get(&e.id) {
                if self.events[at] == *e {
                    receipts.push((at as u64 + 1, self.versions[at], true));
                } else {
                    refused.push((i, "id_reused"));
                }
                continue;
            }
            if let Some(&(j, position, version)) = new_ids.get(&e.id) {
                if batch[j].event == *e {
                    receipts.push((position, version, true));
                } else {
                    refused.push((i, "id_reused"));
                }
                continue;
            }
            let key = e.stream().key();
            let head = heads
                .get(&key)
                .or_else(|| self.heads.get(&key))
                .cloned()
                .unwrap_or_default();
            match decide(&head, e, s.expected_version, &Model::ctx()) {
                Err(r) => refused.push((i, r.code())),
                Ok(h) => {
                    receipts.push((next, h.version, false));
                    new_ids.insert(e.id, (i, next, h.version));
                    next += 1;
                    heads.insert(key, h);
                }
            }
        }
        if refused.is_empty() {
            Expect::Accepted(receipts)
        } else {
            Expect::Refused(refused)
        }
    }

    fn commit(&mut self, batch: &[Submitted]) {
        for s in batch {
            if self.by_id.contains_key(&s.event.id) {
                continue;
            }
            let key = s.event.stream().key();
            let head = self.heads.get(&key).cloned().unwrap_or_default();
            let next = decide(&head, &s.event, s.expected_version, &Model::ctx())
                .expect("predicted accepted");
            self.by_id.insert(s.event.id, self.events.len());
            self.versions.push(next.version);
            self.events.push(s.event.clone());
            self.heads.insert(key, next);
        }
    }
}

/// Makes plausible traffic, mostly valid, some of it not.
struct Traffic {
    rng: StdRng,
    dossiers: Vec<(DossierCode, AgencyCode, DateTime<FixedOffset>)>,
    sent: Vec<Vec<Submitted>>,
    accepted: Vec<Event>,
    next_dossier: u32,
}

impl Traffic {
    fn at(&mut self, base: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        // Mostly forward; now and then a little backwards (rule 2).
        base + Duration::minutes(self.rng.gen_range(-30..3 * 24 * 60))
    }

    fn id(&mut self) -> Uuid {
        Uuid::from_u128(self.rng.gen::<u128>() | 1)
    }

    fn agency(&mut self) -> AgencyCode {
        AgencyCode::parse(AGENCIES[self.rng.gen_range(0..AGENCIES.len())]).unwrap()
    }

    fn received(&mut self) -> Event {
        self.next_dossier += 1;
        let dossier = DossierCode::parse(&format!("S-{:05}", self.next_dossier)).unwrap();
        let agency = self.agency();
        let at = DateTime::parse_from_rfc3339("2019-01-01T08:00:00+07:00").unwrap()
            + Duration::hours(self.rng.gen_range(0..2_000));
        let channel = Channel::ALL[self.rng.gen_range(0..3)];
        self.dossiers.push((dossier.clone(), agency.clone(), at));
        Event {
            id: self.id(),
            dossier: Some(dossier),
            agency: Some(agency),
            occurred_at: at,
            data: EventData::Received(Received {
                procedure: ProcedureCode::parse("1.001234").unwrap(),
                channel,
                online_level: (channel == Channel::Online).then_some(OnlineLevel::Level4),
                due_at: Some(at + Duration::days(10)),
                result_by_post: None,
                applicant: None,
            }),
        }
    }

    /// A follow-up that the rules accept, chosen from the model's state of a dossier not yet used in this batch.
    fn valid_follow_up(&mut self, model: &Model, used: &[DossierCode]) -> Option<Event> {
        let i = self.rng.gen_range(0..self.dossiers.len());
        let (dossier, _, _) = self.dossiers[i].clone();
        if used.contains(&dossier) {
            return None;
        }
        let state = model.heads.get(dossier.as_str())?.dossier.clone()?;
        let at = state.last_occurred_at + Duration::minutes(self.rng.gen_range(0..3 * 24 * 60));
        let mut options: Vec<EventData> = vec![EventData::Corrected(Corrected {
            reason: Text::parse("sửa").unwrap(),
            procedure: None,
            channel: Some(Channel::Postal),
            online_level: None,
            received_at: None,
            due_at: None,
            result_by_post: None,
        })];
        if !state.is_closed() {
            options.push(EventData::Returned(Returned {
                channel: Channel::Postal,
            }));
            let other = self.agency();
            if other != state.holder {
                options.push(EventData::Transferred(Transferred {
                    to_agency: other,
                    note: None,
                }));
            }
            if state.resolved_at.is_none() {
                options.push(EventData::Resolved(Resolved {
                    outcome: Outcome::Approved,
                }));
                options.push(EventData::Withdrawn(Withdrawn { reason: None }));
                options.push(if state.supplement_pending_since.is_some() {
                    EventData::SupplementReceived(SupplementReceived {})
                } else {
                    EventData::SupplementRequested(SupplementRequested { note: None })
                });
            }
        }
        let data = options.swap_remove(self.rng.gen_range(0..options.len()));
        Some(Event {
            id: self.id(),
            dossier: Some(dossier),
            agency: Some(state.holder.clone()),
            occurred_at: at,
            data,
        })
    }

    fn follow_up(&mut self) -> Event {
        let i = self.rng.gen_range(0..self.dossiers.len());
        let (dossier, home, last) = self.dossiers[i].clone();
        let at = self.at(last);
        self.dossiers[i].2 = last.max(at);
        let agency = if self.rng.gen_bool(0.8) {
            home
        } else {
            self.agency()
        };
        let note = || Some(Text::parse("ghi chú").unwrap());
        let data = match self.rng.gen_range(0..9) {
            0 => EventData::Transferred(Transferred {
                to_agency: self.agency(),
                note: note(),
            }),
            1 => EventData::SupplementRequested(SupplementRequested { note: None }),
            2 => EventData::SupplementReceived(SupplementReceived {}),
            3 => EventData::DueExtended(DueExtended {
                new_due_at: at + Duration::days(self.rng.gen_range(-5..20)),
                reason: Text::parse("trễ").unwrap(),
            }),
            4 => EventData::Resolved(Resolved {
                outcome: Outcome::Approved,
            }),
            5 => EventData::Returned(Returned {
                channel: Channel::ALL[self.rng.gen_range(0..3)],
            }),
            6 => EventData::Withdrawn(Withdrawn { reason: None }),
            7 => EventData::Corrected(Corrected {
                reason: Text::parse("sửa").unwrap(),
                procedure: None,
                channel: Some(Channel::Counter),
                online_level: None,
                received_at: None,
                due_at: None,
                result_by_post: None,
            }),
            _ => EventData::Resolved(Resolved {
                outcome: Outcome::Rejected,
            }),
        };
        let future = self.rng.gen_bool(0.02);
        let occurred_at = if future {
            DateTime::parse_from_rfc3339("2100-01-01T00:00:00+07:00").unwrap()
        } else {
            at
        };
        Event {
            id: self.id(),
            dossier: Some(dossier),
            agency: Some(agency),
            occurred_at,
            data,
        }
    }

    fn batch(&mut self, model: &Model) -> Vec<Submitted> {
        let roll = self.rng.gen_range(0..100);
        if roll < 10 && !self.sent.is_empty() {
            // A retry of an earlier batch, as sent.
            let i = self.rng.gen_range(0..self.sent.len());
            return self.sent[i].clone();
        }
        if roll < 15 && !self.accepted.is_empty() {
            // An accepted id with other content.
            let mut e = self.accepted[self.rng.gen_range(0..self.accepted.len())].clone();
            e.occurred_at += Duration::seconds(1);
            return vec![Submitted {
                event: e,
                expected_version: None,
                stored: None,
                source: None,
            }];
        }
        let n = self.rng.gen_range(1..=6);
        if roll < 75 {
            // A clean batch: new dossiers and follow-ups the rules accept.
            let mut used = Vec::new();
            let mut batch = Vec::new();
            for _ in 0..n {
                let event = match self.dossiers.is_empty() || self.rng.gen_bool(0.3) {
                    true => Some(self.received()),
                    false => self.valid_follow_up(model, &used),
                };
                if let Some(event) = event {
                    used.extend(event.dossier.clone());
                    batch.push(Submitted {
                        event,
                        expected_version: None,
                        stored: None,
                        source: None,
                    });
                }
            }
            if !batch.is_empty() {
                return batch;
            }
        }
        (0..n)
            .map(|_| {
                let event = if self.dossiers.is_empty() || self.rng.gen_bool(0.3) {
                    self.received()
                } else if self.rng.gen_bool(0.03) {
                    let mut e = self.follow_up();
                    e.dossier = Some(DossierCode::parse("NO-SUCH-DOSSIER").unwrap());
                    e
                } else {
                    self.follow_up()
                };
                let expected_version = self.rng.gen_bool(0.05).then(|| self.rng.gen_range(0..4));
                Submitted {
                    event,
                    expected_version,
                    stored: None,
                    source: None,
                }
            })
            .collect()
    }
}

fn compare_all(log: &SledLog, model: &Model) {
    let events = log.read_after(0, usize::MAX).unwrap();
    assert_eq!(events.len(), model.events.len(), "log size");
    let mut tree = MemoryHashes::default();
    for (i, stored) in events.iter().enumerate() {
        assert_eq!(stored.position, i as u64 + 1, "positions are gapless");
        assert_eq!(stored.event, model.events[i], "event at position {}", i + 1);
        assert_eq!(
            stored.version,
            model.versions[i],
            "version at position {}",
            i + 1
        );
        tree.push(i as u64, &stored.canonical_bytes());
    }
    assert_eq!(
        log.head().root,
        tree.root(events.len() as u64),
        "audit root"
    );
    for (key, head) in &model.heads {
        assert_eq!(
            log.stream_head(key).unwrap().as_ref(),
            Some(head),
            "head of {key}"
        );
        let versions: Vec<u64> = log.stream(key).unwrap().iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            (1..=head.version).collect::<Vec<_>>(),
            "versions of {key}"
        );
    }
}

fn run(seed: u64, steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = SledLog::open(lagging(seed, dir.path())).unwrap();
    let mut model = Model::default();
    let mut traffic = Traffic {
        rng: StdRng::seed_from_u64(seed),
        dossiers: vec![],
        sent: vec![],
        accepted: vec![],
        next_dossier: 0,
    };
    let (mut accepted, mut refused) = (0, 0);
    for step in 0..steps {
        let batch = traffic.batch(&model);
        let expect = model.predict(&batch);
        let got = match log.append_blocking(AppendRequest {
            events: batch.clone(),
            source: "sim".into(),
        }) {
            Ok(out) => Expect::Accepted(
                out.receipts
                    .iter()
                    .map(|r| (r.position, r.version, r.replayed))
                    .collect(),
            ),
            Err(AppendError::Refused(r)) => {
                Expect::Refused(r.iter().map(|r| (r.index, r.refusal.code())).collect())
            }
            Err(e) => panic!("seed {seed} step {step}: {e}"),
        };
        assert_eq!(
            got, expect,
            "seed {seed} step {step}: the log and the model disagree on {batch:#?}"
        );
        if matches!(expect, Expect::Accepted(_)) {
            accepted += 1;
            model.commit(&batch);
            traffic
                .accepted
                .extend(batch.iter().map(|s| s.event.clone()));
        } else {
            refused += 1;
        }
        traffic.sent.push(batch);
        assert_eq!(
            log.head().size,
            model.events.len() as u64,
            "seed {seed} step {step}: size"
        );
        compare_all(&log, &model);
        if step % 60 == 59 {
            drop(log);
            log = SledLog::open(lagging(seed, dir.path())).unwrap();
        }
    }
    compare_all(&log, &model);
    assert!(
        log.verify(|_| {}).unwrap().problems.is_empty(),
        "seed {seed}: verify"
    );
    eprintln!(
        "seed {seed}: {accepted} batches accepted, {refused} refused, {} events",
        model.events.len()
    );
    // The traffic must exercise both sides, or the simulation proves little.
    assert!(
        accepted > steps / 5 && refused > steps / 20,
        "seed {seed}: {accepted} accepted, {refused} refused"
    );
}

/// The test config, with the indexer's wait chosen by the seed.
fn lagging(seed: u64, dir: &std::path::Path) -> store::Config {
    let mut config = super::config(dir);
    config.index_flush_after = match seed % 3 {
        0 => std::time::Duration::ZERO,
        1 => std::time::Duration::from_millis(3),
        _ => std::time::Duration::from_secs(3600),
    };
    config
}

#[test]
fn the_log_matches_the_model_under_random_traffic() {
    let steps = std::env::var("CASETRAIL_SIM_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let seeds: Vec<u64> = match std::env::var("CASETRAIL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => {
            let n = std::env::var("CASETRAIL_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(4);
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            (0..n)
                .map(|i| base.wrapping_mul(31).wrapping_add(i))
                .collect()
        }
    };
    for seed in seeds {
        eprintln!("simulation seed {seed} (replay with CASETRAIL_SIM_SEED={seed})");
        run(seed, steps);
    }
}
