//! Generated dossier lives sent through the adapter as a one-stop system would sync them, checked against the
//! same lives as native events: every event the adapter plans passes the log's own rules (`domain::decide`); the
//! dossier it builds is the native one; sending any request again, or the whole sync log again (and in reverse),
//! plans nothing; personal values never reach an event.

use domain::{decide, Context, Event, StreamHead};
use dvcqg::emulate::{personal_values, sync_requests};
use dvcqg::{read_body, Item, Known, Mapping, Plan};
use proptest::prelude::*;
use serde_json::Value;

/// The portal's codes, plus codes for Decree 43's levels 3 and 4, which the generator also uses.
fn mapping() -> Mapping {
    Mapping::parse(&dvcqg::emulate::lives_mapping("lives")).unwrap()
}

/// A catalogue that has every agency registered and offers nothing.
struct NoCatalogue;

impl dvcqg::Catalogue for NoCatalogue {
    fn offered(
        &self,
        _: &domain::AgencyCode,
        _: &domain::ProcedureCode,
        _: chrono::NaiveDate,
    ) -> Option<domain::event::OnlineLevel> {
        None
    }
    fn registered(&self, _: &domain::AgencyCode) -> bool {
        true
    }
}

/// One dossier as it would be appended: the log's head and what the adapter knows of it.
struct Stream {
    head: StreamHead,
    known: Known,
    written: Vec<Event>,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            head: StreamHead {
                version: 0,
                dossier: None,
            },
            known: Known::default(),
            written: Vec::new(),
        }
    }

    /// Plans one request's items and appends the plan's events through the log's rules. Returns how many events
    /// it wrote.
    fn send(&mut self, request: &Value, m: &Mapping) -> Result<usize, String> {
        let requests = read_body(request, m).map_err(|p| format!("{p:?}"))?;
        let mut n = 0;
        for r in requests {
            for (i, item) in r.items.iter().enumerate() {
                let path = format!("data[{i}]");
                let plan: Plan = match item {
                    Item::Upsert(u) => dvcqg::upsert(u, &self.known, &NoCatalogue, &path),
                    Item::Step(s) => dvcqg::step(s, &self.known, &NoCatalogue, &path),
                    Item::Lookup(_) => Ok(Plan::default()),
                }
                .map_err(|p| format!("{p:?}"))?;
                for e in plan.events {
                    let ctx = Context {
                        now: chrono::Utc::now(),
                        clock_skew: chrono::Duration::minutes(5),
                    };
                    self.head = decide(&self.head, &e, None, &ctx).map_err(|r| {
                        format!(
                            "the log refuses {} at {}: {r}",
                            e.event_type(),
                            e.occurred_at
                        )
                    })?;
                    self.known.apply(&e);
                    self.written.push(e);
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// What the indicators read of a dossier, from the log's own fold.
fn facts(head: &StreamHead) -> String {
    let d = head.dossier.as_ref().expect("a dossier");
    format!(
        "agency {} holder {} agencies {:?} procedure {} channel {} level {:?} received {} due {:?} requests {} pending {:?} paused {} resolved {:?} {:?} returned {:?} {:?} withdrawn {:?}",
        d.agency, d.holder, d.agencies, d.procedure, d.channel, d.online_level, d.received_at.timestamp(),
        d.due_at.map(|t| t.timestamp()), d.supplement_requests, d.supplement_pending_since.map(|t| t.timestamp()),
        d.supplement_paused_secs, d.resolved_at.map(|t| t.timestamp()), d.outcome, d.returned_at.map(|t| t.timestamp()),
        d.return_channel, d.withdrawn_at.map(|t| t.timestamp()),
    )
}

fn native(events: &[Event]) -> StreamHead {
    let ctx = Context {
        now: chrono::Utc::now(),
        clock_skew: chrono::Duration::minutes(5),
    };
    let mut head = StreamHead {
        version: 0,
        dossier: None,
    };
    for e in events {
        head = decide(&head, e, None, &ctx).expect("a generated life obeys the rules");
    }
    head
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_life_synced_is_the_life_sent_natively(seed in any::<u64>()) {
        let m = mapping();
        let mut lives = generator::lives::LifeGenerator::for_2019(seed);
        for i in 0..40 {
            // Every other life is cut short somewhere, so that some end open, some waiting for documents.
            let mut life = lives.dossier();
            if i % 2 == 1 {
                let cut = 1 + (seed as usize).wrapping_add(i) % life.len();
                life.truncate(cut);
            }
            let requests = sync_requests(&life, &m);
            let mut s = Stream::new();
            for r in &requests {
                s.send(r, &m).map_err(|e| TestCaseError::fail(format!("{e}\nrequest {r}")))?;
                // The same request again: nothing new.
                prop_assert_eq!(s.send(r, &m).map_err(TestCaseError::fail)?, 0, "sent twice: {}", r);
            }
            prop_assert_eq!(facts(&s.head), facts(&native(&life)));
            // The whole sync log again, forwards and backwards: nothing new.
            for r in requests.iter().chain(requests.iter().rev()) {
                prop_assert_eq!(s.send(r, &m).map_err(TestCaseError::fail)?, 0, "replayed: {}", r);
            }
            let stored = serde_json::to_string(&s.written.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
            for value in personal_values(life[0].dossier.as_ref().unwrap().as_str()) {
                prop_assert!(!stored.contains(&value), "{} reached an event", value);
            }
        }
    }
}

#[test]
fn content_ids_make_the_same_fact_the_same_event() {
    let m = mapping();
    let life = generator::lives::LifeGenerator::for_2019(7).dossier();
    let requests = sync_requests(&life, &m);
    let (mut a, mut b) = (Stream::new(), Stream::new());
    for r in &requests {
        a.send(r, &m).unwrap();
        b.send(r, &m).unwrap();
    }
    let ids = |s: &Stream| s.written.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    assert!(ids(&a).iter().all(|id| id.get_version_num() == 5));
}
