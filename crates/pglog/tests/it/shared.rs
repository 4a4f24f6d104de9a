//! Two instances on one database, as two nodes are: one order, one set of ids, stale caches caught, and each
//! one's head moving on the other's commits.

use super::{fast_cluster, fresh};
use domain::parse::{parse_envelope, Form};
use pglog::{Config, PgLog};
use serde_json::json;
use std::time::{Duration, Instant};
use store::{AppendError, AppendRequest, EventLog, Refusal};

fn event(n: u32, dossier: &str, ty: &str, expected: Option<u64>) -> domain::Submitted {
    let data = match ty {
        "dossier.received" => json!({ "procedure": "1.001234", "channel": "counter" }),
        _ => json!({}),
    };
    let mut v = json!({ "id": format!("00000000-0000-7000-8000-{n:012}"), "type": ty, "dossier": dossier,
                        "agency": "000.00.12.H27", "occurred_at": "2019-03-12T08:00:00+07:00", "data": data });
    if let Some(e) = expected {
        v["expected_version"] = json!(e);
    }
    parse_envelope(&v, 0, Form::Submitted).unwrap()
}

fn append(
    log: &PgLog,
    events: Vec<domain::Submitted>,
) -> Result<store::AppendOutcome, AppendError> {
    log.append_blocking(AppendRequest {
        events,
        source: "test".into(),
    })
}

fn second(url: &str) -> PgLog {
    PgLog::open(Config::new(url)).unwrap()
}

/// Waits (at most 10 s) until `log`'s head reaches `size`.
fn reaches(log: &PgLog, size: u64) -> bool {
    eventually(|| log.head().size >= size)
}

#[test]
fn two_instances_share_one_order_one_set_of_ids_and_each_other_s_commits() {
    let cluster = fast_cluster();
    let (url, a) = fresh(&cluster, "shared");
    let b = second(&url);

    // Interleaved appends, each on the instance whose turn it is: positions 1..=40 with no gap.
    let mut positions = Vec::new();
    for n in 0..40u32 {
        let log = if n % 3 == 0 { &b } else { &a };
        let outcome = append(
            log,
            vec![event(n + 1, &format!("D{n}"), "dossier.received", None)],
        )
        .unwrap();
        positions.push(outcome.receipts[0].position);
    }
    assert_eq!(positions, (1..=40).collect::<Vec<u64>>());

    // Each one's watch has moved on the other's commits, and both agree on the root.
    assert!(reaches(&a, 40) && reaches(&b, 40));
    assert_eq!(a.head(), b.head());
    assert_eq!(a.root_at(17).unwrap(), b.root_at(17).unwrap());

    // A replay on B of an id written on A: A's receipt, nothing written.
    let again = append(&b, vec![event(2, "D1", "dossier.received", None)]).unwrap();
    assert_eq!(again.receipts[0].position, 2);
    assert!(again.receipts[0].replayed);
    assert_eq!(a.fresh_head().unwrap().size, 40);

    // B reads D5's head (and caches it), A moves D5 on; B's stale head must not let a stale expected version in.
    append(
        &b,
        vec![event(100, "D5", "dossier.supplement_requested", Some(1))],
    )
    .unwrap();
    append(
        &a,
        vec![event(101, "D5", "dossier.supplement_received", Some(2))],
    )
    .unwrap();
    let stale = append(
        &b,
        vec![event(102, "D5", "dossier.supplement_requested", Some(2))],
    );
    match stale {
        Err(AppendError::Refused(r)) => assert!(
            matches!(
                r[0].refusal,
                Refusal::Rule(domain::Rejection::VersionConflict {
                    expected: 2,
                    current: 3
                })
            ),
            "{r:?}"
        ),
        other => panic!("a stale expected version was not refused: {other:?}"),
    }
    // And B continues the tree A grew: the same root after B's next event as a fresh reader computes.
    let next = append(
        &b,
        vec![event(103, "D5", "dossier.supplement_requested", Some(3))],
    )
    .unwrap();
    assert_eq!(next.receipts[0].position, 43);
    let reader = second(&url);
    assert_eq!(reader.head(), b.head());
    assert!(reaches(&a, 43));
    assert_eq!(a.head(), b.head());
    assert_eq!(reader.root_at(43).unwrap(), a.head().root);
}

/// Waits (at most 10 s) until `check` holds.
fn eventually(check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn one_instance_at_a_time_signs_on_the_schedule_and_another_takes_over() {
    use store::Checkpoints;
    let cluster = fast_cluster();
    let (url, a) = fresh(&cluster, "signer");
    let b = second(&url);
    assert!(eventually(|| a.periodic_signer() || b.periodic_signer()));
    // Never both, over a while.
    for _ in 0..50 {
        assert!(
            !(a.periodic_signer() && b.periodic_signer()),
            "two periodic signers"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (signer, other) = if a.periodic_signer() { (a, b) } else { (b, a) };
    drop(signer);
    assert!(
        eventually(|| other.periodic_signer()),
        "no instance took over the signing"
    );
}

#[test]
fn a_head_that_goes_backwards_stops_the_node_writing() {
    use store::Maintenance;
    let cluster = fast_cluster();
    let (_, a) = fresh(&cluster, "backwards");
    for n in 1..=10u32 {
        append(
            &a,
            vec![event(n, &format!("D{n}"), "dossier.received", None)],
        )
        .unwrap();
    }
    assert_eq!(a.head().size, 10);
    // A restore from an older backup, as an operator might make by mistake: the database now has 6 events.
    cluster
        .psql(
            "backwards",
            "BEGIN; DELETE FROM events WHERE position > 6; UPDATE log_head SET size = 6; COMMIT;",
        )
        .unwrap();
    assert!(
        eventually(|| a.write_failure().is_some()),
        "the node did not notice the log went backwards"
    );
    assert!(a.write_failure().unwrap().contains("went backwards"));
    assert_eq!(a.head().size, 10, "the node's head moved back");
    match append(&a, vec![event(11, "D11", "dossier.received", None)]) {
        Err(AppendError::Unavailable(why)) => assert!(why.contains("went backwards"), "{why}"),
        other => panic!("a node whose log went backwards wrote: {other:?}"),
    }
}
