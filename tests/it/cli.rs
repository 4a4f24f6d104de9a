//! The data-directory commands: import errors, export round trips, verify against tampering, locking.

use super::{casetrail, export, stderr, stdout, Proc, BIN};
use serde_json::json;
use std::io::Write;
use std::path::Path;

fn received(n: usize) -> serde_json::Value {
    json!({ "id": format!("00000000-0000-7000-8000-{n:012}"), "type": "dossier.received",
            "dossier": format!("000.00.12.H27-190312-{n:04}"), "agency": "000.00.12.H27",
            "occurred_at": "2019-03-12T08:30:00+07:00",
            "data": { "procedure": "1.001234", "channel": "online", "online_level": "level3" } })
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut f = std::fs::File::create(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

#[test]
fn import_names_bad_lines_and_writes_nothing_of_their_batch() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    let mut lines: Vec<String> = (1..=3).map(|n| received(n).to_string()).collect();
    lines.push(String::new()); // line 4: blank lines are skipped
    let mut bad = received(5);
    bad["data"]["colour"] = json!("blue");
    lines.push(bad.to_string()); // line 5
    lines.push("{not json".into()); // line 6
    lines.push(received(7).to_string());
    write_lines(&file, &lines);
    let data = dir.path().join("data");
    let out = casetrail(&data, &["import", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("line 5: data.colour: is not a known field"),
        "{err}"
    );
    assert!(err.contains("line 6: not JSON"), "{err}");
    assert!(err.contains("nothing from lines 1–7 was written"), "{err}");
    assert!(
        export(&data).is_empty(),
        "nothing of the failed batch is in the log"
    );
}

#[test]
fn import_stops_at_the_failing_batch_and_keeps_the_batches_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    let mut lines: Vec<String> = (1..=1500).map(|n| received(n).to_string()).collect();
    lines[1199] = received(3)
        .to_string()
        .replace("-000000000003", "-000000009999"); // dossier 3 again: refused
    write_lines(&file, &lines);
    let data = dir.path().join("data");
    let out = casetrail(&data, &["import", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("line 1200 (id 00000000-0000-7000-8000-000000009999): dossier_exists"),
        "{err}"
    );
    assert!(
        err.contains(
            "nothing from lines 1001–1500 was written; before them, 1000 new events were written"
        ),
        "{err}"
    );
    assert_eq!(export(&data).len(), 1000);
    // Importing again is safe: the first thousand are recognised, not written twice.
    let again = casetrail(&data, &["import", file.to_str().unwrap()]);
    assert!(
        stderr(&again).contains("1000 were already in the log"),
        "{}",
        stderr(&again)
    );
    assert_eq!(export(&data).len(), 1000);
}

#[test]
fn an_export_imports_to_an_identical_log_and_root() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen.ndjson");
    let out = std::process::Command::new(BIN)
        .args(["generate", "--seed", "5", "--dossiers", "800"])
        .output()
        .unwrap();
    std::fs::write(&generated, &out.stdout).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    assert!(casetrail(&a, &["import", generated.to_str().unwrap()])
        .status
        .success());
    let exported = dir.path().join("a.ndjson");
    assert!(
        casetrail(&a, &["export", "--output", exported.to_str().unwrap()])
            .status
            .success()
    );
    let imported = casetrail(&b, &["import", exported.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let again = dir.path().join("b.ndjson");
    assert!(
        casetrail(&b, &["export", "--output", again.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(
        std::fs::read(&exported).unwrap(),
        std::fs::read(&again).unwrap(),
        "byte-identical logs"
    );
    let root = |d: &Path| {
        stdout(&casetrail(d, &["stats"]))
            .lines()
            .find(|l| l.starts_with("audit root"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(root(&a), root(&b));
    assert!(stdout(&casetrail(&b, &["verify"])).starts_with("ok: "));
}

/// A data directory in `dir` holding a generated province with `dossiers` dossiers.
#[test]
fn an_import_from_a_pipe_that_stays_open_ends_when_a_batch_is_refused() {
    // The parser reads ahead; when the log refuses a batch the import ends at once, without waiting for the
    // parser, which is blocked reading a pipe whose writer goes on (a producer that never closes it).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut lines: Vec<String> = (1..=1500).map(|n| received(n).to_string()).collect();
    lines[500] = received(3)
        .to_string()
        .replace("-000000000003", "-000000009999");
    let mut child = std::process::Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["import", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // (The import may end before it has read everything: then these writes fail, which is fine.)
    for l in &lines {
        let _ = writeln!(stdin, "{l}");
    }
    let _ = stdin.flush();
    // The pipe stays open (`stdin` is held) while the import must end on its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import did not end while its input stayed open"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(stdin);
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("line 501 (id 00000000-0000-7000-8000-000000009999): dossier_exists"),
        "{err}"
    );
    assert!(export(&data).is_empty());
}

pub fn generated_log(dir: &Path, seed: u32, dossiers: u32) -> std::path::PathBuf {
    let generated = dir.join("gen.ndjson");
    let out = std::process::Command::new(BIN)
        .args([
            "generate",
            "--seed",
            &seed.to_string(),
            "--dossiers",
            &dossiers.to_string(),
        ])
        .output()
        .unwrap();
    std::fs::write(&generated, &out.stdout).unwrap();
    let data = dir.join("data");
    let imported = casetrail(&data, &["import", generated.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    data
}

/// Builds a log of generated events, then lets `tamper` change the sled trees directly, as an attacker with
/// the disk would (`store::tamper` knows the block layout); returns what `verify` printed and whether it passed.
fn tampered_db(tamper: impl FnOnce(&sled::Db)) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_log(dir.path(), 9, 600);
    {
        let db = sled::open(&data).unwrap();
        tamper(&db);
        db.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(600)); // let sled's flusher let go of the lock
    let out = casetrail(&data, &["verify"]);
    (out.status.success(), stdout(&out) + &stderr(&out))
}

#[test]
fn verify_names_the_position_of_a_flipped_byte() {
    let (ok, report) = tampered_db(|db| {
        let mut bytes = store::tamper::event_bytes(db, 123);
        let marker = b"\"occurred_at\":\"20";
        let at = bytes
            .windows(marker.len())
            .position(|w| w == marker)
            .unwrap()
            + marker.len();
        // The decade changes (2017 becomes 2007): still valid JSON and a valid event, just not the one written.
        // The block is written back whole with a valid checksum, as someone who knows the layout would.
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        store::tamper::set_event(db, 123, bytes);
    });
    assert!(!ok);
    assert!(
        report.contains("first bad position 123: its audit hash"),
        "{report}"
    );
}

#[test]
fn verify_names_the_position_of_a_deleted_event() {
    let (ok, report) = tampered_db(|db| {
        store::tamper::edit_block(db, 200, |first, events| {
            events.remove((200 - first) as usize);
        });
    });
    assert!(!ok);
    assert!(
        report.contains("first bad position 200: missing"),
        "{report}"
    );
    // One missing event is one problem in the audit data: the tiles after it (at 256, 512, …) are not all named.
    assert!(!report.contains("over the tile"), "{report}");
}

#[test]
fn verify_names_the_first_of_two_swapped_events() {
    let (ok, report) = tampered_db(|db| {
        let (a, b) = (
            store::tamper::event_bytes(db, 300),
            store::tamper::event_bytes(db, 301),
        );
        store::tamper::set_event(db, 300, b);
        store::tamper::set_event(db, 301, a);
    });
    assert!(!ok);
    assert!(report.contains("first bad position 300"), "{report}");
}

#[test]
fn verify_names_a_changed_byte_inside_a_block_that_keeps_its_old_checksum() {
    // Someone changes one event's bytes inside a block but cannot (or does not) fix the block's checksum: verify
    // still names the event, not only the block.
    let (ok, report) = tampered_db(|db| {
        let log = db.open_tree("log").unwrap();
        let (first, _) = store::tamper::block_events(db, 140);
        let mut key = vec![b'b'];
        key.extend_from_slice(&first.to_be_bytes());
        let old = log.get(&key).unwrap().unwrap();
        let crc = old[9..13].to_vec();
        store::tamper::edit_block(db, 140, |first, events| {
            let e = &mut events[(140 - first) as usize];
            let at = e.windows(7).position(|w| w == b"\"agency").unwrap() + 1;
            e[at] = b'A';
        });
        let mut new = log.get(&key).unwrap().unwrap().to_vec();
        new[9..13].copy_from_slice(&crc);
        log.insert(&key, new).unwrap();
    });
    assert!(!ok);
    assert!(
        report.contains("first bad position 140: does not decode"),
        "{report}"
    );
}

#[test]
fn verify_notices_a_missing_index_entry_or_stream_head() {
    let (ok, report) = tampered_db(|db| {
        let e: serde_json::Value =
            serde_json::from_slice(&store::tamper::event_bytes(db, 77)).unwrap();
        let id = uuid::Uuid::parse_str(e["id"].as_str().unwrap()).unwrap();
        store::tamper::remove_id(db, id);
    });
    assert!(!ok);
    assert!(
        report.contains("first bad position 77: the id index points elsewhere"),
        "{report}"
    );
    let (ok, report) = tampered_db(|db| {
        store::tamper::remove_first_head(db);
    });
    assert!(!ok);
    assert!(report.contains("stream heads for"), "{report}");
}

#[test]
fn a_data_directory_in_use_gives_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut owner = Proc::spawn(
        std::process::Command::new(BIN)
            .arg("--data")
            .arg(dir.path())
            .args([
                "append-loop",
                "--seed",
                "1",
                "--events",
                "100000000",
                "--threads",
                "1",
            ])
            .stdout(std::process::Stdio::piped()),
    );
    // Wait until it owns the directory: its first acknowledgement.
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(owner.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.starts_with("ack "), "{first}");
    let out = casetrail(dir.path(), &["stats"]);
    owner.kill().unwrap();
    owner.wait().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("is in use by another process"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn rebuilding_the_indexes_keeps_the_root_and_verify_passes() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_log(dir.path(), 3, 2000);
    let before = export(&data);
    let out = casetrail(&data, &["rebuild-indexes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    let (now, was) = (
        said.split("root ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap(),
        said.split("(was ").nth(1).unwrap().trim_end_matches(")\n"),
    );
    assert_eq!(now, was, "{said}");
    assert!(stdout(&casetrail(&data, &["verify"])).starts_with("ok: "));
    assert_eq!(export(&data), before);
}

/// A `rebuild-indexes` killed anywhere leaves the log either rebuilt or flagged as being rebuilt: `verify` then
/// says "ok" or names the interrupted rebuild (as every open does), never a mismatch at every position; the
/// rebuild run again makes it verify. The kills land at fractions of a whole rebuild's time, so some fall inside.
#[test]
fn verify_after_an_interrupted_rebuild_names_the_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_log(dir.path(), 3, 10_000);
    let before = export(&data);
    let rebuild = |data: &Path| {
        let out = casetrail(data, &["rebuild-indexes"]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let started = std::time::Instant::now();
    rebuild(&data);
    let whole = started.elapsed();
    let mut interrupted = 0;
    for tenths in [9, 7, 5, 3, 2, 1] {
        let mut child = Proc::spawn(
            std::process::Command::new(BIN)
                .arg("--data")
                .arg(&data)
                .arg("rebuild-indexes")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        std::thread::sleep(whole * tenths / 10);
        child.kill().unwrap();
        child.wait().unwrap();
        let out = casetrail(&data, &["verify"]);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!said.contains("first bad position"), "{said}");
        if out.status.success() {
            assert!(said.starts_with("ok: "), "{said}");
            continue;
        }
        assert!(
            said.contains("an index rebuild was interrupted") && said.contains("rebuild-indexes"),
            "{said}"
        );
        assert_eq!(said.lines().count(), 1, "{said}");
        // The events are all there, and export reads them alone.
        assert!(
            export(&data) == before,
            "the export of an interrupted rebuild differs"
        );
        interrupted += 1;
        rebuild(&data);
        assert!(stdout(&casetrail(&data, &["verify"])).starts_with("ok: "));
    }
    assert!(
        interrupted > 0,
        "no kill fell inside a rebuild of {whole:?}"
    );
}

/// A data directory nobody may write (here a read-only bind mount, in a mount namespace of the test's own, as
/// root): `verify`, `export` and `stats` read it through a private copy in `TMPDIR`, say so on stderr, answer
/// as on the original, and leave no copy behind.
#[test]
fn a_read_only_data_directory_is_verified_exported_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_log(dir.path(), 5, 300);
    let before = stdout(&casetrail(&data, &["export"]));
    let (read_only, scratch) = (dir.path().join("ro"), dir.path().join("tmp"));
    std::fs::create_dir(&read_only).unwrap();
    std::fs::create_dir(&scratch).unwrap();
    let exported = dir.path().join("export.ndjson");
    let (small, small_err) = (dir.path().join("small"), dir.path().join("small.err"));
    std::fs::create_dir(&small).unwrap();
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount --bind {d} {r} && mount -o remount,bind,ro {r} && {b} --data {r} verify && \
             {b} --data {r} export -o {o} && {b} --data {r} stats; {b} --data {r} rebuild-indexes; \
             echo rebuild exit $?; mount -t tmpfs -o size=64k tmpfs {small} && \
             TMPDIR={small} {b} --data {r} verify 2>{small_err}; echo small exit $?",
            d = data.display(),
            r = read_only.display(),
            b = BIN,
            o = exported.display(),
            small = small.display(),
            small_err = small_err.display(),
        ))
        .env("TMPDIR", &scratch)
        .output()
        .unwrap();
    let (said, err) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{said}{err}");
    assert!(said.starts_with("ok: "), "{said}");
    assert!(said.contains("\nevents          "), "{said}");
    assert_eq!(std::fs::read_to_string(&exported).unwrap(), before);
    assert_eq!(
        err.matches("cannot be written (Read-only file system")
            .count(),
        3,
        "{err}"
    );
    assert!(err.contains("private copy"), "{err}");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "a copy was left"
    );
    // rebuild-indexes writes where it is pointed, never into a copy: refused.
    assert!(said.contains("rebuild exit 1\n"), "{said}");
    assert!(
        err.trim_end()
            .ends_with("Read-only file system (os error 30)"),
        "{err}"
    );
    // A TMPDIR without room for the copy: refused, saying so.
    let small_err = std::fs::read_to_string(&small_err).unwrap();
    assert!(said.ends_with("small exit 1\n"), "{said}");
    assert!(
        small_err.contains("No space left on device")
            && small_err.contains("set TMPDIR to a directory with room for it"),
        "{small_err}"
    );
}

/// The commands that only look at a log refuse a directory that holds none, and make no log there.
#[test]
fn the_reading_commands_refuse_a_directory_without_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    for command in [
        &["verify"][..],
        &["export"],
        &["stats"],
        &["rebuild-indexes"],
        &["report", "--period", "2019"],
    ] {
        let out = casetrail(&empty, command);
        assert!(!out.status.success(), "{command:?}");
        assert!(
            stderr(&out).contains("holds no casetrail log"),
            "{command:?}: {}",
            stderr(&out)
        );
        assert!(!empty.join("db").exists(), "{command:?} made a log");
    }
}

/// A directory whose mode allows nobody to write (root's permissions ignore it, so the mode is what says so) is
/// read through a copy too, and the original stays byte for byte as it was; while another process holds the log
/// (sled's exclusive lock), the copy is refused as an open in place is.
#[test]
fn a_directory_nobody_may_write_is_read_through_a_copy_and_a_held_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = generated_log(dir.path(), 6, 300);
    let files = |data: &Path| -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut all = Vec::new();
        let mut dirs = vec![data.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                match p.is_dir() {
                    true => dirs.push(p),
                    false => all.push((p.clone(), std::fs::read(&p).unwrap())),
                }
            }
        }
        all.sort();
        all
    };
    let set_mode = |data: &Path, mode: u32| {
        for (p, _) in files(data) {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(mode | 0o111)).unwrap();
    };
    let before = files(&data);
    set_mode(&data, 0o444);
    let out = casetrail(&data, &["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok: "), "{}", stdout(&out));
    assert!(stderr(&out).contains("is mode 555"), "{}", stderr(&out));
    let out = casetrail(&data, &["stats"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files(&data), before, "the original was written");
    // Another process holds the log.
    let held = std::fs::File::open(data.join("db")).unwrap();
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&held), libc::LOCK_EX) },
        0
    );
    let out = casetrail(&data, &["export"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("in use by another process"),
        "{}",
        stderr(&out)
    );
    drop(held);
    set_mode(&data, 0o644);
}

#[test]
fn missing_audit_data_is_refused_at_open_and_rebuilt_from_the_events() {
    // The leaf-hash prefixes and the hashes above the tiles must end where the events end: an open that finds
    // them short refuses, naming `rebuild-indexes`, which writes them again from the events.
    let dir = tempfile::tempdir().unwrap();
    let data = generated_log(dir.path(), 4, 300);
    let root = |data: &Path| {
        stdout(&casetrail(data, &["stats"]))
            .lines()
            .find(|l| l.starts_with("audit root"))
            .map(str::to_owned)
    };
    let before = root(&data).unwrap();
    {
        let db = sled::open(&data).unwrap();
        let log = db.open_tree("log").unwrap();
        for prefix in [b"l", b"t"] {
            let last = log.scan_prefix(prefix).keys().last().unwrap().unwrap();
            log.remove(last).unwrap();
        }
        db.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(600)); // let sled's flusher let go of the lock
    let refused = casetrail(&data, &["stats"]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("leaf hashes") && err.contains("rebuild-indexes"),
        "{err}"
    );
    let out = casetrail(&data, &["rebuild-indexes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(root(&data).unwrap(), before);
    assert!(stdout(&casetrail(&data, &["verify"])).starts_with("ok: "));
}

/// Runs `casetrail demo` on port 0 until it announces the dashboard; returns what it printed up to then, the
/// dashboard's address, the tokens it listed, and the running child.
fn demo(data: &Path) -> (String, String, Vec<(String, String)>, Proc) {
    use std::io::BufRead;
    let mut child = Proc::spawn(
        std::process::Command::new(BIN)
            .arg("--data")
            .arg(data)
            .args(["demo", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null()),
    );
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = String::new();
    let mut dashboard = None;
    let mut tokens = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if let Some(url) = line.strip_prefix("casetrail demo: the dashboard is at ") {
            dashboard = Some(url.to_owned());
        } else if dashboard.is_some() {
            match line.trim().split_once(' ') {
                Some((role, token)) if token.trim().starts_with("ct_") => {
                    tokens.push((role.to_owned(), token.trim().to_owned()))
                }
                _ if line.starts_with("the API") => break,
                _ => {}
            }
        }
    }
    // Keep draining what it prints, so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let dashboard = dashboard.unwrap_or_else(|| panic!("no dashboard address in:\n{said}"));
    (said, dashboard, tokens, child)
}

#[test]
fn the_demo_fills_an_empty_directory_once_and_serves_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let (said, dashboard, tokens, mut child) = demo(&data);
    assert!(
        said.contains("filling") && said.contains("generated province"),
        "{said}"
    );
    assert!(said.contains("ok: "), "the demo verifies its log: {said}");
    for level in ["department", "district", "commune"] {
        assert!(
            said.contains(&format!("2019-Q1                 {level}")),
            "{level} row missing:\n{said}"
        );
    }
    // The dashboard is served, and each token works for its role.
    let page = reqwest::blocking::get(&dashboard).unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().unwrap().contains("/dashboard/app.js"));
    let roles: Vec<&str> = tokens.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["admin", "analyst", "auditor", "ingest"]);
    let base = dashboard.trim_end_matches("/dashboard/");
    let client = reqwest::blocking::Client::new();
    let status = |path: &str, token: &str| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status("/v1/audit/head", &tokens[2].1), 200, "auditor");
    assert_eq!(status("/v1/audit/head", &tokens[1].1), 403, "analyst");
    assert_eq!(status("/v1/tokens", &tokens[0].1), 200, "admin");
    let size = |s: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix("log size "))
            .and_then(|l| l.split(',').next())
            .map(|n| n.to_owned())
    };
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopped = child.wait().unwrap();
    assert!(stopped.success(), "{stopped:?}");

    // A second run reuses the data and shows the same tokens.
    let (again, _, tokens_again, mut child) = demo(&data);
    assert!(again.contains("reusing the log"), "{again}");
    assert_eq!(size(&again), size(&said), "a second run adds nothing");
    assert_eq!(tokens_again, tokens);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn verify_names_where_a_changed_byte_in_the_database_file_stops_the_reading() {
    // Below sled, on the disk itself: one byte of the stored block holding position 123 changed in every copy of
    // it in the database file. sled's own checksums catch it; `verify` must then say so plainly.
    let dir = tempfile::tempdir().unwrap();
    let data = generated_log(dir.path(), 9, 600);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let marker = {
        let db = sled::open(&data).unwrap();
        let value = store::tamper::raw_block(&db, 123);
        // 24 bytes from the middle of the compressed frame: found in the file only where the block is.
        value[value.len() / 2..value.len() / 2 + 24].to_vec()
    };
    std::thread::sleep(std::time::Duration::from_millis(600));
    let file = data.join("db");
    let mut bytes = std::fs::read(&file).unwrap();
    let mut changed = 0;
    let mut from = 0;
    while let Some(at) = bytes[from..]
        .windows(marker.len())
        .position(|w| w == marker.as_slice())
        .map(|i| i + from)
    {
        bytes[at + 10] ^= 0x10;
        changed += 1;
        from = at + marker.len();
    }
    assert!(changed >= 1, "the block's bytes are in the file");
    std::fs::write(&file, &bytes).unwrap();
    let out = casetrail(&data, &["verify"]);
    // Never a panic (exit 101), always one plain verdict. Where the change lands decides which: in a page that
    // sled reads only when asked, `verify` names the first position it could not read (at or before 123); in a
    // log segment that sled's recovery reads on open, sled 0.34 cannot open the file at all, and says so.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let report = stdout(&out);
    match report.strip_prefix("bad: first bad position ") {
        Some(rest) => {
            let first: u64 = rest.split(':').next().unwrap().parse().unwrap();
            assert!((1..=123).contains(&first), "{report}");
            assert!(
                report
                    .lines()
                    .next()
                    .unwrap()
                    .contains("the database file is damaged"),
                "{report}"
            );
        }
        None => {
            let err = stderr(&out);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.starts_with("casetrail: the database file is damaged (sled cannot recover"),
                "{err}"
            );
        }
    }
}

/// `import-dvcqg`: a one-stop system's sync log of generated lives (one of its steps sent before its dossier's
/// upsert) gives the same indicator table as the same lives imported as native events; importing it again writes
/// nothing; personal fields are reported dropped.
#[test]
fn import_dvcqg_backfills_a_sync_log_once_and_matches_the_native_lives() {
    let dir = tempfile::tempdir().unwrap();
    let mapping_file = dir.path().join("site.toml");
    let mapping_text = dvcqg::emulate::lives_mapping("backfill");
    std::fs::write(&mapping_file, &mapping_text).unwrap();
    let mapping = dvcqg::Mapping::parse(&mapping_text).unwrap();
    let mut lives = generator::lives::LifeGenerator::for_2019(11);
    let (mut native, mut sync) = (Vec::new(), Vec::new());
    for _ in 0..150 {
        let life = lives.dossier();
        native.extend(life.iter().map(|e| e.to_json(None)));
        sync.extend(sync_lines(&life, &mapping));
    }
    // One transfer step moved to the very start, before its dossier's upsert.
    let early = sync
        .iter()
        .position(|l| l.contains("CapNhatTienDoHoSoMC"))
        .unwrap();
    let step = sync.remove(early);
    sync.insert(0, step);
    let (native_file, sync_file) = (
        dir.path().join("native.ndjson"),
        dir.path().join("sync.ndjson"),
    );
    write_lines(&native_file, &native);
    write_lines(&sync_file, &sync);
    let (a, b) = (dir.path().join("native"), dir.path().join("synced"));
    assert!(casetrail(&a, &["import", native_file.to_str().unwrap()])
        .status
        .success());
    let args = [
        "import-dvcqg",
        sync_file.to_str().unwrap(),
        "--mapping",
        mapping_file.to_str().unwrap(),
    ];
    let out = casetrail(&b, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("1 lines came before their dossier"), "{said}");
    assert!(
        said.contains("personal fields dropped, never stored: ChuHoSo"),
        "{said}"
    );
    assert!(said.contains(&format!("@{}", mapping.tag())), "{said}");
    imports_nothing_again(&b, &args);
    assert!(casetrail(&b, &["verify"]).status.success());

    // A bad line stops the import, named with its field, and nothing of it is written.
    let bad_file = dir.path().join("bad.ndjson");
    let mut bad = sync[1].replace("\"TrangThaiHoSo\":\"", "\"TrangThaiHoSo\":\"9");
    if bad == sync[1] {
        bad = sync[1].replace("\"TrangThai\":\"", "\"TrangThai\":\"9");
    }
    write_lines(&bad_file, &[bad]);
    let size = export(&b).len();
    let stopped = casetrail(
        &b,
        &[
            "import-dvcqg",
            bad_file.to_str().unwrap(),
            "--mapping",
            mapping_file.to_str().unwrap(),
        ],
    );
    assert!(!stopped.status.success());
    let err = stderr(&stopped);
    assert!(
        err.contains("line 1: data[0].TrangThai") && err.contains("import stopped"),
        "{err}"
    );
    assert_eq!(export(&b).len(), size);
    let report = |data: &Path| {
        stdout(&casetrail(
            data,
            &["report", "--period", "2019", "--format", "csv"],
        ))
    };
    let (native_table, synced_table) = (report(&a), report(&b));
    assert!(native_table.lines().count() > 10, "{native_table}");
    assert_eq!(native_table, synced_table);
}

/// `import-dvcqg` under the portal's own rule for units (a unit is an agency when it is registered), from a feed
/// whose upserts leave out `DonViXuLy`, so that steps alone tell of hand-overs: each life's first hand-over step is
/// held back (it came before its dossier's upsert in the file), and every hand-over of every life still lands at
/// its own time, as the native lives have it. Taken after its group's later steps, a held step was earlier than the
/// log's last event and was dropped with exit 0.
#[test]
fn import_dvcqg_takes_a_held_back_step_in_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let mapping_file = dir.path().join("site.toml");
    let mapping_text = dvcqg::emulate::lives_mapping("held").replace(
        "units_unlisted = \"as-is\"",
        "units_unlisted = \"agency-if-registered\"",
    );
    std::fs::write(&mapping_file, &mapping_text).unwrap();
    let mapping = dvcqg::Mapping::parse(&mapping_text).unwrap();
    let mut lives = generator::lives::LifeGenerator::for_2019(25);
    let (mut native, mut sync) = (Vec::new(), Vec::new());
    let mut agencies = std::collections::BTreeSet::new();
    let mut held = 0;
    for _ in 0..120 {
        let life = dvcqg::emulate::handed_on(lives.dossier());
        for e in &life {
            agencies.extend(e.agency.iter().map(|a| a.to_string()));
            if let domain::EventData::Transferred(t) = &e.data {
                agencies.insert(t.to_agency.to_string());
            }
        }
        native.extend(life.iter().map(|e| e.to_json(None)));
        let mut lines: Vec<serde_json::Value> = dvcqg::emulate::sync_requests(&life, &mapping);
        for r in &mut lines {
            if r["service"] == "DongBoHoSoMC" {
                r["data"][0].as_object_mut().unwrap().remove("DonViXuLy");
            }
        }
        // The first step that hands the dossier on, moved before the dossier's first upsert.
        let holder = life[0].agency.as_ref().unwrap().to_string();
        if let Some(k) = lines.iter().position(|r| {
            r["service"] == "CapNhatTienDoHoSoMC" && r["data"][0]["PhongBanXuLy"] != holder.as_str()
        }) {
            let step = lines.remove(k);
            lines.insert(0, step);
            held += 1;
        }
        sync.extend(lines.iter().map(|r| r.to_string()));
    }
    assert!(held > 20, "{held} lives hand their dossier on");
    let registered: Vec<String> = agencies
        .iter()
        .map(|a| {
            json!({"id": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, a.as_bytes()), "type": "agency.registered",
                   "agency": a, "occurred_at": "2019-01-01T00:00:00+07:00", "data": {"name": format!("Đơn vị {a}"), "level": "department"}})
            .to_string()
        })
        .collect();
    let files = ["native", "sync", "agencies"].map(|n| dir.path().join(format!("{n}.ndjson")));
    write_lines(&files[0], &native);
    write_lines(&files[1], &sync);
    write_lines(&files[2], &registered);
    let (a, b) = (dir.path().join("native"), dir.path().join("synced"));
    assert!(casetrail(&a, &["import", files[0].to_str().unwrap()])
        .status
        .success());
    assert!(casetrail(&b, &["import", files[2].to_str().unwrap()])
        .status
        .success());
    let args = [
        "import-dvcqg",
        files[1].to_str().unwrap(),
        "--mapping",
        mapping_file.to_str().unwrap(),
    ];
    let out = casetrail(&b, &args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{held} lines came before their dossier")),
        "{}",
        stdout(&out)
    );
    let hand_overs = |data: &Path| {
        let mut all: Vec<String> = export(data)
            .into_iter()
            .filter(|(_, _, e)| e["type"] == "dossier.transferred")
            .map(|(_, _, e)| {
                let at = chrono::DateTime::parse_from_rfc3339(e["occurred_at"].as_str().unwrap())
                    .unwrap();
                format!(
                    "{} {} {}",
                    e["dossier"],
                    at.timestamp(),
                    e["data"]["to_agency"]
                )
            })
            .collect();
        all.sort();
        all
    };
    let (want, got) = (hand_overs(&a), hand_overs(&b));
    assert!(want.len() >= 2 * held, "{}", want.len());
    assert_eq!(want, got);
    imports_nothing_again(&b, &args);

    // A hand-over to a registered unit the dossier never went to, dated just after its acceptance, long before its
    // last event: the import stops on it, names the line, and writes nothing of it.
    let native: Vec<serde_json::Value> = native
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &native[0];
    let dossier = first["dossier"].as_str().unwrap();
    let unit = agencies
        .iter()
        .find(|a| {
            !native.iter().any(|e| {
                e["dossier"] == dossier
                    && (e["agency"] == a.as_str() || e["data"]["to_agency"] == a.as_str())
            })
        })
        .unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(first["occurred_at"].as_str().unwrap()).unwrap()
        + chrono::Duration::seconds(1);
    let late = json!({"service": "CapNhatTienDoHoSoMC", "data": [{"MaHoSo": dossier,
        "ThoiDiemXuLy": dvcqg::wire::format_time(&at), "PhongBanXuLy": unit,
        "TrangThai": mapping.status_code(dvcqg::Meaning::Processing).unwrap()}]});
    let late_file = dir.path().join("late.ndjson");
    write_lines(&late_file, &[late.to_string()]);
    let size = export(&b).len();
    let stopped = casetrail(
        &b,
        &[
            "import-dvcqg",
            late_file.to_str().unwrap(),
            "--mapping",
            mapping_file.to_str().unwrap(),
        ],
    );
    assert!(!stopped.status.success());
    let err = stderr(&stopped);
    assert!(
        err.contains("line 1: data[0].PhongBanXuLy")
            && err.contains("before the log's last event")
            && err.contains("import stopped"),
        "{err}"
    );
    assert_eq!(export(&b).len(), size);
}

/// The same import again writes nothing.
fn imports_nothing_again(data: &Path, args: &[&str]) {
    let again = casetrail(data, args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains(": 0 new events"),
        "{}",
        stdout(&again)
    );
}

/// The sync requests of one life, one NDJSON line each.
fn sync_lines(life: &[domain::Event], mapping: &dvcqg::Mapping) -> Vec<String> {
    dvcqg::emulate::sync_requests(life, mapping)
        .iter()
        .map(|r| r.to_string())
        .collect()
}

#[test]
fn the_command_line_never_revokes_the_last_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    super::common::token(&data, "first-admin", "admin", None);
    super::common::token(&data, "clerk", "ingest", Some("000.00.12.H27"));
    let refused = casetrail(&data, &["token", "revoke", "first-admin"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("last live admin token"),
        "{}",
        stderr(&refused)
    );
    // With a second admin, the first may go; then the second is the last.
    super::common::token(&data, "second-admin", "admin", None);
    assert!(casetrail(&data, &["token", "revoke", "first-admin"])
        .status
        .success());
    assert!(!casetrail(&data, &["token", "revoke", "second-admin"])
        .status
        .success());
    let list = stdout(&casetrail(&data, &["token", "list"]));
    let live = |name: &str| {
        list.lines()
            .any(|l| l.starts_with(name) && l.ends_with("live"))
    };
    assert!(
        !live("first-admin") && live("second-admin") && live("clerk"),
        "{list}"
    );
}
