//! verify and rebuild-indexes on PostgreSQL: damage named at its position, derived tables rebuilt from the events.

use super::{fast_cluster, fresh};
use domain::parse::{parse_envelope, Form};
use serde_json::json;
use store::{AppendRequest, EventLog, Maintenance};

fn load(log: &pglog::PgLog, dossiers: u32) {
    for d in 0..dossiers {
        let events = (0..3u32)
            .map(|k| {
                let (ty, data) = match k {
                    0 => ("dossier.received", json!({ "procedure": "1.001234", "channel": "counter" })),
                    1 => ("dossier.supplement_requested", json!({})),
                    _ => ("dossier.supplement_received", json!({})),
                };
                let v = json!({ "id": format!("00000000-0000-7000-8000-{:012}", d * 3 + k), "type": ty,
                    "dossier": format!("D{d}"), "agency": "000.00.12.H27",
                    "occurred_at": format!("2019-03-12T08:{:02}:00+07:00", k), "data": data });
                parse_envelope(&v, 0, Form::Submitted).unwrap()
            })
            .collect();
        log.append_blocking(AppendRequest {
            events,
            source: "test".into(),
        })
        .unwrap();
    }
}

#[test]
fn verify_names_damage_and_rebuild_mends_what_is_derived() {
    let cluster = fast_cluster();
    let (url, log) = fresh(&cluster, "maintenance");
    load(&log, 200); // 600 events: two whole tiles and part of a third
    let head = log.head();
    let clean = log.verify(&mut |_| {}).unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.root.as_deref(), Some(head.root.to_string().as_str()));
    assert_eq!(clean.streams, 200);

    // A derived table damaged: a stream head, and an upper hash.
    cluster
        .psql(
            "maintenance",
            "UPDATE streams SET version = 9, head = '\\x0900' WHERE stream = 'D7'",
        )
        .unwrap();
    cluster
        .psql(
            "maintenance",
            "UPDATE audit_upper SET hashes = overlay(hashes placing '\\xff'::bytea from 1)",
        )
        .unwrap();
    let damaged = log.verify(&mut |_| {}).unwrap();
    let said: Vec<&str> = damaged.problems.iter().map(|(_, w)| w.as_str()).collect();
    assert!(said.iter().any(|w| w.contains("head of D7")), "{said:?}");
    assert!(said.iter().any(|w| w.contains("audit hashes")), "{said:?}");
    assert!(damaged.root.is_none());

    // Not while another node writes: its copy of the audit hashes and its head would undo the rebuild.
    {
        let other = pglog::PgLog::open(pglog::Config::new(url.clone())).unwrap();
        load(&other, 0);
        other
            .append_blocking(store::AppendRequest {
                events: vec![],
                source: "test".into(),
            })
            .ok();
        let refused = log.rebuild_indexes(&mut |_| {}).unwrap_err();
        assert!(refused.to_string().contains("stop every node"), "{refused}");
    }
    // Once it has stopped (its session ends a moment after it closes).
    let since = std::time::Instant::now();
    let rebuilt = loop {
        match log.rebuild_indexes(&mut |_| {}) {
            Ok(head) => break head,
            Err(e) if since.elapsed() < std::time::Duration::from_secs(10) => {
                assert!(e.to_string().contains("stop every node"), "{e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(rebuilt, head);
    let mended = log.verify(&mut |_| {}).unwrap();
    assert!(mended.problems.is_empty(), "{:?}", mended.problems);

    // An event's bytes changed (its checksum cannot be mended): named at its own position.
    cluster
        .psql(
            "maintenance",
            "UPDATE events SET bytes = convert_to(replace(convert_from(bytes, 'UTF8'), 'counter', 'postal'), 'UTF8') WHERE position = 301",
        )
        .unwrap();
    let tampered = log.verify(&mut |_| {}).unwrap();
    assert_eq!(
        tampered.problems.first().map(|(p, _)| *p),
        Some(301),
        "{:?}",
        tampered.problems
    );
}
