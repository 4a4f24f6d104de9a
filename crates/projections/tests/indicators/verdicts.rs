//! One dossier, one verdict: what `GET /v1/dossiers/{code}` says of a dossier (its folded state, judged by
//! `DossierState::timeliness`) equals what the indicator engine counts for it, for random lives judged at random
//! instants, to the microsecond around due dates and supplement pauses.

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use domain::calendar::{vietnam, Cut, PeriodKind};
use domain::event::*;
use domain::{
    AgencyCode, Context, DossierCode, Event, Period, ProcedureCode, StoredEvent, StreamHead, Text,
    Timeliness,
};
use projections::indicators::{Counts, Engine};
use proptest::prelude::*;

const A: &str = "000.00.12.H27";
const B: &str = "000.00.13.H27";
const D: &str = "D-VERDICT";

/// A step of a life: what to try next, and how long after the previous event (seconds and microseconds).
#[derive(Clone, Debug)]
enum Step {
    AskDocuments,
    DocumentsIn,
    Extend(i64),
    CorrectDue(i64),
    Transfer,
    Resolve,
    Return,
    Withdraw,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::AskDocuments),
        3 => Just(Step::DocumentsIn),
        1 => (3_600i64..10 * 86_400).prop_map(Step::Extend),
        1 => (-5 * 86_400i64..5 * 86_400).prop_map(Step::CorrectDue),
        1 => Just(Step::Transfer),
        2 => Just(Step::Resolve),
        1 => Just(Step::Return),
        1 => Just(Step::Withdraw),
    ]
}

/// A gap between events: often under a day, sometimes several, always with a random fraction of a second, and
/// now and then landing just around a Vietnam midnight.
fn gap() -> impl Strategy<Value = (i64, u32, bool)> {
    (0i64..6 * 86_400, 0u32..1_000_000, prop::bool::weighted(0.3))
}

fn data(step: &Step, due: Option<DateTime<FixedOffset>>, holder: &str) -> Option<EventData> {
    let text = |s: &str| Text::parse(s).unwrap();
    Some(match step {
        Step::AskDocuments => EventData::SupplementRequested(SupplementRequested { note: None }),
        Step::DocumentsIn => EventData::SupplementReceived(SupplementReceived {}),
        Step::Extend(by) => EventData::DueExtended(DueExtended {
            new_due_at: due? + Duration::seconds(*by),
            reason: text("gia hạn"),
        }),
        Step::CorrectDue(by) => EventData::Corrected(Corrected {
            reason: text("sửa hạn"),
            procedure: None,
            channel: None,
            online_level: None,
            received_at: None,
            due_at: Some(due? + Duration::seconds(*by)),
            result_by_post: None,
        }),
        Step::Transfer => EventData::Transferred(Transferred {
            to_agency: AgencyCode::parse(if holder == A { B } else { A }).unwrap(),
            note: None,
        }),
        Step::Resolve => EventData::Resolved(Resolved {
            outcome: Outcome::Approved,
        }),
        Step::Return => EventData::Returned(Returned {
            channel: Channel::Counter,
        }),
        Step::Withdraw => EventData::Withdrawn(Withdrawn { reason: None }),
    })
}

/// The counts of the month containing `t` for agency A.
fn month_of(engine: &Engine, t: DateTime<Utc>) -> Counts {
    let month = Period::containing(&t, PeriodKind::Month, Cut::Calendar);
    engine.agency_counts(&AgencyCode::parse(A).unwrap(), month)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn the_dossier_state_and_the_indicators_give_one_verdict(
        received_secs in 0i64..365 * 86_400,
        due_after in prop::option::weighted(0.9, 0i64..20 * 86_400),
        steps in prop::collection::vec((step(), gap()), 0..8),
        judged_after in (0i64..20 * 86_400, 0u32..1_000_000),
    ) {
        let base = Utc.with_ymd_and_hms(2019, 1, 1, 0, 0, 0).unwrap();
        let received_at = (base + Duration::seconds(received_secs)).with_timezone(&vietnam());
        let ctx = Context { now: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(), clock_skew: Duration::minutes(5) };
        let mut head = StreamHead::default();
        let mut events: Vec<StoredEvent> = Vec::new();
        let mut store = |head: &mut StreamHead, at: DateTime<FixedOffset>, agency: &str, data: EventData| -> bool {
            let event = Event {
                id: uuid::Uuid::new_v4(),
                dossier: Some(DossierCode::parse(D).unwrap()),
                agency: Some(AgencyCode::parse(agency).unwrap()),
                occurred_at: at,
                data,
            };
            match domain::decide(head, &event, None, &ctx) {
                Ok(next) => {
                    *head = next;
                    events.push(StoredEvent {
                        position: events.len() as u64 + 1,
                        version: head.version,
                        recorded_at: at.with_timezone(&Utc),
                        source: "verdicts".into(),
                        event,
                    });
                    true
                }
                Err(_) => false,
            }
        };
        let received = EventData::Received(Received {
            procedure: ProcedureCode::parse("1.000001").unwrap(),
            channel: Channel::Counter,
            online_level: None,
            due_at: due_after.map(|d| received_at + Duration::seconds(d)),
            result_by_post: None,
            applicant: None,
        });
        prop_assert!(store(&mut head, received_at, A, received));
        let mut at = received_at;
        for (s, (secs, micros, to_midnight)) in &steps {
            at += Duration::seconds(*secs) + Duration::microseconds(*micros as i64);
            if *to_midnight {
                // Just before or after the next Vietnam midnight.
                let midnight = vietnam().from_local_datetime(
                    &(at.date_naive() + chrono::Days::new(1)).and_hms_opt(0, 0, 0).unwrap()).unwrap();
                at = midnight + Duration::microseconds(*micros as i64 % 2_000_000 - 1_000_000);
            }
            let state = head.dossier.clone().expect("received");
            let Some(d) = data(s, state.due_at, state.holder.as_str()) else { continue };
            store(&mut head, at, state.holder.as_str(), d);
        }
        let state = head.dossier.clone().expect("received");
        let last = events.last().unwrap().event.occurred_at;
        let judged = last.with_timezone(&Utc)
            + Duration::seconds(judged_after.0) + Duration::microseconds(judged_after.1 as i64);

        let mut engine = Engine::new(Cut::Calendar);
        let mut load = |_: &str, before: u64| Ok(events.iter().filter(|e| e.position < before).cloned().collect());
        for e in &events {
            engine.apply(e, &mut load).unwrap();
        }
        engine.advance(judged.timestamp());

        let verdict = state.timeliness(judged);
        let ended = state.ended_at().map(|e| e.with_timezone(&Utc)).filter(|e| *e <= judged);
        match (ended, state.withdrawn_at) {
            // Withdrawn: the indicators count it apart, with no verdict.
            (_, Some(w)) => prop_assert_eq!(month_of(&engine, w.with_timezone(&Utc)).withdrawn, 1),
            (Some(end), None) => {
                let c = month_of(&engine, end);
                let counted = [(c.resolved_early, Timeliness::Early), (c.resolved_on_time, Timeliness::OnTime),
                               (c.resolved_late, Timeliness::Late)];
                let counted: Vec<Timeliness> = counted.iter().filter(|(n, _)| *n == 1).map(|(_, v)| *v).collect();
                prop_assert_eq!(counted.len(), 1, "{:?}", c);
                prop_assert_eq!(verdict.unwrap_or(Timeliness::OnTime), counted[0], "ended {} judged {}; {:?}", end, judged, state);
            }
            (None, None) => {
                let c = month_of(&engine, judged);
                prop_assert_eq!(c.open_in_time + c.open_late, 1, "{:?}", c);
                let counted = if c.open_late == 1 { Timeliness::OpenLate } else { Timeliness::OpenInTime };
                prop_assert_eq!(verdict.unwrap_or(Timeliness::OpenInTime), counted, "judged {}; {:?}", judged, state);
            }
        }
    }
}
