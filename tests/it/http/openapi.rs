//! `/openapi.json` is valid, every operation it documents is really routed, and real requests and answers match
//! the schemas it gives them: a vendor generating a client from it gets what the server does.

use super::*;
use serde_json::json;

/// Checks `instance` against the document's schema `schema` (a JSON pointer into the document).
fn conforms(doc: &Value, schema: Value, instance: &Value, what: &str) {
    let mut root = doc.clone();
    root.as_object_mut()
        .unwrap()
        .insert("$defs".into(), json!({ "target": schema }));
    root.as_object_mut()
        .unwrap()
        .insert("$ref".into(), json!("#/$defs/target"));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .expect("the document's schemas compile");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its documented schema:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

fn named(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

#[test]
fn every_documented_operation_is_routed() {
    let s = Server::start(&[]);
    let (status, doc) = s.get("/openapi.json", None);
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let client = reqwest::blocking::Client::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{dossier}", "D-NONE")
            .replace("{code}", DEPT)
            .replace("{procedure}", "1.001234")
            .replace("{name}", "nobody");
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            if concrete.ends_with("/live") {
                continue; // a stream: routed, as the role matrix shows
            }
            let resp = client
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{}", s.base, concrete),
                )
                .bearer_auth(&s.admin)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .unwrap();
            let status = resp.status();
            let body: Value = resp.json().unwrap_or(Value::Null);
            let routed = status.as_u16() != 405
                && !matches!(
                    body["code"].as_str(),
                    Some("route_not_found" | "method_not_allowed")
                );
            assert!(
                routed,
                "{method} {path} is documented but not routed ({status}: {body})"
            );
        }
    }
    assert_eq!(operations, 30, "operations documented");
}

#[test]
fn real_requests_and_answers_match_the_documented_schemas() {
    let s = Server::start(&[]);
    let (_, doc) = s.get("/openapi.json", None);
    let d = "000.00.12.H27-190312-0077";
    let batch = life(d);
    conforms(
        &doc,
        named("Submission"),
        &batch,
        "a batch of every dossier event type",
    );
    let (status, receipts) = s.post("/v1/events", Some(&s.ingest), &batch);
    assert_eq!(status, 201);
    conforms(
        &doc,
        json!({ "type": "array", "items": named("Receipt") }),
        &receipts,
        "receipts",
    );

    let (_, dossier) = s.get(&format!("/v1/dossiers/{d}"), Some(&s.analyst));
    conforms(&doc, named("DossierView"), &dossier, "a dossier's state");
    let (_, trail) = s.get(&format!("/v1/dossiers/{d}/events"), Some(&s.auditor));
    conforms(&doc, named("Trail"), &trail, "a trail");
    let (_, page) = s.get("/v1/events?limit=50", Some(&s.analyst));
    conforms(&doc, named("EventsPage"), &page, "a page of the log");

    assert_eq!(s.put("/v1/agencies/000.00.12.H27/procedures/1.001234", Some(&s.admin), &json!({ "name": "Chứng thực", "online_level": "level4", "postal_receive": true, "postal_return": false, "effective_from": "2019-01-01" })).0, 201);
    assert_eq!(
        s.put(
            "/v1/targets",
            Some(&s.admin),
            &json!({ "agency": DEPT, "from_period": "2019-Q2", "online_rate_min": 0.3 })
        )
        .0,
        201
    );
    let (_, catalogue) = s.get("/v1/catalogue", None);
    conforms(&doc, named("CatalogueView"), &catalogue, "the catalogue");
    let (_, page) = s.get("/v1/events?type=target.set", Some(&s.analyst));
    conforms(
        &doc,
        named("EventsPage"),
        &page,
        "reference events in the log",
    );
    let (_, tokens) = s.get("/v1/tokens", Some(&s.admin));
    conforms(&doc, named("TokenList"), &tokens, "the token list");

    // Audit answers.
    for (path, schema) in [
        ("/v1/audit/key", "AuditKey"),
        (&format!("/v1/dossiers/{d}/bundle") as &str, "Bundle"),
        ("/v1/audit/head", "AuditHead"),
        ("/v1/audit/checkpoints", "CheckpointList"),
        ("/v1/audit/proof?position=2", "InclusionAnswer"),
        ("/v1/audit/consistency?from=1", "ConsistencyAnswer"),
    ] {
        let (status, answer) = s.get(path, Some(&s.auditor));
        assert_eq!(status, 200, "{path}: {answer}");
        conforms(&doc, named(schema), &answer, path);
    }
    let (status, signed) = s.post("/v1/audit/checkpoints", Some(&s.admin), &json!({}));
    assert!(status == 200 || status == 201, "{signed}");
    conforms(&doc, named("CheckpointView"), &signed, "a checkpoint");

    // Indicator answers, a table and a series, against the schema made from the columns that render them.
    let (status, table) = s.get("/v1/indicators?period=2019-Q1&group=subtree", None);
    assert_eq!(status, 200, "{table}");
    assert!(!table["rows"].as_array().unwrap().is_empty());
    conforms(&doc, named("IndicatorAnswer"), &table, "an indicator table");
    let (_, series) = s.get(
        "/v1/indicators/series?from=2019-01&to=2019-03&group=level",
        None,
    );
    conforms(
        &doc,
        named("IndicatorAnswer"),
        &series,
        "an indicator series",
    );
    let mut broken = table.clone();
    broken["rows"][0]["received_online_by_level"]
        .as_object_mut()
        .unwrap()
        .remove("level4");
    let caught = std::panic::catch_unwind(|| {
        conforms(
            &doc,
            named("IndicatorAnswer"),
            &broken,
            "a row without level4",
        )
    });
    assert!(caught.is_err(), "a row missing a column passed the schema");

    for (body, what) in [
        ("{", "malformed_json"),
        (r#"{"id":"x"}"#, "validation_failed"),
    ] {
        let (_, problem) = s.post_raw("/v1/events", Some(&s.ingest), body.into());
        conforms(&doc, named("Problem"), &problem, what);
    }
    // And a schema that is wrong is caught: the check itself can fail.
    let mut wrong = receipts.clone();
    wrong[0]["position"] = json!("one");
    let caught = std::panic::catch_unwind(|| {
        conforms(
            &doc,
            json!({ "type": "array", "items": named("Receipt") }),
            &wrong,
            "a bad receipt",
        )
    });
    assert!(
        caught.is_err(),
        "a receipt with a string position passed the schema"
    );
}

/// A valid value for a parameter, so that a request fails only on the one parameter made malformed.
fn valid_value(path: &str, name: &str, schema: &Value) -> String {
    let integer = schema["type"] == "integer"
        || schema["type"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("integer")));
    match name {
        _ if integer => "1".into(),
        "period" | "from" => "2019-Q1".into(),
        "to" => "2019-Q2".into(),
        "group" => "agency".into(),
        "agency" | "code" => DEPT.into(),
        "known_at" => "2019-04-05".into(),
        "format" => "json".into(),
        "lang" => "vi".into(),
        "profile" => "national".into(),
        "by" => "agency".into(),
        "type" => "dossier.received".into(),
        "dossier" => "D-SWEEP".into(),
        "procedure" => "1.001234".into(),
        "name" => "nobody".into(),
        "service" => "DongBoHoSoMC".into(),
        "madonvi" => DEPT.into(),
        "isUpdating" => "False".into(),
        other => panic!("no valid value known for {other} of {path}"),
    }
}

fn is_problem(resp: &reqwest::blocking::Response) -> bool {
    resp.headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("application/problem+json"))
}

/// Every parameter of every operation in `/openapi.json`, given a malformed value (and every body given bytes that
/// are not JSON), is answered 400 problem+json naming the parameter: never actix's plain-text "Query deserialize
/// error". Unknown routes and methods a path does not have are problems too (404, 405 with `Allow`).
#[test]
fn malformed_parameters_and_bodies_are_problems_everywhere() {
    let s = Server::start(&[]);
    s.receive("D-SWEEP", DEPT);
    let (_, doc) = s.get("/openapi.json", None);
    let client = reqwest::blocking::Client::new();
    let malformed_integers = [
        "abc",
        "-1",
        "18446744073709551616",
        "1.5",
        "",
        "9223372036854775808",
    ];
    let malformed_strings = ["\u{1}not valid", ""];
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let methods: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let params: Vec<Value> = op["parameters"].as_array().cloned().unwrap_or_default();
            let send = |bad: Option<(&str, &str)>, body: Option<&str>| {
                let mut concrete = path.clone();
                let mut query = Vec::new();
                let mut headers = Vec::new();
                for p in &params {
                    let name = p["name"].as_str().unwrap();
                    let value = match bad {
                        Some((n, v)) if n == name => v.to_owned(),
                        // Optional parameters other than the malformed one are left out.
                        _ if p["required"] != true && p["in"] != "path" => continue,
                        _ => valid_value(path, name, &p["schema"]),
                    };
                    match p["in"].as_str().unwrap() {
                        "path" => {
                            // `%FF` goes as it is: a segment that is not UTF-8 once decoded.
                            let encoded: String = if value == "%FF" {
                                value.clone()
                            } else {
                                form_urlencoded_component(&value)
                            };
                            concrete = concrete.replace(&format!("{{{name}}}"), &encoded);
                        }
                        "query" => query.push((name.to_owned(), value)),
                        "header" => headers.push((name.to_owned(), value)),
                        other => panic!("parameter in {other}"),
                    }
                }
                let mut req = client
                    .request(
                        method.to_uppercase().parse().unwrap(),
                        format!("{}{}", s.base, concrete),
                    )
                    .query(&query)
                    .bearer_auth(&s.admin);
                for (n, v) in headers {
                    req = req.header(n, v);
                }
                if let Some(b) = body {
                    req = req
                        .header("content-type", "application/json")
                        .body(b.to_owned());
                }
                req.send().unwrap()
            };
            for p in &params {
                let name = p["name"].as_str().unwrap();
                let integer = valid_value(path, name, &p["schema"]) == "1";
                let values: Vec<&str> = if integer {
                    malformed_integers.to_vec()
                } else {
                    malformed_strings.to_vec()
                };
                if p["in"] == "path" {
                    // Not UTF-8 once decoded: the HTTP layer keeps it as it is, and the parameter's own rule
                    // decides (an opaque procedure code may hold `%`); whatever the answer, an error is a problem.
                    let resp = send(Some((name, "%FF")), None);
                    let status = resp.status().as_u16();
                    assert!(
                        status < 400 || is_problem(&resp),
                        "{method} {path} with {name}=%FF: {status}"
                    );
                    checked += 1;
                }
                for value in values {
                    if p["in"] == "path" && value.is_empty() {
                        continue; // an empty segment is another route
                    }
                    let resp = send(Some((name, value)), None);
                    let status = resp.status().as_u16();
                    let problem = is_problem(&resp);
                    let body: Value = resp.json().unwrap_or(Value::Null);
                    assert!(
                        status == 400
                            && problem
                            && body["code"] == "bad_parameter"
                            && body["parameter"] == name,
                        "{method} {path} with {name}={value:?}: {status} {body}"
                    );
                    checked += 1;
                }
            }
            // A CSV body (a published table to check) that is no table of counts: a 400 problem naming it.
            if op["requestBody"]["content"].get("text/csv").is_some() {
                let resp = client
                    .request(
                        method.to_uppercase().parse().unwrap(),
                        format!("{}{}", s.base, path),
                    )
                    .bearer_auth(&s.admin)
                    .header("content-type", "text/csv")
                    .body("{not a table\n\u{0}")
                    .send()
                    .unwrap();
                assert!(
                    is_problem(&resp),
                    "{method} {path} with a body that is no table"
                );
                let answer: Value = resp.json().unwrap();
                assert_eq!(
                    (answer["status"].as_u64(), answer["parameter"].as_str()),
                    (Some(400), Some("table")),
                    "{method} {path}"
                );
                checked += 1;
            }
            if op["requestBody"]["content"]
                .get("application/json")
                .is_some()
            {
                for body in ["{not json", "[", "\u{0}"] {
                    let resp = send(None, Some(body));
                    let status = resp.status().as_u16();
                    assert!(
                        is_problem(&resp),
                        "{method} {path} with body {body:?}: {status} is not problem+json"
                    );
                    let answer: Value = resp.json().unwrap();
                    assert_eq!(
                        (status, answer["code"].as_str()),
                        (400, Some("malformed_json")),
                        "{method} {path}"
                    );
                    checked += 1;
                }
            }
        }
        // A method the path does not have: 405 problem+json, `Allow` listing exactly the documented ones.
        let concrete = path
            .replace("{dossier}", "D-SWEEP")
            .replace("{code}", DEPT)
            .replace("{procedure}", "1.001234")
            .replace("{name}", "nobody");
        for other in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if methods.iter().any(|m| m == other) {
                continue;
            }
            let resp = client
                .request(other.parse().unwrap(), format!("{}{}", s.base, concrete))
                .bearer_auth(&s.admin)
                .send()
                .unwrap();
            assert_eq!(resp.status().as_u16(), 405, "{other} {path}");
            assert!(is_problem(&resp), "{other} {path}");
            let mut allowed: Vec<String> = resp.headers()["allow"]
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            allowed.sort();
            let mut documented = methods.clone();
            documented.sort();
            assert_eq!(allowed, documented, "Allow of {path}");
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} requests checked");
    for unknown in [
        "/nowhere",
        "/v1/eventz",
        "/v1/dossiers",
        "/v1/dossiers/D-SWEEP/nothing",
    ] {
        let resp = client.get(format!("{}{unknown}", s.base)).send().unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{unknown}");
        assert!(is_problem(&resp), "{unknown}");
        assert_eq!(resp.json::<Value>().unwrap()["code"], "route_not_found");
    }
}

/// Percent-encodes one path segment.
fn form_urlencoded_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Schemathesis against the real binary, from the project's own script: every check, with each role's token and
/// with none, at a fixed seed (about 10,000 generated cases in all); then `verify` on whatever it wrote. A failed
/// check prints Schemathesis's report, with a curl command that reproduces it.
#[test]
fn schemathesis_finds_nothing_with_any_role() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/fuzz-contract");
    let out = Command::new("bash")
        .arg(script)
        .args(["--bin", BIN, "--examples", "5", "--seed", "20261130"])
        .output()
        .expect("bash runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("every check passed") && stdout.matches(" passed").count() >= 5,
        "{stdout}"
    );
}
