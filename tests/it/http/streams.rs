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

/// Right after a 201, every question bounded by the acknowledged log is answered for exactly that bound: `as_of`
/// the last receipt (never "beyond the log"), `known_at` an instant after the 201 (never short), the live table the
/// dashboard asks for (its stamp at or past the receipt), the dossier, and the live stream. Ten rounds, each asked
/// at once, while the indicator engine follows the log asynchronously.
#[test]
fn right_after_a_201_every_view_answers_for_the_acknowledged_log() {
    let s = Server::start(&[]);
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let province_received = |answer: &Value| answer["rows"][0]["received"].as_i64().unwrap();
    // Others write all along (dossiers of the second quarter), so that the engine has a backlog to follow.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let others: Vec<_> = (0..2)
        .map(|w| {
            let (base, token, stop) = (s.base.clone(), s.admin.clone(), stop.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut b = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch: Vec<Value> = (0..1000)
                        .map(|i| {
                            let mut e = received(&format!("D-Q2-{w}-{b}-{i}"), OTHER);
                            e["occurred_at"] = json!("2019-05-02T08:00:00+07:00");
                            e
                        })
                        .collect();
                    let r = client
                        .post(format!("{base}/v1/events"))
                        .bearer_auth(&token)
                        .json(&batch)
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                    b += 1;
                }
            })
        })
        .collect();
    for round in 1..=10i64 {
        let batch: Vec<Value> = (0..1000)
            .map(|i| received(&format!("D-ACK{round}-{i}"), DEPT))
            .collect();
        let (status, receipts) = s.post("/v1/events", Some(&s.admin), &Value::Array(batch));
        assert_eq!(status, 201, "{receipts}");
        let acknowledged = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let last = receipts.as_array().unwrap().last().unwrap()["position"]
            .as_u64()
            .unwrap();
        let expected = 1000 * round;

        let (status, as_of) = s.get(
            &format!("/v1/indicators?period=2019-Q1&group=province&as_of={last}"),
            None,
        );
        assert_eq!(status, 200, "round {round}, as_of {last}: {as_of}");
        assert_eq!(
            province_received(&as_of),
            expected,
            "round {round}, as_of {last}"
        );
        assert_eq!(as_of["stamp"]["position"], last);

        let known = format!(
            "/v1/indicators?period=2019-Q1&group=province&known_at={}",
            acknowledged.replace('+', "%2B")
        );
        let (status, known) = s.get(&known, None);
        assert_eq!(status, 200, "{known}");
        assert_eq!(
            province_received(&known),
            expected,
            "round {round}, known at {acknowledged}"
        );
        assert!(known["stamp"]["position"].as_u64().unwrap() >= last);

        // What the dashboard's overview asks: the live table, which says the position it reflects.
        let (status, live) = s.get("/v1/indicators?period=2019-Q1&group=agency", None);
        assert_eq!(status, 200);
        assert!(
            live["stamp"]["position"].as_u64().unwrap() >= last,
            "round {round}: {}",
            live["stamp"]
        );
        let total: i64 = live["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["received"].as_i64().unwrap())
            .sum();
        assert_eq!(total, expected, "round {round}: the live table");

        let (status, dossier) = s.get(&format!("/v1/dossiers/D-ACK{round}-999"), Some(&s.analyst));
        assert_eq!(status, 200, "{dossier}");

        // The live stream from before the batch delivers all of it at once.
        let resp = client
            .get(format!("{}/v1/events/live?after={}", s.base, last - 1000))
            .bearer_auth(&s.analyst)
            .send()
            .unwrap();
        let mut seen = 0;
        for line in std::io::BufReader::new(resp).lines() {
            if line.unwrap().starts_with("id: ") {
                seen += 1;
                if seen == 1000 {
                    break;
                }
            }
        }
        assert_eq!(seen, 1000);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in others {
        w.join().unwrap();
    }
}

/// Issue 25, point 3: a revocation reaches what its token already has open. A live stream waiting for commits and
/// an NDJSON export in the middle of its body both end the moment the token is revoked, as a cut (no closing
/// chunk, so no client takes it for the whole answer), and nothing written after the revocation reaches them.
#[test]
fn a_revoked_token_loses_its_open_streams_at_once() {
    use std::io::{Read, Write};
    let s = Server::start(&[]);
    // Enough events that the export cannot sit whole in the sockets' buffers while the client reads nothing.
    for b in 0..20 {
        let batch: Vec<Value> = (0..1000)
            .map(|i| received(&format!("D-R{b}-{i}"), DEPT))
            .collect();
        assert_eq!(
            s.post("/v1/events", Some(&s.ingest), &Value::Array(batch))
                .0,
            201
        );
    }
    let size = s.log_size();
    let mut tokens = Vec::new();
    for name in ["reader-live", "reader-export"] {
        let (status, created) = s.post(
            "/v1/tokens",
            Some(&s.admin),
            &json!({ "name": name, "role": "analyst" }),
        );
        assert_eq!(status, 201, "{created}");
        tokens.push(created["token"].as_str().unwrap().to_owned());
    }
    let addr = s.base.trim_start_matches("http://").to_owned();
    let open = |path: &str, token: &str, accept: &str| {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: {accept}\r\n\r\n").unwrap();
        c
    };
    // Reads what has arrived until `until` is in it (or the stream ends).
    let read_until = |c: &mut std::net::TcpStream, got: &mut Vec<u8>, until: &[u8]| {
        let mut buf = [0u8; 65536];
        while !got.windows(until.len()).any(|w| w == until) {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    let mut live = open(
        &format!("/v1/events/live?after={}", size - 1),
        &tokens[0],
        "text/event-stream",
    );
    let mut live_got = Vec::new();
    assert!(
        read_until(&mut live, &mut live_got, format!("id: {size}\n").as_bytes()),
        "{}",
        String::from_utf8_lossy(&live_got)
    );
    let mut export = open("/v1/events", &tokens[1], "application/x-ndjson");
    let mut export_got = vec![0u8; 4096];
    export.read_exact(&mut export_got).unwrap();
    assert!(
        export_got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&export_got)
    );

    for name in ["reader-live", "reader-export"] {
        assert_eq!(
            s.delete(&format!("/v1/tokens/{name}"), Some(&s.admin)).0,
            204
        );
    }
    // Written after the revocation: neither stream may carry it.
    s.receive("D-AFTER-REVOCATION", DEPT);
    for (c, got) in [(&mut live, &mut live_got), (&mut export, &mut export_got)] {
        let started = std::time::Instant::now();
        let mut buf = [0u8; 65536];
        c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("the stream stayed open after its token was revoked: {e}"),
            }
            // A keep-alive comment every 15 s would otherwise keep a stream that never ends reading for ever.
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "the stream stayed open after its token was revoked"
            );
        }
        let text = String::from_utf8_lossy(got);
        assert!(
            !text.contains("D-AFTER-REVOCATION"),
            "an event written after the revocation was sent"
        );
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "the body ended cleanly, as if whole"
        );
    }
    let export_lines = String::from_utf8_lossy(&export_got)
        .matches("\"type\":\"dossier.received\"")
        .count() as u64;
    assert!(
        export_lines < size - 4,
        "the export was sent whole ({export_lines} of {size}) before the cut"
    );
    // And a new request with either token is refused.
    for t in &tokens {
        assert_eq!(s.get("/v1/events?limit=1", Some(t)).0, 401);
    }
}
