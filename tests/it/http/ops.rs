//! Operations endpoints: health, readiness, metrics that reflect what happened.

use super::*;

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric line starting {line_start:?} in\n{text}"))
}

#[test]
fn metrics_count_requests_appends_groups_and_the_log() {
    let s = Server::start(&[]);
    for i in 0..5 {
        s.receive(&format!("D-M{i}"), DEPT);
    }
    assert_eq!(s.post_raw("/v1/events", Some(&s.ingest), "{".into()).0, 400);
    let (status, text) = s.get("/metrics", None);
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_owned();
    let size = s.log_size() as f64;
    assert_eq!(
        metric(
            &text,
            r#"casetrail_http_requests_total{method="POST",route="/v1/events",status="201"}"#
        ),
        5.0
    );
    assert_eq!(
        metric(
            &text,
            r#"casetrail_http_requests_total{method="POST",route="/v1/events",status="400"}"#
        ),
        1.0
    );
    assert_eq!(metric(&text, "casetrail_log_events "), size);
    assert_eq!(
        metric(&text, "casetrail_appended_events_total "),
        size,
        "4 agencies and 5 dossiers since start"
    );
    let groups = metric(&text, "casetrail_commit_groups_total ");
    assert!(groups >= 1.0 && groups <= size);
    assert_eq!(
        metric(&text, "casetrail_commit_group_events_count "),
        groups
    );
    assert_eq!(
        metric(&text, r#"casetrail_commit_group_events_bucket{le="+Inf"}"#),
        groups
    );
    assert_eq!(metric(&text, "casetrail_commit_group_events_sum "), size);
    assert!(
        metric(
            &text,
            r#"casetrail_http_request_duration_seconds_count{method="POST",route="/v1/events"}"#
        ) >= 6.0
    );
}

#[test]
fn health_and_readiness_answer_without_a_token() {
    let s = Server::start(&[]);
    let (status, body) = s.get("/healthz", None);
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = s.get("/readyz", None);
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    assert_eq!(body["log_size"].as_u64(), Some(4));
}

#[test]
fn a_config_file_sets_what_flags_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("casetrail.toml");
    std::fs::write(&config, "body_limit_bytes = 600\nworkers = 1\n").unwrap();
    let config = config.to_str().unwrap();
    let big = serde_json::json!([
        received("D-CFG-1", DEPT),
        received("D-CFG-2", DEPT),
        received("D-CFG-3", DEPT)
    ]);
    assert!(big.to_string().len() > 600);
    // From the file: a 600-byte limit.
    let s = Server::start(&["--config", config]);
    assert_eq!(s.post("/v1/events", Some(&s.ingest), &big).0, 413);
    drop(s);
    // A flag overrides the file.
    let s = Server::start(&["--config", config, "--body-limit-bytes", "100000"]);
    assert_eq!(s.post("/v1/events", Some(&s.ingest), &big).0, 201);
}
