//! Stopping the server under load: SIGTERM loses nothing acknowledged and exits 0; SIGKILL (10 rounds, each
//! restarting on the same directory) loses nothing acknowledged either.

use super::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Clients posting single events (new dossiers) as fast as answers come, recording each acknowledged id and
/// position, until told to stop or the server goes away.
fn load(
    base: &str,
    token: &str,
    round: usize,
    clients: usize,
) -> (
    Arc<AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
    Arc<Mutex<HashMap<String, u64>>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let threads = (0..clients)
        .map(|c| {
            let (base, token, stop, acked) = (
                base.to_owned(),
                token.to_owned(),
                stop.clone(),
                acked.clone(),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let event = received(&format!("R{round}-C{c}-{i}"), DEPT);
                    let Ok(resp) = client
                        .post(format!("{base}/v1/events"))
                        .bearer_auth(&token)
                        .json(&event)
                        .send()
                    else {
                        break;
                    };
                    if resp.status().as_u16() != 201 {
                        break;
                    }
                    let Ok(receipts) = resp.json::<Value>() else {
                        break;
                    };
                    let position = receipts[0]["position"].as_u64().unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .insert(event["id"].as_str().unwrap().to_owned(), position);
                }
            })
        })
        .collect();
    (stop, threads, acked)
}

/// The whole log through the API: id → position, with positions checked gapless.
fn stored(base: &str, token: &str) -> HashMap<String, u64> {
    let text = reqwest::blocking::Client::new()
        .get(format!("{base}/v1/events"))
        .bearer_auth(token)
        .header("accept", "application/x-ndjson")
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            e["position"].as_u64(),
            Some(i as u64 + 1),
            "positions are gapless"
        );
        assert!(
            out.insert(e["id"].as_str().unwrap().to_owned(), i as u64 + 1)
                .is_none(),
            "an id stored twice"
        );
    }
    out
}

#[test]
fn sigterm_under_load_stops_cleanly_and_keeps_every_acknowledged_event() {
    let mut s = Server::start(&[]);
    let (stop, threads, acked) = load(&s.base, &s.ingest, 0, 8);
    std::thread::sleep(std::time::Duration::from_millis(800));
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let status = s.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(status.success(), "a graceful stop exits 0, got {status:?}");
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "only {} acknowledged: the load did not run",
        acked.len()
    );
    let (child, base) = spawn(&s.data(), &[]);
    s.child = child;
    let log = stored(&base, &s.admin);
    for (id, position) in &acked {
        assert_eq!(
            log.get(id),
            Some(position),
            "acknowledged event {id} lost or moved"
        );
    }
}

#[test]
fn sigkill_under_load_ten_times_loses_nothing_acknowledged() {
    let mut s = Server::start(&[]);
    let mut all: HashMap<String, u64> = HashMap::new();
    let mut base = s.base.clone();
    for round in 0..10 {
        let (stop, threads, acked) = load(&base, &s.ingest, round, 8);
        std::thread::sleep(std::time::Duration::from_millis(200 + 97 * round as u64));
        s.child.kill().unwrap(); // SIGKILL
        s.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let this_round = acked.lock().unwrap().clone();
        assert!(
            !this_round.is_empty(),
            "round {round}: nothing was acknowledged before the kill"
        );
        all.extend(this_round);
        let (child, new_base) = spawn(&s.data(), &[]);
        s.child = child;
        base = new_base;
        let log = stored(&base, &s.admin);
        for (id, position) in &all {
            assert_eq!(
                log.get(id),
                Some(position),
                "round {round}: acknowledged event {id} lost or moved"
            );
        }
    }
}

#[test]
fn sigterm_ends_live_streams_and_stops_promptly() {
    let mut s = Server::start(&[]);
    let resp = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
        .get(format!("{}/v1/events/live?after=0", s.base))
        .bearer_auth(&s.analyst)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let reader = std::thread::spawn(move || {
        // Reads until the server ends the stream.
        let mut lines = 0;
        for _ in std::io::BufRead::lines(std::io::BufReader::new(resp)) {
            lines += 1;
        }
        lines
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let status = s.child.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "a follower held the stop for {took:?}"
    );
    assert!(
        reader.join().unwrap() > 0,
        "the follower got the catch-up before the stream ended"
    );
}
