//! Crash test: a child process appends from several threads and prints each acknowledgement; the test kills it
//! with SIGKILL at a random moment, reopens the same directory, and checks that every acknowledged event is
//! there exactly once, at its acknowledged position, with no gaps, and that `verify` passes. Repeated over
//! rounds (`CASETRAIL_CRASH_ROUNDS`, default 20) on one directory. In odd rounds the child's indexer holds its
//! entries for a minute, so the kill always finds the indexes on disk behind the log: `verify` (which indexes the
//! rest in memory) must say so and pass, and the next open must catch them up.

use super::{casetrail, export, stderr, stdout, Proc, BIN};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn acknowledged_events_survive_sigkill() {
    let rounds: u64 = std::env::var("CASETRAIL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashMap<String, u64> = HashMap::new();
    for round in 0..rounds {
        let lagging = round % 2 == 1;
        let mut child = Proc::spawn(
            Command::new(BIN)
                .arg("--data")
                .arg(dir.path())
                .args([
                    "append-loop",
                    "--seed",
                    &round.to_string(),
                    "--prefix",
                    &format!("R{round}x"),
                    "--events",
                    "10000000",
                    "--threads",
                    "4",
                ])
                .args(if lagging {
                    &["--index-flush-ms", "60000"][..]
                } else {
                    &[][..]
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            // Only whole lines count: a line cut by the kill was never fully printed.
            let mut lines = Vec::new();
            let mut r = std::io::BufReader::new(out);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                if buf.ends_with(b"\n") {
                    lines.push(String::from_utf8_lossy(&buf).trim_end().to_owned());
                }
                buf.clear();
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..900)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child finished before it was killed"
        );
        let lines = reader.join().unwrap();
        let mut this_round = 0;
        for line in lines {
            let mut parts = line.split(' ');
            assert_eq!(
                parts.next(),
                Some("ack"),
                "round {round}: unexpected output {line:?}"
            );
            let id = parts.next().unwrap().to_owned();
            let position: u64 = parts.next().unwrap().parse().unwrap();
            assert!(
                acked.insert(id, position).is_none(),
                "round {round}: an id acknowledged twice"
            );
            this_round += 1;
        }
        // Reopen: verify, then compare the log with every acknowledgement so far.
        let verify = casetrail(dir.path(), &["verify"]);
        assert!(
            verify.status.success(),
            "round {round}: verify failed: {}{}",
            stdout(&verify),
            stderr(&verify)
        );
        if lagging && this_round > 0 {
            assert!(
                stdout(&verify).contains("the indexes on disk lag"),
                "round {round}: the kill did not find the indexes behind: {}",
                stdout(&verify)
            );
        }
        let log = export(dir.path());
        for (i, (position, _, _)) in log.iter().enumerate() {
            assert_eq!(
                *position,
                i as u64 + 1,
                "round {round}: positions have a gap"
            );
        }
        let mut seen: HashMap<&str, u64> = HashMap::new();
        for (position, id, _) in &log {
            assert!(
                seen.insert(id, *position).is_none(),
                "round {round}: id {id} stored twice"
            );
        }
        for (id, position) in &acked {
            assert_eq!(
                seen.get(id.as_str()),
                Some(position),
                "round {round}: acknowledged event {id} lost or moved"
            );
        }
        eprintln!(
            "round {round}: {this_round} acknowledged before the kill; log has {} events",
            log.len()
        );
    }
    assert!(
        acked.len() as u64 >= rounds,
        "too few acknowledgements ({}) for the test to mean much",
        acked.len()
    );
}
