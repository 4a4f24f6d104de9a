//! Every error code of `api.md`, through real HTTP, as `application/problem+json`; none of them writes anything.

use super::*;
use serde_json::json;
use std::io::{Read, Write};

/// Posts and checks the status, the stable code, the problem form, and that the log did not grow.
fn refused(s: &Server, body: String, status: u16, code: &str) -> Value {
    let before = s.log_size();
    let client = reqwest::blocking::Client::new();
    let resp = client
        .post(format!("{}/v1/events", s.base))
        .bearer_auth(&s.ingest)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: Value = resp.json().unwrap();
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status);
    assert!(
        problem["title"].is_string()
            && problem["detail"].is_string()
            && problem["type"].is_string()
    );
    assert_eq!(s.log_size(), before, "a refused request wrote something");
    problem
}

#[test]
fn each_error_code_through_real_http() {
    let s = Server::start(&["--body-limit-bytes", "65536"]);
    let d = "000.00.12.H27-190312-0042";
    s.receive(d, DEPT);

    refused(&s, "{not json".into(), 400, "malformed_json");
    refused(&s, "42".into(), 400, "malformed_json");

    // Every failing field of every failing event, with index and id.
    let mut bad1 = received("D-X", DEPT);
    bad1["data"]["chanel"] = json!("online");
    let mut bad2 = received("D-Y", DEPT);
    bad2["occurred_at"] = json!("2019-03-12T08:30:00");
    let good = received("D-Z", DEPT);
    let p = refused(
        &s,
        json!([good, bad1.clone(), bad2.clone()]).to_string(),
        422,
        "validation_failed",
    );
    let errors: Vec<(u64, String, String)> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_owned(),
                e["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        errors.contains(&(1, bad1["id"].as_str().unwrap().into(), "data.chanel".into())),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.contains(&(2, bad2["id"].as_str().unwrap().into(), "occurred_at".into())),
        "{errors:?}"
    );

    // expected_version: the answer carries the current version.
    let mut stale = follow_up(
        d,
        DEPT,
        "dossier.supplement_requested",
        "2019-03-12T10:00:00+07:00",
        json!({}),
    );
    stale["expected_version"] = json!(0);
    let p = refused(&s, stale.to_string(), 409, "version_conflict");
    assert_eq!(p["errors"][0]["current_version"], 1);

    let closed_test = follow_up(
        d,
        DEPT,
        "dossier.supplement_received",
        "2019-03-12T10:00:00+07:00",
        json!({}),
    );
    let p = refused(&s, closed_test.to_string(), 409, "invalid_transition");
    assert!(p["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("no supplement request is pending"));

    let mut reused = received(d, DEPT);
    let first = s
        .get(&format!("/v1/dossiers/{d}/events"), Some(&s.auditor))
        .1["events"][0]
        .clone();
    reused["id"] = first["id"].clone();
    reused["dossier"] = json!("D-OTHER");
    let p = refused(&s, reused.to_string(), 409, "id_reused");
    assert_eq!(p["errors"][0]["position"], first["position"]);

    refused(
        &s,
        follow_up(
            "D-NEVER",
            DEPT,
            "dossier.resolved",
            "2019-03-12T10:00:00+07:00",
            json!({ "outcome": "approved" }),
        )
        .to_string(),
        404,
        "dossier_not_found",
    );

    // Too large: a body over the limit, and a batch over 1,000 events.
    let mut big = received("D-BIG", DEPT);
    big["data"]["procedure"] = json!("x".repeat(70_000));
    refused(&s, big.to_string(), 413, "payload_too_large");
    let many: Vec<Value> = (0..1001).map(|i| json!({ "id": id(), "type": "dossier.received", "dossier": format!("M{i}"), "agency": DEPT,
        "occurred_at": "2019-03-12T08:30:00+07:00", "data": { "procedure": "1", "channel": "counter" } })).collect();
    let s2 = Server::start(&[]);
    let before = s2.log_size();
    let (status, p) = s2.post("/v1/events", Some(&s2.ingest), &Value::Array(many));
    assert_eq!(
        (status, p["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_eq!(s2.log_size(), before);
}

#[test]
fn a_body_declared_too_large_is_refused_before_it_is_sent() {
    let s = Server::start(&[]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // Headers only, announcing 50 MB: the answer must come without the body ever being sent.
    write!(conn, "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n", s.ingest).unwrap();
    let mut answer = [0u8; 512];
    let n = conn.read(&mut answer).unwrap();
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("payload_too_large"), "{head}");
}

#[test]
fn a_retry_gets_the_original_receipts_with_200() {
    let s = Server::start(&[]);
    let batch = json!([received("D-R1", DEPT), received("D-R2", COMMUNE)]);
    let (first, receipts) = s.post("/v1/events", Some(&s.ingest), &batch);
    assert_eq!(first, 201);
    let (again, replayed) = s.post("/v1/events", Some(&s.ingest), &batch);
    assert_eq!(again, 200);
    for (a, b) in receipts
        .as_array()
        .unwrap()
        .iter()
        .zip(replayed.as_array().unwrap())
    {
        assert_eq!(
            (&a["id"], &a["position"], &a["version"]),
            (&b["id"], &b["position"], &b["version"])
        );
        assert_eq!(
            (a["replayed"].as_bool(), b["replayed"].as_bool()),
            (Some(false), Some(true))
        );
    }
}

/// Reference data sent by PUT is validated by the same parser as events sent by POST.
#[test]
fn put_bodies_obey_the_event_rules() {
    let s = Server::start(&[]);
    let fields = |(status, body): (u16, Value)| {
        (
            status,
            body["errors"].as_array().map(|e| {
                e.iter()
                    .map(|e| e["field"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            }),
        )
    };
    let long = "x".repeat(600); // names are at most 500 characters, as in agency.registered events
    assert_eq!(
        fields(s.put(
            &format!("/v1/agencies/{COMMUNE}"),
            Some(&s.admin),
            &json!({ "name": long, "level": "commune" })
        )),
        (422, Some(vec!["name".into()]))
    );
    assert_eq!(
        fields(s.put(
            &format!("/v1/agencies/{COMMUNE}"),
            Some(&s.admin),
            &json!({ "name": "X", "level": "commune", "colour": 1 })
        )),
        (422, Some(vec!["colour".into()]))
    );
    assert_eq!(
        fields(s.put(
            &format!("/v1/agencies/{COMMUNE}"),
            Some(&s.admin),
            &json!({ "name": "X", "level": "hamlet" })
        )),
        (422, Some(vec!["level".into()]))
    );
    let offer = json!({ "procedure": "9.999999", "name": "X", "online_level": "level3", "postal_receive": false, "postal_return": true, "effective_from": "2019-01-01" });
    assert_eq!(
        fields(s.put(
            &format!("/v1/agencies/{DEPT}/procedures/1.001234"),
            Some(&s.admin),
            &offer
        )),
        (422, Some(vec!["procedure".into()]))
    );
    assert_eq!(
        fields(s.put(
            "/v1/targets",
            Some(&s.admin),
            &json!({ "agency": "*", "from_period": "2019-Q5" })
        )),
        (422, Some(vec!["from_period".into()]))
    );
    assert_eq!(
        s.put(
            "/v1/targets",
            Some(&s.admin),
            &json!(["not", "an", "object"])
        )
        .0,
        400
    );
    // And a good one is written once, then recognised as unchanged.
    let good = json!({ "name": "UBND xã Thạch Hà", "level": "commune", "parent": DEPT });
    assert_eq!(
        s.put(&format!("/v1/agencies/{COMMUNE}"), Some(&s.admin), &good),
        (200, json!({ "unchanged": true }))
    );
}

/// The contract and the server agree on the edges: the last live admin token cannot be revoked (409 `last_admin`,
/// which would lock everyone out of administration), and codes no URL path can carry (`.`, `..`) are refused when
/// events are parsed.
#[test]
fn the_last_admin_stays_and_dot_codes_are_refused() {
    let s = Server::start(&[]);
    let (status, body) = s.delete("/v1/tokens/admin", Some(&s.admin));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "last_admin");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("casetrail token create --role admin"));
    // With a second admin, the first may go; then the second is the last.
    let (status, created) = s.post(
        "/v1/tokens",
        Some(&s.admin),
        &json!({ "name": "admin-2", "role": "admin" }),
    );
    assert_eq!(status, 201, "{created}");
    let second = created["token"].as_str().unwrap().to_owned();
    assert_eq!(s.delete("/v1/tokens/admin", Some(&second)).0, 204);
    assert_eq!(s.delete("/v1/tokens/admin-2", Some(&second)).0, 409);
    // Revoking other roles is not affected.
    assert_eq!(s.delete("/v1/tokens/analyst", Some(&second)).0, 204);

    for code in [".", ".."] {
        let (status, body) = s.post("/v1/events", Some(&s.ingest), &received(code, DEPT));
        assert_eq!(status, 422, "{code}: {body}");
        assert_eq!(body["errors"][0]["field"], "dossier", "{body}");
    }
    assert_eq!(
        s.post("/v1/events", Some(&s.ingest), &received("...", DEPT))
            .0,
        201,
        "three dots are a name"
    );
}
