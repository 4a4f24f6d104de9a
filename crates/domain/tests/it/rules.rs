//! Every rule of `events.md` §4, as (the events before, the event, expected answer) cases.

use chrono::{DateTime, Duration, Utc};
use domain::parse::{parse_envelope, Form};
use domain::{decide, Context, Rejection, StreamHead};
use serde_json::{json, Value};

const D: &str = "000.00.12.H27-190312-0001";
const A: &str = "000.00.12.H27";
const B: &str = "000.00.13.H27";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2019-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// An event of dossier D: (type, agency, occurred_at, data).
fn ev(n: usize, ty: &str, agency: &str, at: &str, data: Value) -> Value {
    json!({ "id": super::uuid_for(ty, at, &n.to_string()), "type": ty, "dossier": D, "agency": agency,
            "occurred_at": at, "data": data })
}

fn received(at: &str) -> Value {
    ev(
        0,
        "dossier.received",
        A,
        at,
        json!({ "procedure": "1.001234", "channel": "counter", "due_at": "2019-03-19T17:00:00+07:00" }),
    )
}

/// Folds `given` (each must be accepted), then decides `when`.
fn check(
    given: &[Value],
    when: Value,
    expected_version: Option<u64>,
) -> Result<StreamHead, Rejection> {
    let ctx = Context {
        now: now(),
        clock_skew: Duration::minutes(5),
    };
    let mut head = StreamHead::default();
    for (i, v) in given.iter().enumerate() {
        let e = parse_envelope(v, i, Form::Submitted)
            .expect("given events parse")
            .event;
        head = decide(&head, &e, None, &ctx)
            .unwrap_or_else(|r| panic!("given event {i} refused: {r}"));
    }
    let e = parse_envelope(&when, 0, Form::Submitted)
        .expect("the event parses")
        .event;
    decide(&head, &e, expected_version, &ctx)
}

fn refused(given: &[Value], when: Value) -> String {
    match check(given, when, None) {
        Ok(_) => panic!("accepted"),
        Err(Rejection::InvalidTransition(why)) => why,
        Err(other) => other.code().to_string(),
    }
}

#[test]
fn rule_1_a_dossier_starts_with_received_and_only_once() {
    let t = ev(
        1,
        "dossier.transferred",
        A,
        "2019-03-12T09:00:00+07:00",
        json!({ "to_agency": B }),
    );
    assert_eq!(check(&[], t, None), Err(Rejection::DossierNotFound));
    assert_eq!(
        check(
            &[received("2019-03-12T08:30:00+07:00")],
            received("2019-03-12T09:30:00+07:00"),
            None
        ),
        Err(Rejection::DossierExists)
    );
    let head = check(&[], received("2019-03-12T08:30:00+07:00"), Some(0)).unwrap();
    assert_eq!(head.version, 1);
}

#[test]
fn rule_2_business_time_never_goes_backwards_nor_far_ahead() {
    let r = received("2019-03-12T08:30:00+07:00");
    let back = ev(
        1,
        "dossier.supplement_requested",
        A,
        "2019-03-12T08:29:59+07:00",
        json!({}),
    );
    assert!(refused(&[r.clone()], back).contains("before the dossier's latest event"));
    let same = ev(
        1,
        "dossier.supplement_requested",
        A,
        "2019-03-12T08:30:00+07:00",
        json!({}),
    );
    assert!(
        check(&[r.clone()], same, None).is_ok(),
        "equal times are fine"
    );
    let ahead = ev(
        1,
        "dossier.supplement_requested",
        A,
        "2019-06-01T00:05:01Z",
        json!({}),
    );
    assert!(refused(&[r.clone()], ahead).contains("later than the server clock"));
    let within = ev(
        1,
        "dossier.supplement_requested",
        A,
        "2019-06-01T00:05:00Z",
        json!({}),
    );
    assert!(
        check(&[r], within, None).is_ok(),
        "the skew allowance is inclusive"
    );
}

#[test]
fn rule_3_supplements_pair_up_and_resolution_and_return_happen_once() {
    let r = received("2019-03-12T08:30:00+07:00");
    let got = ev(
        1,
        "dossier.supplement_received",
        A,
        "2019-03-13T08:00:00+07:00",
        json!({}),
    );
    assert!(refused(&[r.clone()], got.clone()).contains("no supplement request is pending"));
    let asked = ev(
        2,
        "dossier.supplement_requested",
        A,
        "2019-03-12T10:00:00+07:00",
        json!({}),
    );
    let head = check(&[r.clone(), asked.clone()], got, None).unwrap();
    assert_eq!(head.dossier.unwrap().supplement_paused_secs, 22 * 3600);
    let resolved = ev(
        3,
        "dossier.resolved",
        A,
        "2019-03-14T08:00:00+07:00",
        json!({ "outcome": "approved" }),
    );
    let again = ev(
        4,
        "dossier.resolved",
        A,
        "2019-03-14T09:00:00+07:00",
        json!({ "outcome": "approved" }),
    );
    assert!(refused(&[r.clone(), resolved.clone()], again).contains("already resolved"));
    let returned = ev(
        5,
        "dossier.returned",
        A,
        "2019-03-15T08:00:00+07:00",
        json!({ "channel": "postal" }),
    );
    let head = check(&[r.clone()], returned.clone(), None)
        .expect("a return may come without a resolution");
    assert_eq!(
        head.dossier.unwrap().ended_at().unwrap().to_rfc3339(),
        "2019-03-15T08:00:00+07:00"
    );
    let twice = ev(
        6,
        "dossier.returned",
        A,
        "2019-03-16T08:00:00+07:00",
        json!({ "channel": "counter" }),
    );
    assert!(refused(&[r, resolved, returned], twice).contains("closed"));
}

#[test]
fn rule_4_a_closed_dossier_takes_only_corrections() {
    let r = received("2019-03-12T08:30:00+07:00");
    let w = ev(
        1,
        "dossier.withdrawn",
        A,
        "2019-03-13T08:00:00+07:00",
        json!({ "reason": "không cần nữa" }),
    );
    for (ty, data) in [
        ("dossier.transferred", json!({ "to_agency": B })),
        ("dossier.supplement_requested", json!({})),
        ("dossier.resolved", json!({ "outcome": "rejected" })),
        ("dossier.returned", json!({ "channel": "counter" })),
        ("dossier.withdrawn", json!({})),
        (
            "dossier.due_extended",
            json!({ "new_due_at": "2019-04-01T17:00:00+07:00", "reason": "late" }),
        ),
    ] {
        let e = ev(2, ty, A, "2019-03-14T08:00:00+07:00", data);
        assert!(
            refused(&[r.clone(), w.clone()], e).contains("closed"),
            "{ty} after withdrawal"
        );
    }
    let c = ev(
        3,
        "dossier.corrected",
        A,
        "2019-03-14T08:00:00+07:00",
        json!({ "reason": "kênh sai", "channel": "postal" }),
    );
    let head = check(&[r, w], c, None).unwrap();
    assert_eq!(
        head.dossier.unwrap().channel,
        domain::event::Channel::Postal
    );
}

#[test]
fn rule_5_only_involved_agencies_write() {
    let r = received("2019-03-12T08:30:00+07:00");
    let by_b = ev(
        1,
        "dossier.resolved",
        B,
        "2019-03-13T08:00:00+07:00",
        json!({ "outcome": "approved" }),
    );
    assert!(refused(&[r.clone()], by_b.clone()).contains("neither received"));
    let t = ev(
        2,
        "dossier.transferred",
        A,
        "2019-03-12T09:00:00+07:00",
        json!({ "to_agency": B }),
    );
    let head = check(&[r.clone(), t.clone()], by_b, None).unwrap();
    let s = head.dossier.unwrap();
    assert_eq!((s.holder.as_str(), s.agencies.len()), (B, 2));
    let to_self = ev(
        3,
        "dossier.transferred",
        A,
        "2019-03-12T10:00:00+07:00",
        json!({ "to_agency": B }),
    );
    assert!(refused(&[r, t], to_self).contains("already held"));
}

#[test]
fn rule_6_a_corrected_receipt_stays_before_the_other_events() {
    let r = received("2019-03-12T08:30:00+07:00");
    let t = ev(
        1,
        "dossier.transferred",
        A,
        "2019-03-13T09:00:00+07:00",
        json!({ "to_agency": B }),
    );
    let late = ev(
        2,
        "dossier.corrected",
        A,
        "2019-03-20T08:00:00+07:00",
        json!({ "reason": "ngày sai", "received_at": "2019-03-13T09:00:01+07:00" }),
    );
    assert!(
        refused(&[r.clone(), t.clone()], late).contains("later than the dossier's other events")
    );
    let ok = ev(
        3,
        "dossier.corrected",
        A,
        "2019-03-20T08:00:00+07:00",
        json!({ "reason": "ngày sai", "received_at": "2019-03-11T09:00:00+07:00" }),
    );
    let head = check(&[r.clone(), t], ok, None).unwrap();
    assert_eq!(
        head.dossier.unwrap().received_at.to_rfc3339(),
        "2019-03-11T09:00:00+07:00"
    );
    let alone = ev(
        4,
        "dossier.corrected",
        A,
        "2019-03-20T08:00:00+07:00",
        json!({ "reason": "x", "received_at": "2019-03-20T08:00:01+07:00" }),
    );
    assert!(
        refused(&[r], alone).contains("later than"),
        "nor after the correction itself"
    );
}

#[test]
fn corrections_keep_channel_and_level_consistent() {
    let r = received("2019-03-12T08:30:00+07:00");
    let online_no_level = ev(
        1,
        "dossier.corrected",
        A,
        "2019-03-13T08:00:00+07:00",
        json!({ "reason": "x", "channel": "online" }),
    );
    assert!(refused(&[r.clone()], online_no_level).contains("needs an online_level"));
    let level_only = ev(
        2,
        "dossier.corrected",
        A,
        "2019-03-13T08:00:00+07:00",
        json!({ "reason": "x", "online_level": "level3" }),
    );
    assert!(refused(&[r.clone()], level_only).contains("only for the online channel"));
    let both = ev(
        3,
        "dossier.corrected",
        A,
        "2019-03-13T08:00:00+07:00",
        json!({ "reason": "x", "channel": "online", "online_level": "full" }),
    );
    let s = check(&[r], both, None).unwrap().dossier.unwrap();
    assert_eq!(
        (s.channel.as_str(), s.online_level.unwrap().as_str()),
        ("online", "full")
    );
}

#[test]
fn due_extensions_only_move_the_due_time_later() {
    let r = received("2019-03-12T08:30:00+07:00");
    let earlier = ev(
        1,
        "dossier.due_extended",
        A,
        "2019-03-13T08:00:00+07:00",
        json!({ "new_due_at": "2019-03-19T16:00:00+07:00", "reason": "x" }),
    );
    assert!(refused(&[r.clone()], earlier).contains("later than the current due time"));
    let later = ev(
        2,
        "dossier.due_extended",
        A,
        "2019-03-13T08:00:00+07:00",
        json!({ "new_due_at": "2019-03-26T17:00:00+07:00", "reason": "x" }),
    );
    assert!(check(&[r], later, None).is_ok());
}

#[test]
fn a_second_supplement_request_waits_for_the_first_to_be_answered() {
    let r = received("2019-03-12T08:30:00+07:00");
    let a1 = ev(
        1,
        "dossier.supplement_requested",
        A,
        "2019-03-12T10:00:00+07:00",
        json!({}),
    );
    let a2 = ev(
        2,
        "dossier.supplement_requested",
        A,
        "2019-03-12T11:00:00+07:00",
        json!({}),
    );
    assert!(refused(&[r.clone(), a1.clone()], a2.clone()).contains("already pending"));
    let g1 = ev(
        3,
        "dossier.supplement_received",
        A,
        "2019-03-12T10:30:00+07:00",
        json!({}),
    );
    let head = check(&[r, a1, g1], a2, None).unwrap();
    assert_eq!(head.dossier.unwrap().supplement_requests, 2);
}

#[test]
fn expected_version_must_match() {
    let r = received("2019-03-12T08:30:00+07:00");
    let s = ev(
        1,
        "dossier.supplement_requested",
        A,
        "2019-03-12T10:00:00+07:00",
        json!({}),
    );
    assert_eq!(
        check(&[r.clone()], s.clone(), Some(0)),
        Err(Rejection::VersionConflict {
            expected: 0,
            current: 1
        })
    );
    assert_eq!(check(&[r], s, Some(1)).unwrap().version, 2);
    assert_eq!(
        check(&[], received("2019-03-12T08:30:00+07:00"), Some(3)),
        Err(Rejection::VersionConflict {
            expected: 3,
            current: 0
        })
    );
}

/// The on-time class: dates in Vietnam time, supplement pauses added to the due time, two requests make it late.
#[test]
fn timeliness_compares_dates_with_pauses_added() {
    use domain::Timeliness::*;
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // Due 19 March 17:00 (Vietnam).
    let r = received("2019-03-12T08:30:00+07:00");
    let state = |events: &[Value]| {
        let mut head = StreamHead::default();
        let ctx = Context {
            now: now(),
            clock_skew: Duration::minutes(5),
        };
        for (i, v) in events.iter().enumerate() {
            head = decide(
                &head,
                &parse_envelope(v, i, Form::Submitted).unwrap().event,
                None,
                &ctx,
            )
            .unwrap();
        }
        head.dossier.unwrap()
    };
    let resolved = |when: &str| {
        ev(
            9,
            "dossier.resolved",
            A,
            when,
            json!({ "outcome": "approved" }),
        )
    };
    assert_eq!(
        state(&[r.clone(), resolved("2019-03-18T23:00:00+07:00")]).timeliness(now()),
        Some(Early)
    );
    // The same date, even later in the day than the due time: on time (dates are compared, not times).
    assert_eq!(
        state(&[r.clone(), resolved("2019-03-19T21:00:00+07:00")]).timeliness(now()),
        Some(OnTime)
    );
    // 20 March 00:30 in Vietnam is still 19 March in UTC: late, because Vietnam's date counts.
    assert_eq!(
        state(&[r.clone(), resolved("2019-03-19T17:30:00Z")]).timeliness(now()),
        Some(Late)
    );
    // A two-day supplement pause moves the due date to 21 March.
    let asked = ev(
        2,
        "dossier.supplement_requested",
        A,
        "2019-03-13T08:00:00+07:00",
        json!({}),
    );
    let got = ev(
        3,
        "dossier.supplement_received",
        A,
        "2019-03-15T08:00:00+07:00",
        json!({}),
    );
    assert_eq!(
        state(&[
            r.clone(),
            asked.clone(),
            got.clone(),
            resolved("2019-03-21T10:00:00+07:00")
        ])
        .timeliness(now()),
        Some(OnTime)
    );
    // A second request makes it late whatever the dates.
    let asked2 = ev(
        4,
        "dossier.supplement_requested",
        A,
        "2019-03-15T09:00:00+07:00",
        json!({}),
    );
    let got2 = ev(
        5,
        "dossier.supplement_received",
        A,
        "2019-03-15T10:00:00+07:00",
        json!({}),
    );
    assert_eq!(
        state(&[
            r.clone(),
            asked,
            got,
            asked2,
            got2,
            resolved("2019-03-16T10:00:00+07:00")
        ])
        .timeliness(now()),
        Some(Late)
    );
    // Open dossiers are judged at the instant asked about; a return without resolution ends processing too.
    let open = state(&[r.clone()]);
    assert_eq!(
        open.timeliness(at("2019-03-19T16:59:00Z")),
        Some(OpenInTime)
    );
    assert_eq!(open.timeliness(at("2019-03-19T17:00:00Z")), Some(OpenLate));
    let returned = ev(
        6,
        "dossier.returned",
        A,
        "2019-03-19T10:00:00+07:00",
        json!({ "channel": "postal" }),
    );
    assert_eq!(
        state(&[r.clone(), returned]).timeliness(now()),
        Some(OnTime)
    );
    // Judged before it ended, it was still open then.
    assert_eq!(
        state(&[r.clone(), resolved("2019-03-25T10:00:00+07:00")])
            .timeliness(at("2019-03-18T00:00:00Z")),
        Some(OpenInTime)
    );
    // No due time, no verdict.
    let no_due = ev(
        0,
        "dossier.received",
        A,
        "2019-03-12T08:30:00+07:00",
        json!({ "procedure": "1", "channel": "counter" }),
    );
    assert_eq!(state(&[no_due]).timeliness(now()), None);
}
