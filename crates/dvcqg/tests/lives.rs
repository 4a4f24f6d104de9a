//! Generated dossier lives sent through the adapter as a one-stop system would sync them, checked against the
//! same lives as native events: every event the adapter plans passes the log's own rules (`domain::decide`); the
//! dossier it builds is the native one; sending any request again, or the whole sync log again (and in reverse),
//! plans nothing; personal values never reach an event.

use domain::{decide, Context, Event, EventData, StreamHead};
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
        // All or nothing, as the log appends a request's events.
        let (mut head, mut known, mut written) =
            (self.head.clone(), self.known.clone(), Vec::new());
        for r in requests {
            for (i, item) in r.items.iter().enumerate() {
                let path = format!("data[{i}]");
                let plan: Plan = match item {
                    Item::Upsert(u) => dvcqg::upsert(u, &known, &NoCatalogue, &path),
                    Item::Step(s) => dvcqg::step(s, &known, &NoCatalogue, &path),
                    Item::Lookup(_) => Ok(Plan::default()),
                }
                .map_err(|p| format!("{p:?}"))?;
                for e in plan.events {
                    let ctx = Context {
                        now: chrono::Utc::now(),
                        clock_skew: chrono::Duration::minutes(5),
                    };
                    head = decide(&head, &e, None, &ctx).map_err(|r| {
                        format!(
                            "the log refuses {} at {}: {r}",
                            e.event_type(),
                            e.occurred_at
                        )
                    })?;
                    known.apply(&e);
                    written.push(e);
                }
            }
        }
        let n = written.len();
        (self.head, self.known) = (head, known);
        self.written.extend(written);
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

/// The portal's own way with units: a unit not listed is an agency when the catalogue has it registered (here,
/// every one), so a hand-over may be known from a step alone.
fn registered_units_mapping() -> Mapping {
    Mapping::parse(&dvcqg::emulate::lives_mapping("registered").replace(
        "units_unlisted = \"as-is\"",
        "units_unlisted = \"agency-if-registered\"",
    ))
    .unwrap()
}

/// Whether the log's dossier has what a step says: the unit it names has held it, the end or withdrawal at the
/// step's second, documents asked for by then.
fn step_is_in(s: &dvcqg::wire::Step, life: &dvcqg::Life) -> Result<(), String> {
    use dvcqg::{Meaning, Unit};
    let second = |t: &domain::Instant| t.timestamp() == s.at.timestamp();
    if let Some(Unit::Agency(a) | Unit::IfRegistered(a)) = &s.unit {
        if !life.agencies.contains(a) {
            return Err(format!("the log never had the dossier at {a}"));
        }
    }
    let holds = match s.status {
        // A step's end status is a progress entry: it asserts nothing, so there is nothing the log must have.
        Meaning::SupplementRequested => life
            .rounds
            .iter()
            .any(|(asked, _)| *asked <= s.at || second(asked)),
        _ => true,
    };
    if holds {
        Ok(())
    } else {
        Err(format!("the log does not have {}", s.status.as_str()))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A sender whose requests arrive out of order (a step or an upsert failed and was sent again a few requests
    /// later), some of whose upserts leave out `DonViXuLy` (as many real feeds do, so that a step is the only word
    /// of a hand-over): every step is written, refused as out of order or not yet known, or answered with nothing
    /// new only when the log has what it says. Never a success that drops what it was told.
    #[test]
    fn a_step_taken_with_nothing_written_is_one_the_log_has(
        seed in any::<u64>(),
        delays in proptest::collection::vec(0usize..4, 64),
        bare in any::<bool>(),
    ) {
        let m = registered_units_mapping();
        let mut lives = generator::lives::LifeGenerator::for_2019(seed);
        for _ in 0..12 {
            let life = dvcqg::emulate::handed_on(lives.dossier());
            let mut requests = sync_requests(&life, &m);
            if bare {
                for r in &mut requests {
                    if r["service"] == "DongBoHoSoMC" {
                        r["data"][0].as_object_mut().unwrap().remove("DonViXuLy");
                    }
                }
            }
            // Each request after the first arrives up to three places late.
            let mut order: Vec<(usize, usize)> = (0..requests.len())
                .map(|i| (if i == 0 { 0 } else { i + delays[i % delays.len()] }, i))
                .collect();
            order.sort();
            let mut s = Stream::new();
            for (_, i) in order {
                let body = &requests[i];
                for r in read_body(body, &m).unwrap() {
                    for item in &r.items {
                        let Item::Step(step) = item else {
                            // An upsert goes through as the adapter takes it; a refusal leaves the log as it was.
                            let _ = s.send(&Value::Array(vec![body.clone()]), &m);
                            continue;
                        };
                        match dvcqg::step(step, &s.known, &NoCatalogue, "data[0]") {
                            Err(problems) => {
                                for p in &problems {
                                    prop_assert!(p.kind != dvcqg::ProblemKind::Invalid, "{p:?}\n{body}");
                                }
                            }
                            Ok(plan) if plan.events.is_empty() => {
                                let life = s.known.life.as_ref().expect("a step taken has its dossier");
                                step_is_in(step, life).map_err(|why| TestCaseError::fail(format!(
                                    "{why}, yet the step was taken with nothing written: {:?}\n{body}", plan.notes
                                )))?;
                            }
                            Ok(plan) => {
                                // A step writes no end of its own: only the upsert's state ends a dossier.
                                for e in &plan.events {
                                    prop_assert!(
                                        !matches!(e.data, EventData::Resolved(_) | EventData::Returned(_) | EventData::Withdrawn(_)),
                                        "a step wrote {}\n{body}", e.event_type()
                                    );
                                }
                                // Written: every event passes the log's rules (the log would refuse the whole
                                // request otherwise).
                                s.send(body, &m).map_err(|e| TestCaseError::fail(format!("{e}\n{body}")))?;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The case that was dropped with a success: the 10:00 hand-over arrives before the 09:00 one, which names a unit
/// the log never had. It is refused as out of order, naming both times; the note of a step the log has says what
/// the log has.
#[test]
fn a_hand_over_sent_after_a_later_one_is_refused_not_dropped() {
    let m = registered_units_mapping();
    let step = |at: &str, unit: &str| {
        serde_json::json!({"service": "CapNhatTienDoHoSoMC", "data": [{"MaHoSo": "D-1", "ThoiDiemXuLy": at,
            "PhongBanXuLy": unit, "TrangThai": m.status_code(dvcqg::Meaning::Processing).unwrap()}]})
    };
    let upsert = serde_json::json!({"madonvi": "000.00.12.H27", "service": "DongBoHoSoMC", "isUpdating": "False",
        "data": [{"MaHoSo": "D-1", "MaTTHC": "1.001234", "NgayTiepNhan": "20190312083000", "NgayHenTra": "20190319170000",
                  "TrangThaiHoSo": m.status_code(dvcqg::Meaning::Accepted).unwrap(), "KenhThucHien": "1"}]});
    let mut s = Stream::new();
    s.send(&upsert, &m).unwrap();
    assert_eq!(
        s.send(&step("20190312100000", "000.12.02.H27"), &m)
            .unwrap(),
        1
    );
    let late = read_body(&step("20190312090000", "000.12.01.H27"), &m).unwrap();
    let Item::Step(late) = &late[0].items[0] else {
        unreachable!()
    };
    let problems = dvcqg::step(late, &s.known, &NoCatalogue, "data[0]").unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, dvcqg::ProblemKind::OutOfOrder);
    assert_eq!(problems[0].field, "data[0].PhongBanXuLy");
    assert!(
        problems[0].message.contains("09:00:00") && problems[0].message.contains("10:00:00"),
        "{problems:?}"
    );
    // The 10:00 step again: nothing new, and the note says what the log has.
    let again = read_body(&step("20190312100000", "000.12.02.H27"), &m).unwrap();
    let Item::Step(again) = &again[0].items[0] else {
        unreachable!()
    };
    let plan = dvcqg::step(again, &s.known, &NoCatalogue, "data[0]").unwrap();
    assert!(plan.events.is_empty());
    // Not earlier than the log's last event (it is that event): no note needed. An earlier one says what it has.
    let first = read_body(&step("20190312083000", "000.00.12.H27"), &m).unwrap();
    let Item::Step(first) = &first[0].items[0] else {
        unreachable!()
    };
    let plan = dvcqg::step(first, &s.known, &NoCatalogue, "data[0]").unwrap();
    assert!(plan.events.is_empty());
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("000.00.12.H27 held the dossier then")),
        "{:?}",
        plan.notes
    );
}
