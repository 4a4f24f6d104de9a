//! Who may do what: every endpoint against every kind of caller, and an ingest token's scope.

use super::*;
use serde_json::json;

#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    BadToken,
    Ingest,
    Analyst,
    Auditor,
    Admin,
}

const WHO: [Who; 6] = [
    Who::Nobody,
    Who::BadToken,
    Who::Ingest,
    Who::Analyst,
    Who::Auditor,
    Who::Admin,
];

fn token(s: &Server, who: Who) -> Option<String> {
    match who {
        Who::Nobody => None,
        Who::BadToken => Some("ct_not-a-real-token".into()),
        Who::Ingest => Some(s.ingest.clone()),
        Who::Analyst => Some(s.analyst.clone()),
        Who::Auditor => Some(s.auditor.clone()),
        Who::Admin => Some(s.admin.clone()),
    }
}

#[test]
fn every_endpoint_answers_every_role_as_the_contract_says() {
    let s = Server::start(&[]);
    let dossier = "000.00.12.H27-190312-0001";
    s.receive(dossier, DEPT);
    let mut n = 0;
    // (method, path, body maker, expected status for Nobody, BadToken, Ingest, Analyst, Auditor, Admin)
    type Body = Box<dyn Fn(&mut u32) -> Option<serde_json::Value>>;
    let cases: Vec<(&str, String, Body, [u16; 6])> = vec![
        (
            "POST",
            "/v1/events".into(),
            Box::new(|n: &mut u32| {
                *n += 1;
                Some(received(&format!("000.00.12.H27-190312-1{n:03}"), DEPT))
            }),
            [401, 401, 201, 403, 403, 201],
        ),
        (
            "GET",
            "/v1/events".into(),
            Box::new(|_: &mut u32| None),
            [401, 401, 403, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/events/live?after=999999".into(),
            Box::new(|_: &mut u32| None),
            [401, 401, 403, 200, 200, 200],
        ),
        (
            "GET",
            format!("/v1/dossiers/{dossier}"),
            Box::new(|_: &mut u32| None),
            [401, 401, 200, 200, 200, 200],
        ),
        (
            "GET",
            format!("/v1/dossiers/{dossier}/events"),
            Box::new(|_: &mut u32| None),
            [401, 401, 200, 403, 200, 200],
        ),
        (
            "PUT",
            format!("/v1/agencies/{COMMUNE}"),
            Box::new(|n: &mut u32| {
                *n += 1;
                Some(json!({ "name": format!("UBND xã {n}"), "level": "commune", "parent": DEPT }))
            }),
            [401, 401, 403, 403, 403, 201],
        ),
        (
            "PUT",
            format!("/v1/agencies/{DEPT}/procedures/1.001234"),
            Box::new(|n: &mut u32| {
                *n += 1;
                Some(
                    json!({ "name": format!("Chứng thực {n}"), "online_level": "level4", "postal_receive": true, "postal_return": true, "effective_from": "2019-01-01" }),
                )
            }),
            [401, 401, 201, 403, 403, 201],
        ),
        (
            "PUT",
            "/v1/targets".into(),
            Box::new(|_: &mut u32| Some(json!({ "agency": "*", "from_period": "2019-Q2" }))),
            [401, 401, 403, 403, 403, 201],
        ),
        (
            "GET",
            "/v1/catalogue".into(),
            Box::new(|_: &mut u32| None),
            [200, 401, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/tokens".into(),
            Box::new(|_: &mut u32| None),
            [401, 401, 403, 403, 403, 200],
        ),
        // Audit: auditors and admins only. The first checkpoint is signed by the auditor's POST (201); the admin's
        // finds it (200), the log having not grown between.
        (
            "GET",
            "/v1/audit/key".into(),
            Box::new(|_: &mut u32| None),
            [401, 401, 403, 403, 200, 200],
        ),
        (
            "GET",
            "/v1/audit/head".into(),
            Box::new(|_: &mut u32| None),
            [401, 401, 403, 403, 200, 200],
        ),
        (
            "POST",
            "/v1/audit/checkpoints".into(),
            Box::new(|_: &mut u32| Some(json!({}))),
            [401, 401, 403, 403, 201, 200],
        ),
        (
            "GET",
            "/v1/audit/checkpoints".into(),
            Box::new(|_: &mut u32| None),
            [401, 401, 403, 403, 200, 200],
        ),
        (
            "GET",
            "/v1/audit/proof?position=1".into(),
            Box::new(|_: &mut u32| None),
            [401, 401, 403, 403, 200, 200],
        ),
        (
            "GET",
            "/v1/audit/consistency?from=1".into(),
            Box::new(|_: &mut u32| None),
            [401, 401, 403, 403, 200, 200],
        ),
        (
            "GET",
            format!("/v1/dossiers/{dossier}/bundle"),
            Box::new(|_: &mut u32| None),
            [401, 401, 403, 403, 200, 200],
        ),
        (
            "GET",
            "/healthz".into(),
            Box::new(|_: &mut u32| None),
            [200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/readyz".into(),
            Box::new(|_: &mut u32| None),
            [200, 200, 200, 200, 200, 200],
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &cases {
        for (who, want) in WHO.iter().zip(expected) {
            let t = token(&s, *who);
            let got = if path.contains("/live") {
                // Only the status: the stream itself stays open.
                let client = reqwest::blocking::Client::new();
                let mut req = client.get(format!("{}{}", s.base, path));
                if let Some(t) = &t {
                    req = req.bearer_auth(t);
                }
                req.send().unwrap().status().as_u16()
            } else {
                match *method {
                    "GET" => s.get(path, t.as_deref()).0,
                    "POST" => s.post(path, t.as_deref(), &body(&mut n).unwrap()).0,
                    "PUT" => s.put(path, t.as_deref(), &body(&mut n).unwrap()).0,
                    _ => unreachable!(),
                }
            };
            if got != *want {
                failures.push(format!(
                    "{method} {path} as {who:?}: {got}, expected {want}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_ingest_token_writes_and_reads_only_within_its_agency_subtree() {
    let s = Server::start(&[]);
    // Its own department and a commune registered below it: fine.
    s.receive("D-DEPT-1", DEPT);
    s.receive("D-COMM-1", COMMUNE);
    // Another department's dossier: refused, and nothing of the batch is written.
    let size = s.log_size();
    let batch = json!([received("D-DEPT-2", DEPT), received("D-OTHER-1", OTHER)]);
    let (status, body) = s.post("/v1/events", Some(&s.ingest), &batch);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    assert_eq!(s.log_size(), size);
    // Reference events are not theirs, even one without an agency at all (a target for every agency: this one
    // once took the server's worker down instead of answering).
    for reference in [
        json!({"id": "01935c3e-8f4a-7b21-9c55-3f2d8e6a1b77", "type": "target.set", "occurred_at": "2019-01-01T00:00:00Z",
               "data": {"agency": "*", "from_period": "2019"}}),
        json!({"id": "01935c3e-8f4a-7b21-9c55-3f2d8e6a1b78", "type": "target.set", "agency": DEPT,
               "occurred_at": "2019-01-01T00:00:00Z", "data": {"agency": DEPT, "from_period": "2019"}}),
    ] {
        let (status, body) = s.post("/v1/events", Some(&s.ingest), &reference);
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{body}"
        );
    }
    assert_eq!(s.log_size(), size);
    // Reading: a dossier of its scope, yes; of another scope, no; one that does not exist answers the same 403,
    // so the answer does not tell whether it exists.
    assert_eq!(
        s.post(
            "/v1/events",
            Some(&s.ingest_other),
            &received("D-OTHER-2", OTHER)
        )
        .0,
        201
    );
    let (status, state) = s.get("/v1/dossiers/D-COMM-1", Some(&s.ingest));
    assert_eq!(
        (status, state["status"].as_str(), state["version"].as_u64()),
        (200, Some("received"), Some(1))
    );
    assert!(state.get("on_time").is_some(), "{state}");
    let (other, _) = s.get("/v1/dossiers/D-OTHER-2", Some(&s.ingest));
    let (missing, _) = s.get("/v1/dossiers/D-NOWHERE", Some(&s.ingest));
    assert_eq!((other, missing), (403, 403));
    // An analyst is told plainly.
    assert_eq!(s.get("/v1/dossiers/D-NOWHERE", Some(&s.analyst)).0, 404);
    // Every event records the token that wrote it.
    let (_, trail) = s.get("/v1/dossiers/D-COMM-1/events", Some(&s.auditor));
    assert_eq!(trail["events"][0]["source"], "vendor-dept12");
    assert!(trail["events"][0]["leaf_hash"]
        .as_str()
        .is_some_and(|h| h.len() == 44));
}

#[test]
fn an_ingest_token_may_not_write_reference_events_through_the_event_endpoint() {
    let s = Server::start(&[]);
    let agency = json!({ "id": id(), "type": "agency.registered", "agency": "000.12.09.H27", "occurred_at": "2019-01-01T00:00:00Z",
                         "data": { "name": "X", "level": "commune", "parent": DEPT } });
    assert_eq!(s.post("/v1/events", Some(&s.ingest), &agency).0, 403);
    assert_eq!(s.post("/v1/events", Some(&s.admin), &agency).0, 201);
}

#[test]
fn tokens_are_managed_over_http_by_admins() {
    let s = Server::start(&[]);
    let (status, made) = s.post(
        "/v1/tokens",
        Some(&s.admin),
        &json!({ "name": "vendor-b", "role": "ingest", "agency": COMMUNE }),
    );
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.post("/v1/events", Some(&token), &received("D-B-1", COMMUNE))
            .0,
        201
    );
    assert_eq!(
        s.post(
            "/v1/tokens",
            Some(&s.admin),
            &json!({ "name": "vendor-b", "role": "analyst" })
        )
        .0,
        409
    );
    assert_eq!(
        s.post(
            "/v1/tokens",
            Some(&s.admin),
            &json!({ "name": "x", "role": "ingest" })
        )
        .0,
        422,
        "ingest needs an agency"
    );
    let (_, list) = s.get("/v1/tokens", Some(&s.admin));
    assert!(list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "vendor-b" && t.get("token").is_none()));
    assert_eq!(s.delete("/v1/tokens/vendor-b", Some(&s.admin)).0, 204);
    assert_eq!(
        s.post("/v1/events", Some(&token), &received("D-B-2", COMMUNE))
            .0,
        401,
        "a revoked token is unknown"
    );
    assert_eq!(s.delete("/v1/tokens/vendor-b", Some(&s.admin)).0, 404);
}
