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
            let routed = !(resp.status().as_u16() == 405
                || (resp.status().as_u16() == 404
                    && !resp.headers()["content-type"]
                        .to_str()
                        .unwrap()
                        .contains("problem")));
            assert!(
                routed,
                "{method} {path} is documented but not routed ({})",
                resp.status()
            );
        }
    }
    assert_eq!(operations, 25, "operations documented");
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
