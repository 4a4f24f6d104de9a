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

/// A real full disk: the server runs in its own user and mount namespaces (`unshare -rm`) on a 6 MB tmpfs, which
/// disappears with it. Appends go on until the disk is full; then every append answers 503 `unavailable` and
/// writes nothing more, readiness says so, and reads are served or answer 503, never 500.
#[test]
fn a_full_disk_answers_503_and_writes_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("token"));
    std::fs::create_dir_all(&data).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=6m tmpfs {d} && {b} --data {d} token create --name admin --role admin | tail -1 > {o} && exec {b} --data {d} serve --listen 127.0.0.1:0",
        d = data.display(),
        b = super::BIN,
        o = out.display()
    );
    let mut child = crate::Proc::spawn(
        std::process::Command::new("unshare")
            .args(["-rm", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null()),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(
        line.contains("listening"),
        "the server did not start in its namespace: {line:?}"
    );
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let token = std::fs::read_to_string(&out).unwrap().trim().to_owned();
    let generated = std::process::Command::new(super::BIN)
        .args([
            "generate",
            "--seed",
            "4",
            "--dossiers",
            "18000",
            "--form",
            "submitted",
        ])
        .output()
        .unwrap();
    let lines: Vec<&str> = std::str::from_utf8(&generated.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""type":"dossier."#))
        .collect();
    let client = reqwest::blocking::Client::new();
    let post = |events: &[&str]| {
        let r = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(format!("[{}]", events.join(",")))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap())
    };
    let size = || {
        client
            .get(format!("{base}/v1/events?limit=1"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()["log_size"]
            .as_u64()
            .unwrap()
    };
    let mut accepted = 0;
    let mut failure = None;
    for batch in lines.chunks(500) {
        match post(batch) {
            (201, _) => accepted += batch.len(),
            (503, problem) => {
                failure = Some(problem);
                break;
            }
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    let problem = failure.expect("6 MB filled up before 60,000 events");
    assert!(accepted > 0, "nothing fitted at all");
    assert_eq!(problem["code"], "unavailable");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{problem}"
    );
    let at_failure = size();
    assert_eq!(
        at_failure, accepted as u64,
        "the log holds exactly what was acknowledged"
    );
    // From now on nothing is written, and readiness says why.
    let (status, body) = post(&lines[lines.len() - 10..]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(size(), at_failure);
    let ready = client.get(format!("{base}/readyz")).send().unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    // Reads go on: the first dossier's state is there.
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    let dossier = client
        .get(format!(
            "{base}/v1/dossiers/{}",
            first["dossier"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .unwrap();
    // Reads are served while sled can serve them (usually from its cache); once sled itself repeats the IO error,
    // they answer 503 `unavailable`, never a 500.
    let status = dossier.status().as_u16();
    let body: Value = dossier.json().unwrap();
    match status {
        200 => assert_eq!(body["dossier"], first["dossier"]),
        503 => assert_eq!(body["code"], "unavailable", "{body}"),
        other => panic!("a read after the failure answered {other}: {body}"),
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
