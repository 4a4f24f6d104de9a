//! Reading the log: pages with a cursor, NDJSON streaming, and Server-Sent Events that follow commits.

use super::*;
use serde_json::json;
use std::io::BufRead;

#[test]
fn the_global_log_pages_with_a_cursor_and_streams_as_ndjson() {
    let s = Server::start(&[]);
    for i in 0..30 {
        s.receive(&format!("D-P{i:02}"), DEPT);
    }
    let size = s.log_size(); // 4 agencies + 30 receipts
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = s.get(
            &format!("/v1/events?after={after}&limit=7"),
            Some(&s.analyst),
        );
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["position"].as_u64().unwrap()),
        );
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, (1..=size).collect::<Vec<_>>());
    // A filter still walks the whole log with the cursor.
    let (_, agencies) = s.get(
        "/v1/events?type=agency.registered&limit=10",
        Some(&s.analyst),
    );
    assert_eq!(agencies["events"].as_array().unwrap().len(), 4);
    assert_eq!(s.get("/v1/events?limit=5000", Some(&s.analyst)).0, 400);
    assert_eq!(s.get("/v1/events?type=nonsense", Some(&s.analyst)).0, 400);

    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/v1/events?after=10", s.base))
        .bearer_auth(&s.analyst)
        .header("accept", "application/x-ndjson")
        .send()
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = resp
        .text()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (11..=size).collect::<Vec<_>>()
    );
}

#[test]
fn live_events_catch_up_then_follow_commits() {
    let s = Server::start(&[]);
    let resp = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!("{}/v1/events/live?after=2", s.base))
        .bearer_auth(&s.auditor)
        .send()
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut lines = std::io::BufReader::new(resp).lines();
    // Write more while the follower listens.
    let writer = {
        let (base, token) = (s.base.clone(), s.ingest.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            for i in 0..5 {
                let r = client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&token)
                    .json(&received(&format!("D-L{i}"), DEPT))
                    .send()
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let mut ids = Vec::new();
    while ids.len() < 7 {
        let line = lines.next().expect("the stream stays open").unwrap();
        if let Some(id) = line.strip_prefix("id: ") {
            ids.push(id.parse::<u64>().unwrap());
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let e: Value = serde_json::from_str(data).unwrap();
            assert_eq!(e["position"].as_u64(), ids.last().copied());
        }
    }
    writer.join().unwrap();
    assert_eq!(
        ids,
        (3..=9).collect::<Vec<u64>>(),
        "agencies 3 and 4, then the five new events, in order"
    );
    let _ = json!({});
}

/// A follower that never reads: its socket buffers fill, and the writer must not notice.
#[test]
fn a_follower_that_does_not_read_never_slows_the_writer() {
    let s = Server::start(&[]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        format!("GET /v1/events/live?after=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n", s.analyst).as_bytes(),
    )
    .unwrap();
    // Write far more than socket buffers hold (about 6 MB of events) while the follower reads nothing.
    let started = std::time::Instant::now();
    for b in 0..20 {
        let batch: Vec<Value> = (0..1000)
            .map(|i| received(&format!("D-S{b}-{i}"), DEPT))
            .collect();
        let (status, _) = s.post("/v1/events", Some(&s.ingest), &Value::Array(batch));
        assert_eq!(status, 201);
    }
    assert_eq!(s.log_size(), 20_004);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "writes stalled behind a follower: {:?}",
        started.elapsed()
    );
    drop(stalled);
}
