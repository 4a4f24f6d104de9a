//! Named cases: each a short history written by hand, stored in a real log, and the cells it must produce.

use super::{loader, open_log, replayed};
use chrono::{DateTime, FixedOffset, Utc};
use domain::calendar::Cut;
use domain::event::*;
use domain::{AgencyCode, DossierCode, Event, Period, ProcedureCode, StoredEvent, Submitted, Text};
use projections::indicators::{Counts, Engine, Group};
use std::collections::HashMap;
use store::{AppendRequest, EventLog, SledLog};

const A: &str = "000.00.12.H27";
const B: &str = "000.00.13.H27";

fn t(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn q(year: i32, quarter: u32) -> Period {
    Period::Quarter { year, quarter }
}

/// A hand-written history, stored with chosen recording times.
struct Script {
    events: Vec<StoredEvent>,
    versions: HashMap<String, u64>,
}

impl Script {
    fn new() -> Script {
        let mut s = Script {
            events: Vec::new(),
            versions: HashMap::new(),
        };
        for (code, name) in [(A, "Sở A"), (B, "Sở B")] {
            s.push(
                None,
                code,
                "2018-01-01T00:00:00+07:00",
                None,
                EventData::AgencyRegistered(AgencyRegistered {
                    name: Text::parse(name).unwrap(),
                    level: AgencyLevel::Department,
                    parent: None,
                }),
            );
        }
        s
    }

    /// Appends an event that occurred at `at` and was recorded then, or at `recorded` (a late entry).
    fn push(
        &mut self,
        dossier: Option<&str>,
        agency: &str,
        at: &str,
        recorded: Option<&str>,
        data: EventData,
    ) {
        let occurred_at = t(at);
        let recorded_at = recorded.map_or(occurred_at, t).with_timezone(&Utc);
        let recorded_at = self
            .events
            .last()
            .map_or(recorded_at, |e| e.recorded_at.max(recorded_at));
        let event = Event {
            id: uuid::Uuid::new_v4(),
            dossier: dossier.map(|d| DossierCode::parse(d).unwrap()),
            agency: Some(AgencyCode::parse(agency).unwrap()),
            occurred_at,
            data,
        };
        let version = self.versions.entry(event.stream().key()).or_default();
        *version += 1;
        self.events.push(StoredEvent {
            position: self.events.len() as u64 + 1,
            version: *version,
            recorded_at,
            source: "case".into(),
            event,
        });
    }

    fn receive(
        &mut self,
        dossier: &str,
        agency: &str,
        at: &str,
        channel: Channel,
        due: Option<&str>,
    ) {
        self.push(
            Some(dossier),
            agency,
            at,
            None,
            EventData::Received(Received {
                procedure: ProcedureCode::parse("1.000001").unwrap(),
                channel,
                online_level: (channel == Channel::Online).then_some(OnlineLevel::Level3),
                due_at: due.map(t),
                result_by_post: None,
                applicant: None,
            }),
        );
    }

    /// Agency A's counts for a period as known at an instant: the events recorded by then, judged then.
    fn known_at(&self, log: &SledLog, instant: &str, period: Period) -> Counts {
        let at = t(instant).with_timezone(&Utc);
        let position = self
            .events
            .iter()
            .take_while(|e| e.recorded_at <= at)
            .count() as u64;
        let mut engine = replayed(log, Cut::Calendar, position);
        engine.advance(at.timestamp());
        engine.agency_counts(&AgencyCode::parse(A).unwrap(), period)
    }

    fn then(&mut self, dossier: &str, agency: &str, at: &str, data: EventData) {
        self.push(Some(dossier), agency, at, None, data);
    }

    /// Stores the history in a real log (batches of at most 1,000) and returns it with the live engine, which
    /// folds what the log stored.
    fn store(&self, dir: &std::path::Path) -> (SledLog, Engine) {
        let log = open_log(dir);
        for chunk in self.events.chunks(1_000) {
            log.append_blocking(AppendRequest {
                events: chunk.iter().cloned().map(Submitted::from).collect(),
                source: "case".into(),
            })
            .unwrap();
        }
        let mut engine = Engine::new(Cut::Calendar);
        for e in log.read_after(0, usize::MAX).unwrap() {
            engine.apply(&e, &mut loader(&log)).unwrap();
        }
        (log, engine)
    }
}

fn row(engine: &Engine, agency: &str, period: Period) -> Counts {
    engine.agency_counts(&AgencyCode::parse(agency).unwrap(), period)
}

fn resolved() -> EventData {
    EventData::Resolved(Resolved {
        outcome: Outcome::Approved,
    })
}

fn returned(channel: Channel) -> EventData {
    EventData::Returned(Returned { channel })
}

#[test]
fn the_quarter_ends_at_midnight_vietnam_time() {
    let mut s = Script::new();
    // 16:59:59Z on 31 March is 23:59:59 in Hà Tĩnh: Q1. 17:30Z is 00:30 on 1 April: Q2.
    s.receive("D1", A, "2019-03-31T16:59:59Z", Channel::Counter, None);
    s.receive("D2", A, "2019-03-31T17:30:00Z", Channel::Online, None);
    let dir = tempfile::tempdir().unwrap();
    let (_log, engine) = s.store(dir.path());
    let (q1, q2) = (row(&engine, A, q(2019, 1)), row(&engine, A, q(2019, 2)));
    assert_eq!(
        (q1.received, q1.received_counter, q1.received_online),
        (1, 1, 0)
    );
    assert_eq!(
        (q2.received, q2.received_counter, q2.received_online),
        (1, 0, 1)
    );
    let march = row(
        &engine,
        A,
        Period::Month {
            year: 2019,
            month: 3,
        },
    );
    assert_eq!(march.received, 1);
    // Under the decree-09 cut the first quarter already ended on 14 March: both fall in Q2.
    let mut decree = Engine::new(Cut::Decree09);
    let events: Vec<_> = s.events.clone();
    decree.fold_all(events, &mut |_, _| Ok(Vec::new())).unwrap();
    assert_eq!(
        decree
            .agency_counts(&AgencyCode::parse(A).unwrap(), q(2019, 2))
            .received,
        2
    );
    assert_eq!(
        decree
            .agency_counts(&AgencyCode::parse(A).unwrap(), q(2019, 1))
            .received,
        0
    );
}

#[test]
fn a_dossier_received_and_returned_by_post_counts_once() {
    let mut s = Script::new();
    s.receive(
        "D1",
        A,
        "2019-02-01T09:00:00+07:00",
        Channel::Postal,
        Some("2019-02-10T17:00:00+07:00"),
    );
    s.then("D1", A, "2019-02-05T09:00:00+07:00", resolved());
    s.then(
        "D1",
        A,
        "2019-04-02T09:00:00+07:00",
        returned(Channel::Postal),
    );
    s.receive("D2", A, "2019-02-01T10:00:00+07:00", Channel::Counter, None);
    s.then(
        "D2",
        A,
        "2019-02-02T10:00:00+07:00",
        returned(Channel::Postal),
    );
    s.receive("D3", A, "2019-02-01T11:00:00+07:00", Channel::Counter, None);
    let dir = tempfile::tempdir().unwrap();
    let (_log, engine) = s.store(dir.path());
    let q1 = row(&engine, A, q(2019, 1));
    assert_eq!(q1.received, 3);
    assert_eq!(q1.postal_received, 1);
    // Both directions: D1 (in and out by post, once) and D2 (out by post); D3 never touched the post.
    assert_eq!(q1.postal_dossiers, 2);
    assert_eq!(q1.postal_returned, 1, "D2's return is in Q1; D1's in Q2");
    assert_eq!(row(&engine, A, q(2019, 2)).postal_returned, 1);
    assert_eq!(
        row(&engine, A, q(2019, 2)).postal_dossiers,
        0,
        "counted in the quarter of receipt"
    );
    // D2 returned without a resolution: the return is its end of processing.
    assert_eq!(
        q1.resolved_early + q1.resolved_on_time + q1.resolved_late,
        2
    );
}

#[test]
fn a_correction_moves_a_dossier_to_another_channel_and_quarter() {
    let mut s = Script::new();
    s.receive("D1", A, "2019-04-01T08:00:00+07:00", Channel::Online, None);
    s.then("D1", A, "2019-04-01T09:00:00+07:00", resolved());
    s.then(
        "D1",
        A,
        "2019-04-01T10:00:00+07:00",
        returned(Channel::Counter),
    );
    let before_correction = s.events.len() as u64;
    s.then(
        "D1",
        A,
        "2019-04-20T10:00:00+07:00",
        EventData::Corrected(Corrected {
            reason: Text::parse("received at the counter on 29 March, entered late").unwrap(),
            procedure: None,
            channel: Some(Channel::Counter),
            online_level: None,
            received_at: Some(t("2019-03-29T15:00:00+07:00")),
            due_at: None,
            result_by_post: None,
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let (log, engine) = s.store(dir.path());
    assert!(
        engine.reloads >= 1,
        "the closed dossier was read back from the log"
    );
    let (q1, q2) = (row(&engine, A, q(2019, 1)), row(&engine, A, q(2019, 2)));
    assert_eq!(
        (q1.received, q1.received_counter, q1.received_online),
        (1, 1, 0)
    );
    assert_eq!((q2.received, q2.received_online), (0, 0));
    // Received on 29 March, still open on the 31st: it is carried over into Q2 and open at the end of Q1.
    assert_eq!(q1.open_in_time, 1);
    assert_eq!(q2.carried_over, 1);
    // As of the position before the correction, the table still says what it said then.
    let then = replayed(&log, Cut::Calendar, before_correction);
    let q2_then = then.agency_counts(&AgencyCode::parse(A).unwrap(), q(2019, 2));
    assert_eq!((q2_then.received, q2_then.received_online), (1, 1));
}

#[test]
fn a_second_supplement_request_makes_a_dossier_late() {
    let mut s = Script::new();
    let due = Some("2019-01-20T17:00:00+07:00");
    for (d, requests) in [("D1", 1), ("D2", 2)] {
        s.receive(d, A, "2019-01-02T08:00:00+07:00", Channel::Counter, due);
        for i in 0..requests {
            s.then(
                d,
                A,
                &format!("2019-01-0{}T08:00:00+07:00", 3 + 2 * i),
                EventData::SupplementRequested(SupplementRequested { note: None }),
            );
            s.then(
                d,
                A,
                &format!("2019-01-0{}T08:00:00+07:00", 4 + 2 * i),
                EventData::SupplementReceived(SupplementReceived {}),
            );
        }
        s.then(d, A, "2019-01-10T08:00:00+07:00", resolved());
    }
    // D3: a pause of 5 days moves its due date from the 20th to the 25th; resolved on the 24th, early.
    s.receive("D3", A, "2019-01-02T08:00:00+07:00", Channel::Counter, due);
    s.then(
        "D3",
        A,
        "2019-01-05T08:00:00+07:00",
        EventData::SupplementRequested(SupplementRequested { note: None }),
    );
    s.then(
        "D3",
        A,
        "2019-01-10T08:00:00+07:00",
        EventData::SupplementReceived(SupplementReceived {}),
    );
    s.then("D3", A, "2019-01-24T08:00:00+07:00", resolved());
    let dir = tempfile::tempdir().unwrap();
    let (_log, engine) = s.store(dir.path());
    let jan = row(
        &engine,
        A,
        Period::Month {
            year: 2019,
            month: 1,
        },
    );
    assert_eq!(
        (jan.resolved_early, jan.resolved_on_time, jan.resolved_late),
        (2, 0, 1)
    );
}

#[test]
fn transfers_count_out_and_in_and_intake_stays_with_the_receiver() {
    let mut s = Script::new();
    s.receive("D1", A, "2019-01-02T08:00:00+07:00", Channel::Counter, None);
    s.then(
        "D1",
        A,
        "2019-01-03T08:00:00+07:00",
        EventData::Transferred(Transferred {
            to_agency: AgencyCode::parse(B).unwrap(),
            note: None,
        }),
    );
    s.then("D1", B, "2019-01-04T08:00:00+07:00", resolved());
    let dir = tempfile::tempdir().unwrap();
    let (_log, engine) = s.store(dir.path());
    let (a, b) = (row(&engine, A, q(2019, 1)), row(&engine, B, q(2019, 1)));
    assert_eq!(
        (
            a.transferred_out,
            a.transferred_in,
            a.received,
            a.resolved_on_time
        ),
        (1, 0, 1, 1)
    );
    assert_eq!(
        (
            b.transferred_out,
            b.transferred_in,
            b.received,
            b.resolved_on_time
        ),
        (0, 1, 0, 0)
    );
}

#[test]
fn zero_denominators_give_no_ratio_and_no_verdict() {
    let s = Script::new();
    let dir = tempfile::tempdir().unwrap();
    let (_log, engine) = s.store(dir.path());
    let rows = engine.table(q(2019, 1), Group::Agency, None);
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r.counts, Counts::default());
        assert_eq!(
            (
                r.online_rate(),
                r.postal_rate(),
                r.on_time_rate(),
                r.postal_return_rate()
            ),
            (None, None, None, None)
        );
        assert_eq!((r.online_met(), r.postal_met()), (None, None));
        assert_eq!((r.online_target, r.postal_target), (0.20, 0.10));
    }
}

#[test]
fn known_at_before_and_after_a_late_event() {
    let mut s = Script::new();
    s.receive(
        "D1",
        A,
        "2019-03-01T08:00:00+07:00",
        Channel::Counter,
        Some("2019-03-25T17:00:00+07:00"),
    );
    // Resolved on 20 March, but entered only on 10 April.
    s.push(
        Some("D1"),
        A,
        "2019-03-20T08:00:00+07:00",
        Some("2019-04-10T08:00:00+07:00"),
        resolved(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (log, today) = s.store(dir.path());
    let q1_today = row(&today, A, q(2019, 1));
    assert_eq!(
        (
            q1_today.resolved_early,
            q1_today.open_in_time,
            q1_today.open_late
        ),
        (1, 0, 0)
    );
    // As known on 5 April: open at the end of Q1, and due on the 25th, so late by then.
    let q1_then = s.known_at(&log, "2019-04-05T12:00:00+07:00", q(2019, 1));
    assert_eq!(
        (
            q1_then.resolved_early,
            q1_then.open_in_time,
            q1_then.open_late
        ),
        (0, 0, 1)
    );
    // As known on 20 March, 09:00 (before the due date): open and in time.
    let q1_early = s.known_at(&log, "2019-03-20T09:00:00+07:00", q(2019, 1));
    assert_eq!((q1_early.open_in_time, q1_early.open_late), (1, 0));
}

#[test]
fn an_open_dossier_turns_late_when_the_log_passes_its_due_date() {
    let mut s = Script::new();
    s.receive(
        "D1",
        A,
        "2019-01-02T08:00:00+07:00",
        Channel::Counter,
        Some("2019-01-10T17:00:00+07:00"),
    );
    // Another dossier's receipt on the 11th moves the log's clock past D1's due date.
    s.receive("D2", B, "2019-01-11T08:00:00+07:00", Channel::Counter, None);
    let dir = tempfile::tempdir().unwrap();
    let (_log, engine) = s.store(dir.path());
    let jan = row(
        &engine,
        A,
        Period::Month {
            year: 2019,
            month: 1,
        },
    );
    assert_eq!((jan.open_in_time, jan.open_late), (0, 1));
    // And it was in time as of the first event alone.
    let mut first = Engine::new(Cut::Calendar);
    first
        .fold_all(s.events[..3].to_vec(), &mut |_, _| Ok(Vec::new()))
        .unwrap();
    let jan = first.agency_counts(
        &AgencyCode::parse(A).unwrap(),
        Period::Month {
            year: 2019,
            month: 1,
        },
    );
    assert_eq!((jan.open_in_time, jan.open_late), (1, 0));
}

/// The letter: Q1 2019 in Hà Tĩnh, 2,668 online dossiers of 34,996 received. 7.62 %, against 20 %: not met.
#[test]
fn the_letters_own_figures() {
    let mut s = Script::new();
    let start = t("2019-01-02T08:00:00+07:00");
    for i in 0..34_996u32 {
        let at = start + chrono::Duration::seconds(i as i64 * 200);
        let channel = if i % 13 == 0 && i / 13 < 2_668 {
            Channel::Online
        } else {
            Channel::Counter
        };
        s.receive(&format!("HT-{i:06}"), A, &at.to_rfc3339(), channel, None);
    }
    let dir = tempfile::tempdir().unwrap();
    let (_log, engine) = s.store(dir.path());
    let rows = engine.table(q(2019, 1), Group::Province, None);
    let province = &rows[0];
    assert_eq!(
        (province.counts.received, province.counts.received_online),
        (34_996, 2_668)
    );
    assert_eq!(
        format!("{:.2}", province.online_rate().unwrap() * 100.0),
        "7.62"
    );
    assert_eq!(province.online_target, 0.20);
    assert_eq!(province.online_met(), Some(false));
    assert_eq!(province.counts.postal_dossiers, 0);
    assert_eq!(province.postal_met(), Some(false));
}
