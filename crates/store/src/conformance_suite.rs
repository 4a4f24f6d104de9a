//! The conformance suite every [`EventLog`] implementation must pass.
//!
//! `conformance(fresh)` runs each check on a new, empty log from `fresh`. It panics on the first failure, naming
//! the check. The checks speak only through the trait, so a second backend runs the same suite unchanged.

use crate::merkle::MemoryHashes;
use crate::{AppendError, AppendRequest, EventLog, Refusal};
use domain::parse::{parse_envelope, Form};
use domain::{Rejection, StoredEvent, Submitted};
use serde_json::{json, Value};
use tlog_tiles::record_hash;

/// Runs every check, each on a fresh log.
pub fn conformance<L: EventLog>(mut fresh: impl FnMut() -> L) {
    let checks: &[(&str, fn(&L))] = &[
        ("an empty log has size 0 and the empty root", empty_log),
        (
            "one event gets position 1, version 1, and is readable every way",
            one_event,
        ),
        (
            "positions are gapless across batches, versions per stream",
            gapless,
        ),
        (
            "a batch with a refused event writes nothing",
            all_or_nothing,
        ),
        (
            "every refused event of a batch is named",
            every_refusal_named,
        ),
        (
            "a retry gets the original receipts and writes nothing",
            replay,
        ),
        ("an id reused with other content is refused", id_reused),
        ("expected_version is checked", expected_version),
        ("a batch may mix stored and new events", mixed_replay),
        ("a batch carries 1 to 1,000 events", batch_bounds),
        ("read_after pages through the log", pages),
        (
            "stream_before is the stream's events before a position, at every position",
            stream_before,
        ),
        (
            "raw reads are the canonical bytes of what the decoded reads give",
            raw_reads,
        ),
        (
            "the root at every size is RFC 6962 over the canonical bytes",
            roots,
        ),
        (
            "inclusion and consistency proofs check against the roots at every size",
            proofs,
        ),
        (
            "recorded_at never decreases and source is recorded",
            recorded_at_and_source,
        ),
        (
            "an event's source is its own where it has one, else its batch's",
            own_source,
        ),
        (
            "exported events restore to identical bytes and root",
            restore,
        ),
    ];
    for (name, check) in checks {
        let log = fresh();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&log)));
        if let Err(e) = outcome {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!(
                "conformance check failed: {name}: {}",
                why.unwrap_or_default()
            );
        }
    }
}

fn id(n: u32) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

/// `dossier.received` for dossier `d` at minute `m` of 12 March 2019.
fn received(n: u32, d: &str, m: u32) -> Value {
    json!({ "id": id(n), "type": "dossier.received", "dossier": d, "agency": "000.00.12.H27",
            "occurred_at": format!("2019-03-12T08:{m:02}:00+07:00"),
            "data": { "procedure": "1.001234", "channel": "postal" } })
}

fn supplement(n: u32, d: &str, m: u32) -> Value {
    json!({ "id": id(n), "type": "dossier.supplement_requested", "dossier": d, "agency": "000.00.12.H27",
            "occurred_at": format!("2019-03-12T09:{m:02}:00+07:00"), "data": {} })
}

fn submitted(values: &[Value]) -> Vec<Submitted> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            parse_envelope(v, i, Form::Exported)
                .unwrap_or_else(|e| panic!("test event {i} does not parse: {e:?}"))
        })
        .collect()
}

fn append<L: EventLog>(log: &L, values: &[Value]) -> Result<crate::AppendOutcome, AppendError> {
    log.append_blocking(AppendRequest {
        events: submitted(values),
        source: "conformance".into(),
    })
}

fn empty_log<L: EventLog>(log: &L) {
    let head = log.head();
    assert_eq!(head.size, 0);
    assert_eq!(head.root, tlog_tiles::EMPTY_HASH);
    assert!(log.read_after(0, 10).unwrap().is_empty());
    assert!(log.stream("D1").unwrap().is_empty());
    assert!(log.stream_head("D1").unwrap().is_none());
    assert!(log.event(1).unwrap().is_none());
}

fn one_event<L: EventLog>(log: &L) {
    let out = append(log, &[received(1, "D1", 0)]).unwrap();
    assert_eq!(out.receipts.len(), 1);
    let r = &out.receipts[0];
    assert_eq!((r.position, r.version, r.replayed), (1, 1, false));
    assert_eq!(log.head().size, 1);
    let e = log.event(1).unwrap().expect("position 1");
    assert_eq!(e.event.id.to_string(), id(1));
    assert_eq!(log.event_by_id(e.event.id).unwrap().as_ref(), Some(&e));
    assert_eq!(log.stream("D1").unwrap(), vec![e.clone()]);
    let head = log.stream_head("D1").unwrap().expect("a head");
    assert_eq!(head.version, 1);
    assert_eq!(
        head.dossier.expect("dossier state").channel.as_str(),
        "postal"
    );
    assert_eq!(
        log.head().root,
        record_hash(&e.canonical_bytes()),
        "a one-leaf tree's root is the leaf hash"
    );
}

fn gapless<L: EventLog>(log: &L) {
    append(log, &[received(1, "D1", 0), received(2, "D2", 1)]).unwrap();
    append(log, &[supplement(3, "D2", 0)]).unwrap();
    let out = append(log, &[received(4, "D3", 2), supplement(5, "D1", 1)]).unwrap();
    assert_eq!(
        out.receipts
            .iter()
            .map(|r| (r.position, r.version))
            .collect::<Vec<_>>(),
        vec![(4, 1), (5, 2)]
    );
    let all = log.read_after(0, 100).unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    for d in ["D1", "D2", "D3"] {
        let versions: Vec<u64> = log.stream(d).unwrap().iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "versions of {d}"
        );
    }
}

fn stream_before<L: EventLog>(log: &L) {
    // Three interleaved streams, so that each has events on both sides of most positions.
    append(log, &[received(1, "D1", 0), received(2, "D2", 1)]).unwrap();
    append(log, &[supplement(3, "D1", 0), received(4, "D3", 2)]).unwrap();
    append(log, &[supplement(5, "D2", 1)]).unwrap();
    append(log, &[received(6, "D4", 3), supplement(7, "D3", 3)]).unwrap();
    let size = log.head().size;
    for d in ["D1", "D2", "D3", "D4", "D5"] {
        let whole = log.stream(d).unwrap();
        for position in 0..=size + 2 {
            let expected: Vec<u64> = whole
                .iter()
                .filter(|e| e.position < position)
                .map(|e| e.position)
                .collect();
            let got: Vec<u64> = log
                .stream_before(d, position)
                .unwrap()
                .iter()
                .map(|e| e.position)
                .collect();
            assert_eq!(got, expected, "{d} before {position}");
        }
    }
}

fn raw_reads<L: EventLog>(log: &L) {
    append(log, &[received(1, "D1", 0), received(2, "D2", 1)]).unwrap();
    append(log, &[supplement(3, "D1", 0)]).unwrap();
    append(log, &[supplement(4, "D2", 1), received(5, "D3", 2)]).unwrap();
    let size = log.head().size;
    for after in 0..=size + 1 {
        for limit in [1, 2, 100] {
            let decoded: Vec<crate::RawEvent> = log
                .read_after(after, limit)
                .unwrap()
                .iter()
                .map(crate::RawEvent::of)
                .collect();
            assert_eq!(
                log.read_raw_after(after, limit).unwrap(),
                decoded,
                "after {after}, {limit}"
            );
        }
    }
    for d in ["D1", "D2", "D3", "D4"] {
        let decoded: Vec<crate::RawEvent> = log
            .stream(d)
            .unwrap()
            .iter()
            .map(crate::RawEvent::of)
            .collect();
        assert_eq!(log.stream_raw(d).unwrap(), decoded, "{d}");
    }
}

fn all_or_nothing<L: EventLog>(log: &L) {
    append(log, &[received(1, "D1", 0)]).unwrap();
    let before = log.head();
    let err = append(log, &[received(2, "D2", 1), received(3, "D1", 2)]).unwrap_err();
    let AppendError::Refused(refusals) = err else {
        panic!("expected a refusal, got {err:?}")
    };
    assert_eq!(refusals.len(), 1);
    assert_eq!((refusals[0].index, refusals[0].id.to_string()), (1, id(3)));
    assert_eq!(refusals[0].refusal, Refusal::Rule(Rejection::DossierExists));
    assert_eq!(log.head(), before, "nothing was written");
    assert!(
        log.event_by_id(id(2).parse().unwrap()).unwrap().is_none(),
        "not even the good event"
    );
    assert!(log.stream("D2").unwrap().is_empty());
    assert!(log.stream_head("D2").unwrap().is_none());
}

fn every_refusal_named<L: EventLog>(log: &L) {
    let err = append(
        log,
        &[
            supplement(1, "D9", 0),
            received(2, "D1", 0),
            supplement(3, "D8", 0),
        ],
    )
    .unwrap_err();
    let AppendError::Refused(refusals) = err else {
        panic!("expected a refusal")
    };
    assert_eq!(
        refusals.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert!(refusals
        .iter()
        .all(|r| r.refusal == Refusal::Rule(Rejection::DossierNotFound)));
    assert_eq!(log.head().size, 0);
}

fn replay<L: EventLog>(log: &L) {
    let batch = [received(1, "D1", 0), received(2, "D2", 0)];
    let first = append(log, &batch).unwrap();
    let head = log.head();
    let again = append(log, &batch).unwrap();
    assert!(again.all_replayed());
    assert_eq!(
        again
            .receipts
            .iter()
            .map(|r| (r.id, r.position, r.version))
            .collect::<Vec<_>>(),
        first
            .receipts
            .iter()
            .map(|r| (r.id, r.position, r.version))
            .collect::<Vec<_>>()
    );
    assert_eq!(log.head(), head);
}

fn id_reused<L: EventLog>(log: &L) {
    append(log, &[received(1, "D1", 0)]).unwrap();
    let err = append(log, &[received(1, "D1", 5)]).unwrap_err();
    assert_eq!(
        err,
        AppendError::Refused(vec![crate::EventRefusal {
            index: 0,
            id: id(1).parse().unwrap(),
            refusal: Refusal::IdReused { position: 1 }
        }])
    );
    assert_eq!(log.head().size, 1);
}

fn expected_version<L: EventLog>(log: &L) {
    let mut first = received(1, "D1", 0);
    first["expected_version"] = json!(0);
    append(log, &[first]).unwrap();
    let mut stale = supplement(2, "D1", 0);
    stale["expected_version"] = json!(0);
    let err = append(log, &[stale.clone()]).unwrap_err();
    let AppendError::Refused(r) = err else {
        panic!("expected a refusal")
    };
    assert_eq!(
        r[0].refusal,
        Refusal::Rule(Rejection::VersionConflict {
            expected: 0,
            current: 1
        })
    );
    stale["expected_version"] = json!(1);
    assert_eq!(append(log, &[stale]).unwrap().receipts[0].version, 2);
}

fn mixed_replay<L: EventLog>(log: &L) {
    append(log, &[received(1, "D1", 0)]).unwrap();
    let out = append(log, &[received(1, "D1", 0), supplement(2, "D1", 0)]).unwrap();
    assert_eq!(
        out.receipts
            .iter()
            .map(|r| (r.position, r.replayed))
            .collect::<Vec<_>>(),
        vec![(1, true), (2, false)]
    );
    assert!(!out.all_replayed());
}

fn pages<L: EventLog>(log: &L) {
    let batch: Vec<Value> = (0..25)
        .map(|i| received(i + 1, &format!("D{i}"), i))
        .collect();
    append(log, &batch).unwrap();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = log.read_after(after, 7).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().unwrap().position;
        seen.extend(page.into_iter().map(|e| e.position));
    }
    assert_eq!(seen, (1..=25).collect::<Vec<u64>>());
    assert!(log.read_after(25, 10).unwrap().is_empty());
}

/// An independent computation of every root: tlog's stored hashes over the canonical bytes, in memory.
fn roots<L: EventLog>(log: &L) {
    for i in 0..13u32 {
        append(log, &[received(i + 1, &format!("D{i}"), i)]).unwrap();
    }
    let events = log.read_after(0, 100).unwrap();
    let mut tree = MemoryHashes::default();
    for (n, e) in events.iter().enumerate() {
        tree.push(n as u64, &e.canonical_bytes());
        let size = n as u64 + 1;
        assert_eq!(
            log.root_at(size).unwrap(),
            tree.root(size),
            "root at size {size}"
        );
    }
    assert_eq!(log.head().root, tree.root(13));
    assert!(log.root_at(14).is_err(), "no root past the head");
}

fn proofs<L: EventLog>(log: &L) {
    for i in 0..11u32 {
        append(log, &[received(i + 1, &format!("D{i}"), i)]).unwrap();
    }
    let events = log.read_after(0, 100).unwrap();
    let leaves: Vec<_> = events
        .iter()
        .map(|e| record_hash(&e.canonical_bytes()))
        .collect();
    let roots: Vec<_> = (0..=11).map(|n| log.root_at(n).unwrap()).collect();
    for size in 1..=11u64 {
        for position in 1..=size {
            let proof = log.prove_inclusion(position, size).unwrap();
            tlog_tiles::check_record(
                &proof,
                size,
                roots[size as usize],
                position - 1,
                leaves[position as usize - 1],
            )
            .unwrap_or_else(|e| panic!("inclusion of {position} in {size}: {e}"));
            if size > 1 {
                // The proof is for this leaf only.
                let other = leaves[(position % size) as usize];
                assert!(tlog_tiles::check_record(
                    &proof,
                    size,
                    roots[size as usize],
                    position - 1,
                    other
                )
                .is_err());
            }
        }
        for from in 0..=size {
            let proof = log.prove_consistency(from, size).unwrap();
            if from == 0 {
                assert!(proof.is_empty());
                continue;
            }
            tlog_tiles::check_tree(
                &proof,
                size,
                roots[size as usize],
                from,
                roots[from as usize],
            )
            .unwrap_or_else(|e| panic!("consistency of {from} with {size}: {e}"));
        }
    }
    assert!(log.prove_inclusion(0, 5).is_err());
    assert!(log.prove_inclusion(6, 5).is_err());
    assert!(
        log.prove_inclusion(1, 12).is_err(),
        "no proof past the head"
    );
    assert!(log.prove_consistency(6, 5).is_err());
    assert!(log.prove_consistency(5, 12).is_err());
}

fn recorded_at_and_source<L: EventLog>(log: &L) {
    for i in 0..5u32 {
        append(log, &[received(i + 1, &format!("D{i}"), i)]).unwrap();
    }
    let events = log.read_after(0, 10).unwrap();
    assert!(events
        .windows(2)
        .all(|w| w[0].recorded_at <= w[1].recorded_at));
    assert!(events.iter().all(|e| e.source == "conformance"));
}

fn own_source<L: EventLog>(log: &L) {
    let mut events = submitted(&[received(1, "D1", 0), received(2, "D2", 1)]);
    events[1].source = Some("adapter:arrival".into());
    log.append_blocking(AppendRequest {
        events,
        source: "conformance".into(),
    })
    .unwrap();
    let stored = log.read_after(0, 10).unwrap();
    let sources: Vec<&str> = stored.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(sources, ["conformance", "adapter:arrival"]);
    // A retry with the batch's source only is the same events: nothing written, the original receipts.
    let again = append(log, &[received(1, "D1", 0), received(2, "D2", 1)]).unwrap();
    assert!(again.receipts.iter().all(|r| r.replayed));
    assert_eq!(log.head().size, 2);
}

fn restore<L: EventLog>(log: &L) {
    // Events as an export of another log would carry them, recorded long ago by another source.
    let exported: Vec<Value> = (0..4u32)
        .map(|i| {
            let mut v = if i < 3 {
                received(i + 1, &format!("D{i}"), i)
            } else {
                supplement(i + 1, "D0", 0)
            };
            let (position, version) = (i as u64 + 1, if i < 3 { 1 } else { 2 });
            v["position"] = json!(position);
            v["version"] = json!(version);
            v["recorded_at"] = json!(format!("2019-03-12T02:{:02}:00.000001Z", 30 + i));
            v["source"] = json!("vendor-x");
            v
        })
        .collect();
    append(log, &exported).unwrap();
    for (stored, original) in log.read_after(0, 10).unwrap().iter().zip(&exported) {
        let reparsed: Value = serde_json::from_slice(&stored.canonical_bytes()).unwrap();
        assert_eq!(
            &reparsed, original,
            "restored bytes keep every stored field"
        );
        assert_eq!(
            StoredEvent::from_canonical_bytes(&stored.canonical_bytes()).unwrap(),
            *stored
        );
    }
    // A restore into the wrong place is refused.
    let mut wrong = received(9, "D9", 9);
    wrong["position"] = json!(2);
    wrong["version"] = json!(1);
    wrong["recorded_at"] = json!("2019-03-12T03:00:00Z");
    wrong["source"] = json!("vendor-x");
    let AppendError::Refused(r) = append(log, &[wrong]).unwrap_err() else {
        panic!("expected a refusal")
    };
    assert!(matches!(r[0].refusal, Refusal::StoredFields(_)));
}

fn batch_bounds<L: EventLog>(log: &L) {
    assert_eq!(append(log, &[]).unwrap_err(), AppendError::BatchSize(0));
    let many: Vec<Value> = (0..1001)
        .map(|i| received(i + 1, &format!("D{i}"), i % 60))
        .collect();
    assert_eq!(
        append(log, &many).unwrap_err(),
        AppendError::BatchSize(1001)
    );
    assert_eq!(log.head().size, 0);
    assert_eq!(append(log, &many[..1000]).unwrap().receipts.len(), 1000);
}
