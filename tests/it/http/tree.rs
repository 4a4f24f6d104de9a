//! The agency tree stays a tree: a registration that would make a cycle of any length is refused (409
//! `agency_cycle`, naming the cycle's path) at every entry, and `verify` names one found in an existing log.

use super::*;
use crate::{casetrail, stderr, stdout};

fn register(s: &Server, code: &str, parent: Option<&str>) -> (u16, Value) {
    s.put(
        &format!("/v1/agencies/{code}"),
        Some(&s.admin),
        &json!({ "name": format!("Cơ quan {code}"), "level": "department", "parent": parent }),
    )
}

fn refused_as_cycle((status, body): (u16, Value), path: &[&str]) {
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "agency_cycle", "{body}");
    assert_eq!(body["errors"][0]["code"], "agency_cycle", "{body}");
    let detail = body["errors"][0]["message"].as_str().unwrap();
    assert!(detail.ends_with(&path.join(" → ")), "{detail}");
}

#[test]
fn registrations_that_would_make_a_cycle_are_refused_at_every_length() {
    let s = Server::start(&[]);
    let before = s.log_size();
    // Length 1: its own parent.
    refused_as_cycle(register(&s, DEPT, Some(DEPT)), &[DEPT, DEPT]);
    // Length 2: under its own child (the commune is registered under the department).
    refused_as_cycle(register(&s, DEPT, Some(COMMUNE)), &[DEPT, COMMUNE, DEPT]);
    // Length 5: a chain of five, then its head under its tail.
    let chain = [
        "000.00.31.H27",
        "000.00.32.H27",
        "000.00.33.H27",
        "000.00.34.H27",
        "000.00.35.H27",
    ];
    assert_eq!(register(&s, chain[0], Some(PROVINCE)).0, 201);
    for w in chain.windows(2) {
        assert_eq!(register(&s, w[1], Some(w[0])).0, 201);
    }
    refused_as_cycle(
        register(&s, chain[0], Some(chain[4])),
        &[chain[0], chain[4], chain[3], chain[2], chain[1], chain[0]],
    );
    // Nothing of the refusals was written.
    assert_eq!(s.log_size(), before + 5);
    // A re-parenting that makes no cycle is accepted: the commune moves under the other department...
    assert_eq!(register(&s, COMMUNE, Some(OTHER)).0, 201);
    // ...and then the department may go under it, since it is no longer its ancestor.
    assert_eq!(register(&s, DEPT, Some(COMMUNE)).0, 201);
    // Through POST /v1/events too, and within one batch: the second registration closes the cycle the first opened.
    let ev = |code: &str, parent: &str| {
        json!({ "id": id(), "type": "agency.registered", "agency": code, "occurred_at": "2019-01-01T00:00:00+07:00",
                "data": { "name": "X", "level": "department", "parent": parent } })
    };
    let batch = json!([
        ev("000.00.41.H27", PROVINCE),
        ev("000.00.42.H27", "000.00.41.H27"),
        ev("000.00.41.H27", "000.00.42.H27")
    ]);
    let (status, body) = s.post("/v1/events", Some(&s.admin), &batch);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["index"], 2, "{body}");
    assert_eq!(body["errors"][0]["code"], "agency_cycle");
    assert_eq!(s.log_size(), before + 7, "the whole batch was refused");
    // The ingest token scoped to the department still covers only what is below it.
    let (status, _) = s.post(
        "/v1/events",
        Some(&s.ingest),
        &received("D-TREE", "000.00.35.H27"),
    );
    assert_eq!(status, 403);
}

#[test]
fn an_import_that_would_make_a_cycle_is_refused_and_verify_names_one_in_an_old_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("tree.ndjson");
    let ev = |n: u32, code: &str, parent: Option<&str>| {
        json!({ "id": format!("01935c3e-0000-7000-8000-00000000{n:04}"), "type": "agency.registered", "agency": code,
                "occurred_at": "2019-01-01T00:00:00+07:00", "data": { "name": "X", "level": "department", "parent": parent } })
        .to_string()
    };
    let (a, b, c) = ("000.00.51.H27", "000.00.52.H27", "000.00.53.H27");
    std::fs::write(
        &file,
        [ev(1, a, None), ev(2, b, Some(a)), ev(3, a, Some(b))].join("\n"),
    )
    .unwrap();
    let out = casetrail(&data, &["import", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("line 3") && stderr(&out).contains("cycle"),
        "{}",
        stderr(&out)
    );

    // A log written before the rule: rewrite a harmless re-parenting (A under C) into one that closes a cycle
    // (A under B), then rebuild the indexes so that every hash matches again; verify still names the cycle.
    std::fs::write(
        &file,
        [
            ev(1, a, None),
            ev(2, b, Some(a)),
            ev(3, c, None),
            ev(4, a, Some(c)),
        ]
        .join("\n"),
    )
    .unwrap();
    let data = dir.path().join("old");
    assert!(casetrail(&data, &["import", file.to_str().unwrap()])
        .status
        .success());
    {
        let db = sled::open(&data).unwrap();
        let bytes = String::from_utf8(store::tamper::event_bytes(&db, 4)).unwrap();
        assert!(bytes.contains(c));
        store::tamper::set_event(
            &db,
            4,
            bytes
                .replace(
                    &format!("\"parent\":\"{c}\""),
                    &format!("\"parent\":\"{b}\""),
                )
                .into_bytes(),
        );
        db.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(casetrail(&data, &["rebuild-indexes"]).status.success());
    let out = casetrail(&data, &["verify"]);
    assert!(!out.status.success());
    let said = stdout(&out) + &stderr(&out);
    assert!(
        said.contains("position 4") && said.contains(&format!("{a} → {b} → {a}")),
        "{said}"
    );
}
