//! Load that must not starve the server, in a test binary of its own: cargo runs test binaries one after another,
//! so nothing else of the suite competes for these two cores while latencies are timed.

use serde_json::{json, Value};

#[path = "common.rs"]
mod common;

use common::{casetrail, spawn, token, BIN};

fn received(dossier: &str, agency: &str) -> Value {
    json!({ "id": uuid::Uuid::new_v4(), "type": "dossier.received", "dossier": dossier, "agency": agency,
            "occurred_at": "2019-03-12T08:30:00+07:00",
            "data": { "procedure": "1.001234", "channel": "postal", "result_by_post": true } })
}

/// A thousand subscribers catching up from position 0 on a log of about 100,000 events leave everyone else
/// answered: `/healthz` and a write, timed all along, both under 100 ms at the 99th percentile. Store reads run
/// off the async workers and catch-up is paced; one subscriber more than `max_subscribers` is refused (503).
#[test]
fn a_thousand_subscribers_catching_up_leave_everyone_else_answered() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    common::raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("province.ndjson");
    let generated = std::process::Command::new(BIN)
        .args(["generate", "--seed", "5", "--dossiers", "30000"])
        .output()
        .unwrap();
    std::fs::write(&file, generated.stdout).unwrap();
    assert!(casetrail(&data, &["import", file.to_str().unwrap()])
        .status
        .success());
    let analyst = token(&data, "analyst", "analyst", None);
    let admin = token(&data, "admin", "admin", None);
    let (_child, base) = spawn(
        &data,
        &["--max-connections", "1100", "--max-subscribers", "1000"],
    );
    let addr = base.trim_start_matches("http://").to_owned();
    let size = reqwest::blocking::Client::new()
        .get(format!("{base}/v1/events?limit=1"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["log_size"]
        .as_u64()
        .unwrap();
    assert!(size >= 95_000, "a log of about 100,000 events, not {size}");

    let open = |addr: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(format!("GET /v1/events/live?after=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {analyst}\r\n\r\n").as_bytes()).unwrap();
        s
    };
    let subscribers: Vec<std::net::TcpStream> = (0..1000).map(|_| open(&addr)).collect();
    // Four threads read every subscriber as fast as the server sends.
    let (stop, bytes) = (
        std::sync::Arc::new(AtomicBool::new(false)),
        std::sync::Arc::new(AtomicU64::new(0)),
    );
    let mut groups: Vec<Vec<std::net::TcpStream>> = (0..4).map(|_| Vec::new()).collect();
    for (i, s) in subscribers.into_iter().enumerate() {
        s.set_nonblocking(true).unwrap();
        groups[i % 4].push(s);
    }
    let readers: Vec<_> = groups
        .into_iter()
        .map(|mut group| {
            let (stop, bytes) = (stop.clone(), bytes.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let mut any = false;
                    for s in group.iter_mut() {
                        if let Ok(n) = s.read(&mut buf) {
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                            any |= n > 0;
                        }
                    }
                    if !any {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    // One more is refused, politely.
    std::thread::sleep(Duration::from_millis(500));
    let extra = reqwest::blocking::Client::new()
        .get(format!("{base}/v1/events/live?after=0"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(extra.status().as_u16(), 503);
    assert!(extra.headers().contains_key("retry-after"));
    assert_eq!(
        extra.json::<Value>().unwrap()["code"],
        "too_many_subscribers"
    );

    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (mut health, mut writes) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let t = Instant::now();
        assert_eq!(
            client
                .get(format!("{base}/healthz"))
                .send()
                .unwrap()
                .status()
                .as_u16(),
            200
        );
        health.push(t.elapsed());
        if n % 5 == 0 {
            let t = Instant::now();
            let r = client
                .post(format!("{base}/v1/events"))
                .bearer_auth(&admin)
                .json(&received(&format!("D-BUSY-{n}"), "000.00.12.H27"))
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            writes.push(t.elapsed());
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(40));
    }
    let sent = bytes.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let p99 = |mut v: Vec<Duration>| {
        v.sort();
        v[(v.len() * 99 / 100).min(v.len() - 1)]
    };
    let (h, w) = (p99(health.clone()), p99(writes.clone()));
    eprintln!(
        "healthz p99 {h:?} over {} requests, write p99 {w:?} over {}, {sent} bytes to subscribers",
        health.len(),
        writes.len()
    );
    // The subscribers were really catching up all along (about 300 bytes an event).
    assert!(
        sent > 20_000_000,
        "only {sent} bytes reached the subscribers"
    );
    assert!(h < Duration::from_millis(100), "healthz p99 {h:?}");
    assert!(w < Duration::from_millis(100), "write p99 {w:?}");
}
