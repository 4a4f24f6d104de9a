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

#[test]
fn what_one_instance_tells_of_a_stream_the_other_just_wrote_agrees_with_its_events() {
    let cluster = fast_cluster();
    let (url, a) = fresh(&cluster, "stream_heads");
    let b = second(&url);
    // Each round A writes a new dossier or moves one on, and B is asked at once, before or after its listener has
    // heard of it: a head B gives must be one whose events B gives, and a stream B lists must have events on B.
    let mut versions = std::collections::BTreeMap::<String, u64>::new();
    for n in 0..200u32 {
        let dossier = format!("E{}", n % 37);
        let v = versions.entry(dossier.clone()).or_default();
        let ty = match *v {
            0 => "dossier.received",
            v if v % 2 == 1 => "dossier.supplement_requested",
            _ => "dossier.supplement_received",
        };
        append(&a, vec![event(1_000 + n, &dossier, ty, None)]).unwrap();
        *v += 1;
        let head = b
            .stream_head(&dossier)
            .unwrap()
            .expect("B sees the dossier A wrote");
        assert_eq!(head.version, *v, "B's head of {dossier}");
        assert_eq!(
            b.stream(&dossier).unwrap().len() as u64,
            head.version,
            "B's events of {dossier}"
        );
        for key in b.stream_keys("E").unwrap() {
            assert!(
                !b.stream(&key).unwrap().is_empty(),
                "B lists {key} with no events"
            );
        }
    }
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

/// Groups of every size written by turns on two instances: each one catches up on what the other wrote since its
/// own last group (from the events read with the lock, or, past 4,096 of them, by reading the open tile again and
/// forgetting its cached heads), across tile boundaries, with a stream both write. Every group lands right after
/// the last, each instance's cached head of the shared stream is never used stale, and the tree both grew
/// verifies from the events alone.
#[test]
fn catching_up_on_the_other_s_groups_of_any_size_keeps_one_tree_and_fresh_heads() {
    use rand::{Rng, SeedableRng};
    use store::Maintenance;
    let cluster = fast_cluster();
    let (url, a) = fresh(&cluster, "catchup");
    let b = second(&url);
    let mut rng = rand::rngs::StdRng::seed_from_u64(26);
    let (mut size, mut shared_version, mut id) = (0u64, 0u64, 1_000u32);
    // The shared stream: its first event on A, so A caches its head.
    let first = append(&a, vec![event(id, "SHARED", "dossier.received", None)]).unwrap();
    assert_eq!(first.receipts[0].position, 1);
    (size, shared_version, id) = (size + 1, shared_version + 1, id + 1);
    for step in 0..40 {
        let on_b = step % 2 == 1;
        let log = if on_b { &b } else { &a };
        // Mostly small groups, some that cross a tile, and one run on B long enough for A's far path.
        let groups = if step == 21 { 10 } else { 1 };
        for _ in 0..groups {
            let n = match rng.gen_range(0..6) {
                _ if groups > 1 => 480,
                0 => 1,
                1 => rng.gen_range(2..40),
                2 => 255,
                3 => 256,
                _ => rng.gen_range(257..500),
            };
            let mut events: Vec<_> = (0..n)
                .map(|k| {
                    event(
                        id + k as u32,
                        &format!("C{}", id + k as u32),
                        "dossier.received",
                        None,
                    )
                })
                .collect();
            id += n as u32;
            // Every other group also moves the shared stream on, with the version only a fresh head knows.
            let kind = if shared_version % 2 == 1 {
                "dossier.supplement_requested"
            } else {
                "dossier.supplement_received"
            };
            if rng.gen_bool(0.5) {
                events.push(event(id, "SHARED", kind, Some(shared_version)));
                id += 1;
                shared_version += 1;
            }
            let count = events.len() as u64;
            let outcome = append(log, events).unwrap_or_else(|e| panic!("step {step}: {e}"));
            let positions: Vec<u64> = outcome.receipts.iter().map(|r| r.position).collect();
            assert_eq!(
                positions,
                (size + 1..=size + count).collect::<Vec<_>>(),
                "step {step}"
            );
            size += count;
        }
        // A stale expected version of the shared stream is refused on either instance.
        if shared_version > 1 {
            let stale = append(
                if on_b { &a } else { &b },
                vec![event(
                    id,
                    "SHARED",
                    "dossier.supplement_requested",
                    Some(shared_version - 1),
                )],
            );
            assert!(
                matches!(stale, Err(AppendError::Refused(_))),
                "step {step}: a stale expected version was taken: {stale:?}"
            );
            id += 1;
        }
    }
    assert!(
        size > 4_096 + 1_000,
        "the far path needs a long run: {size}"
    );
    assert!(reaches(&a, size) && reaches(&b, size));
    assert_eq!(a.head(), b.head());
    let report = second(&url).verify(&mut |_| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        report.root.as_deref(),
        Some(a.head().root.to_string().as_str())
    );
}
