//! An idle server sleeps: every background task (the periodic signer, the follower, snapshots, live streams'
//! keep-alives) waits on something that is not ready, or on a deadline in the future, never on one in the past.

use super::*;
use std::io::Read;
use std::time::{Duration, Instant};

/// CPU seconds (user + system) the process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of the whole line (utime, stime) are the 12th and 13th after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The share of one core the process uses over `window` while nobody sends it anything.
fn idle_share(pid: u32, window: Duration) -> f64 {
    let (cpu, started) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(window);
    (cpu_seconds(pid) - cpu) / started.elapsed().as_secs_f64()
}

/// A live subscriber: connects, then reads in the background until the server goes away.
fn subscribe(s: &Server) -> std::thread::JoinHandle<()> {
    let mut resp = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(format!("{}/v1/events/live", s.base))
        .bearer_auth(&s.analyst)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(resp.read(&mut buf), Ok(n) if n > 0) {}
    })
}

#[test]
fn an_idle_server_uses_almost_no_cpu_with_every_periodic_feature_on() {
    // Checkpoints by time (every second) and by count, snapshots every few events, a live subscriber: every
    // periodic feature is due again and again, and each must sleep while there is nothing to do.
    let every = [
        "--checkpoint-every-secs",
        "1",
        "--checkpoint-every-events",
        "3",
        "--snapshot-every",
        "5",
    ];
    let s = Server::start(&every);
    let pid = s.child.id();
    let _live = subscribe(&s);
    // Let the start, the agencies' checkpoint and the first time period pass: the spin began once a period had
    // elapsed with nothing new to sign.
    std::thread::sleep(Duration::from_secs(3));
    let share = idle_share(pid, Duration::from_secs(10));
    assert!(
        share < 0.02,
        "idle after start: {:.1} % of a core",
        share * 100.0
    );
    // After traffic: dossiers (past the snapshot and count thresholds), then nothing.
    for i in 0..12 {
        s.receive(&format!("D-IDLE-{i}"), DEPT);
    }
    let (_, checkpoints) = s.get("/v1/audit/checkpoints", Some(&s.auditor));
    std::thread::sleep(Duration::from_secs(3));
    let share = idle_share(pid, Duration::from_secs(10));
    assert!(
        share < 0.02,
        "idle after traffic: {:.1} % of a core",
        share * 100.0
    );
    // The periodic features did run: signed checkpoints exist.
    assert!(
        !checkpoints["checkpoints"].as_array().unwrap().is_empty(),
        "{checkpoints}"
    );
}
