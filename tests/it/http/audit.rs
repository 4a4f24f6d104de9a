//! Audit through real HTTP and the real binary: bundles and checkpoints from a running server, checked offline by
//! `casetrail audit verify-bundle` / `verify-consistency` in a directory with no data, against tampering and
//! rewritten logs.

use super::*;
use serde_json::json;
use std::process::Output;

/// Runs `casetrail args…` in a fresh, empty working directory with no data directory configured, and checks
/// that the directory is still empty afterwards: offline checks read only the files they are given.
fn offline(args: &[&str]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd.path())
        .env_remove("CASETRAIL_DATA")
        .output()
        .unwrap();
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "an offline check wrote into its working directory"
    );
    out
}

/// `casetrail audit verify-bundle FILE --key KEY`, offline.
fn verify_bundle(file: &Path, key: &str) -> Output {
    offline(&[
        "audit",
        "verify-bundle",
        file.to_str().unwrap(),
        "--key",
        key,
    ])
}

/// `casetrail audit verify-consistency OLD NEW --key KEY [--proof PROOF]`, offline.
fn consistency(old: &Path, new: &Path, key: &str, proof: Option<&Path>) -> Output {
    let mut args = vec![
        "audit",
        "verify-consistency",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--key",
        key,
    ];
    if let Some(p) = proof {
        args.extend(["--proof", p.to_str().unwrap()]);
    }
    offline(&args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A dossier with eight events (`life`), written by the ingest token.
fn dossier_life(s: &Server, d: &str) {
    let (status, body) = s.post("/v1/events", Some(&s.ingest), &life(d));
    assert_eq!(status, 201, "{body}");
}

/// Saves what a GET answered, exactly, into `dir/name`.
fn save(s: &Server, path: &str, dir: &Path, name: &str) -> std::path::PathBuf {
    let (status, bytes) = s.get_bytes(path, Some(&s.auditor));
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&bytes));
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    file
}

fn verifier_key(s: &Server) -> String {
    let (status, key) = s.get("/v1/audit/key", Some(&s.auditor));
    assert_eq!(status, 200, "{key}");
    key["verifier_key"].as_str().unwrap().to_owned()
}

#[test]
fn a_bundle_verifies_offline_and_its_checkpoint_links_to_later_heads() {
    let s = Server::start(&[
        "--checkpoint-every-secs",
        "0",
        "--checkpoint-every-events",
        "0",
    ]);
    let files = tempfile::tempdir().unwrap();
    let d = "000.00.12.H27-190312-0042";
    dossier_life(&s, d);
    s.receive("000.00.12.H27-190312-0043", DEPT);
    let key = verifier_key(&s);
    // The key the server publishes is the one `casetrail audit key` prints from the key file, while it runs.
    let printed = casetrail(&s.data(), &["audit", "key"]);
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim(), key);
    let bundle = save(
        &s,
        &format!("/v1/dossiers/{d}/bundle"),
        files.path(),
        "bundle.json",
    );
    let size_then = s.log_size();

    let out = verify_bundle(&bundle, &key);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.starts_with(&format!("ok: 8 events of dossier {d} (versions 1–8")),
        "{report}"
    );
    assert!(
        report.contains(&format!("of {size_then} events")),
        "{report}"
    );
    assert!(report.contains("dossier.corrected"), "{report}");

    // More events arrive; the old bundle still verifies, and a consistency proof links its checkpoint to the new
    // head's.
    for n in 0..5 {
        s.receive(&format!("000.00.12.H27-190313-{n:04}"), DEPT);
    }
    let out = verify_bundle(&bundle, &key);
    assert!(out.status.success(), "{}", text(&out));
    let link = save(
        &s,
        &format!("/v1/audit/consistency?from={size_then}"),
        files.path(),
        "consistency.json",
    );
    let answer: Value = serde_json::from_slice(&std::fs::read(&link).unwrap()).unwrap();
    assert_eq!(answer["from"], size_then);
    assert_eq!(
        answer["to"],
        size_then + 5,
        "a checkpoint of the head was signed on demand"
    );
    let out = consistency(&bundle, &link, &key, None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).starts_with("ok: "), "{}", text(&out));
    // Given in the wrong order, or without a proof, it says so and fails.
    let out = consistency(&link, &bundle, &key, None);
    assert!(!out.status.success());
    assert!(text(&out).contains("oldest first"), "{}", text(&out));
    let head = save(&s, "/v1/audit/head", files.path(), "head.json");
    let out = consistency(&bundle, &head, &key, None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no consistency proof"),
        "{}",
        text(&out)
    );
    // With the proof given apart from the newer checkpoint, it passes.
    let out = consistency(&bundle, &head, &key, Some(&link));
    assert!(out.status.success(), "{}", text(&out));
    // Another log's key refuses it all.
    let other = tempfile::tempdir().unwrap();
    let other_key = casetrail(&other.path().join("data"), &["audit", "key"]);
    let other_key = String::from_utf8_lossy(&other_key.stdout).trim().to_owned();
    let out = verify_bundle(&bundle, &other_key);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not signed by the key"),
        "{}",
        text(&out)
    );
}

/// Replaces the first letter or digit at or after `at` with another of the same kind, so that the JSON stays valid
/// and the verifier must find the change by its checks, not by a parse error. (Base64 also holds `+` and `/`,
/// which are passed over.)
fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let at = at
        + bytes[at..]
            .iter()
            .position(u8::is_ascii_alphanumeric)
            .expect("a letter or digit follows");
    let mut out = bytes.to_vec();
    out[at] = match out[at] {
        b'9' => b'0',
        b'z' => b'a',
        b'Z' => b'A',
        other => other + 1,
    };
    out
}

fn find(bytes: &[u8], what: &str, from: usize) -> usize {
    from + bytes[from..]
        .windows(what.len())
        .position(|w| w == what.as_bytes())
        .unwrap_or_else(|| panic!("{what:?} not in the bundle"))
}

#[test]
fn a_changed_byte_in_any_part_of_a_bundle_is_rejected_with_one_line() {
    let s = Server::start(&[]);
    let d = "000.00.12.H27-190312-0099";
    dossier_life(&s, d);
    let key = verifier_key(&s);
    let (_, bundle) = s.get_bytes(&format!("/v1/dossiers/{d}/bundle"), Some(&s.auditor));
    let files = tempfile::tempdir().unwrap();
    let event = find(&bundle, "\\\"occurred_at\\\":\\\"2019-03-1", 0) + 30; // a digit of a date in an event
    let proof = find(&bundle, "\"proof\":[\"", 0) + 12; // inside the first proof hash
    let note = find(&bundle, "\"checkpoint\":\"", 0);
    // The root is the third line of the signed text: 10 characters before the third newline.
    let origin_end = find(&bundle, "\\n", note);
    let size_end = find(&bundle, "\\n", origin_end + 2);
    let root = find(&bundle, "\\n", size_end + 2) - 10; // in the root line of the signed text
    let signature = find(&bundle, "— ", note);
    let signature = find(&bundle, " ", signature + 4) + 20; // in the signature's base64
    for (at, part, reason) in [
        (
            event,
            "an event",
            "its leaf hash is not the hash of its bytes",
        ),
        (
            proof,
            "a proof",
            "its inclusion proof does not lead to the checkpoint's root",
        ),
        (root, "the checkpoint", "signature is not valid"),
        (signature, "the signature", "signature is not valid"),
    ] {
        let file = files.path().join("tampered.json");
        std::fs::write(&file, flip(&bundle, at)).unwrap();
        let out = verify_bundle(&file, &key);
        assert!(!out.status.success(), "a changed byte in {part} passed");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with("casetrail: ")
                && stderr.contains("rejected")
                && stderr.contains(reason),
            "{part}: {stderr}"
        );
    }
    // And the untouched bundle passes, so it was the change that failed them.
    let file = files.path().join("bundle.json");
    std::fs::write(&file, &bundle).unwrap();
    assert!(verify_bundle(&file, &key).status.success());
}

#[test]
fn proofs_check_against_signed_checkpoints_and_bad_parameters_are_named() {
    let s = Server::start(&[
        "--checkpoint-every-secs",
        "0",
        "--checkpoint-every-events",
        "0",
    ]);
    for n in 0..6 {
        s.receive(&format!("000.00.12.H27-190312-{n:04}"), DEPT);
    }
    let key = ::audit::VerifierKey::parse(&verifier_key(&s)).unwrap();
    let size = s.log_size();
    let (_, page) = s.get("/v1/events?limit=100", Some(&s.auditor));
    let leaves: Vec<String> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| store::record_hash(e.to_string().as_bytes()).to_string())
        .collect();
    assert_eq!(leaves.len() as u64, size);
    for position in 1..=size {
        // Without a size: against a signed checkpoint that holds the position.
        let (status, answer) = s.get(
            &format!("/v1/audit/proof?position={position}"),
            Some(&s.auditor),
        );
        assert_eq!(status, 200, "{answer}");
        let signed =
            ::audit::open_checkpoint(answer["checkpoint"]["note"].as_str().unwrap(), &key).unwrap();
        assert_eq!(signed.size, answer["size"].as_u64().unwrap());
        assert_eq!(
            answer["leaf_hash"],
            leaves[position as usize - 1],
            "the leaf is the stored bytes' hash"
        );
        let proof: Vec<tlog_tiles::Hash> = answer["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| tlog_tiles::Hash::parse_hash(h.as_str().unwrap()).unwrap())
            .collect();
        let leaf = tlog_tiles::Hash::parse_hash(&leaves[position as usize - 1]).unwrap();
        tlog_tiles::check_record(&proof, signed.size, signed.root, position - 1, leaf).unwrap();
        // With a size: against that tree, whose root the consistency answer agrees on.
        let (_, at) = s.get(
            &format!("/v1/audit/proof?position={position}&size={position}"),
            Some(&s.auditor),
        );
        let (_, link) = s.get(
            &format!("/v1/audit/consistency?from={position}&to={size}"),
            Some(&s.auditor),
        );
        assert_eq!(at["root"], link["from_root"]);
        assert_eq!(link["to_root"].as_str().unwrap(), signed.root.to_string());
    }
    // One checkpoint was signed for all of that, on demand; the head answer shows it.
    let (_, list) = s.get("/v1/audit/checkpoints", Some(&s.auditor));
    assert_eq!(list["checkpoints"].as_array().unwrap().len(), 1, "{list}");
    let (_, head) = s.get("/v1/audit/head", Some(&s.auditor));
    assert_eq!(head["size"], size);
    assert_eq!(head["checkpoint"]["size"], size);

    for (path, status, parameter) in [
        ("/v1/audit/proof", 400, "position"),
        ("/v1/audit/proof?position=0", 400, "position"),
        (
            &format!("/v1/audit/proof?position={}", size + 1) as &str,
            400,
            "position",
        ),
        ("/v1/audit/proof?position=3&size=2", 400, "size"),
        (
            &format!("/v1/audit/proof?position=3&size={}", size + 1),
            400,
            "size",
        ),
        ("/v1/audit/consistency", 400, "from"),
        (
            &format!("/v1/audit/consistency?from={}", size + 1),
            400,
            "from",
        ),
        ("/v1/audit/consistency?from=3&to=2", 400, "to"),
        ("/v1/audit/checkpoints?limit=0", 400, "limit"),
        ("/v1/dossiers/not%20a%20code/bundle", 400, "dossier"),
    ] {
        let (got, problem) = s.get(path, Some(&s.auditor));
        assert_eq!(
            (got, problem["parameter"].as_str()),
            (status, Some(parameter)),
            "{path}: {problem}"
        );
    }
    let (got, problem) = s.get(
        "/v1/dossiers/000.00.12.H27-190312-9999/bundle",
        Some(&s.auditor),
    );
    assert_eq!(
        (got, problem["code"].as_str()),
        (404, Some("dossier_not_found"))
    );
}

fn checkpoint_sizes(s: &Server) -> Vec<u64> {
    let (_, list) = s.get("/v1/audit/checkpoints?limit=1000", Some(&s.auditor));
    list["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn checkpoints_are_signed_by_count_by_time_and_at_a_graceful_stop() {
    // By count: every 3 events (the 4 agencies registered at start are events too).
    let s = Server::start(&[
        "--checkpoint-every-secs",
        "0",
        "--checkpoint-every-events",
        "3",
    ]);
    for n in 0..10 {
        s.receive(&format!("000.00.12.H27-190312-{n:04}"), DEPT);
    }
    let size = s.log_size();
    wait_for("the last checkpoint by count", || {
        checkpoint_sizes(&s)
            .last()
            .is_some_and(|&last| size - last < 3)
    });
    let sizes = checkpoint_sizes(&s);
    assert!(sizes.len() >= 3, "{sizes:?}");
    let (_, metrics) = s.get("/metrics", None);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains(&format!(
            "\ncasetrail_checkpoint_events {}\n",
            sizes.last().unwrap()
        )),
        "{metrics}"
    );
    assert!(sizes.windows(2).all(|w| w[1] - w[0] >= 3), "{sizes:?}");
    // Every stored checkpoint is signed by the log's key and commits to the log's own root at its size.
    let key = ::audit::VerifierKey::parse(&verifier_key(&s)).unwrap();
    let (_, list) = s.get("/v1/audit/checkpoints", Some(&s.auditor));
    for c in list["checkpoints"].as_array().unwrap() {
        let signed = ::audit::open_checkpoint(c["note"].as_str().unwrap(), &key).unwrap();
        let (_, link) = s.get(
            &format!("/v1/audit/consistency?from={}&to={}", signed.size, size),
            Some(&s.auditor),
        );
        assert_eq!(link["from_root"].as_str().unwrap(), signed.root.to_string());
    }
    drop(s);

    // By time: within about a second of new events, whatever their number.
    let mut s = Server::start(&[
        "--checkpoint-every-secs",
        "1",
        "--checkpoint-every-events",
        "0",
    ]);
    s.receive("000.00.12.H27-190312-0001", DEPT);
    let size = s.log_size();
    wait_for("a checkpoint by time", || {
        checkpoint_sizes(&s).last() == Some(&size)
    });

    // At a graceful stop, a last one of the head, though neither rule is due.
    s.receive("000.00.12.H27-190312-0002", DEPT);
    let size = s.log_size();
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    assert!(s.child.wait().unwrap().success());
    let (child, base) = spawn(
        &s.data(),
        &[
            "--checkpoint-every-secs",
            "0",
            "--checkpoint-every-events",
            "0",
        ],
    );
    s.child = child;
    s.base = base;
    assert_eq!(checkpoint_sizes(&s).last(), Some(&size));
}

#[test]
fn a_rewritten_log_fails_verify_consistency_against_an_older_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let generated = Command::new(BIN)
        .args(["generate", "--seed", "4", "--dossiers", "40"])
        .output()
        .unwrap()
        .stdout;
    let honest_file = dir.path().join("honest.ndjson");
    std::fs::write(&honest_file, &generated).unwrap();
    let honest = dir.path().join("honest");
    assert!(
        casetrail(&honest, &["import", honest_file.to_str().unwrap()])
            .status
            .success()
    );
    let out = casetrail(&honest, &["audit", "checkpoint"]);
    assert!(out.status.success(), "{}", text(&out));
    let old = dir.path().join("old.checkpoint");
    std::fs::write(&old, &out.stdout).unwrap();
    let key = String::from_utf8(casetrail(&honest, &["audit", "key"]).stdout).unwrap();
    let key = key.trim();

    // The forger holds the data directory and the key, changes who recorded the fifth event, and rebuilds the log.
    let text_of = String::from_utf8(generated).unwrap();
    let mut lines: Vec<String> = text_of.lines().map(str::to_owned).collect();
    assert!(lines[4].contains("\"source\":\"generator\""));
    lines[4] = lines[4].replace("\"source\":\"generator\"", "\"source\":\"someone-else\"");
    let forged_file = dir.path().join("forged.ndjson");
    std::fs::write(&forged_file, lines.join("\n") + "\n").unwrap();
    let forged = dir.path().join("forged");
    assert!(
        casetrail(&forged, &["import", forged_file.to_str().unwrap()])
            .status
            .success()
    );
    std::fs::copy(
        honest.join("audit-signing.key"),
        forged.join("audit-signing.key"),
    )
    .unwrap();
    // Same size, other root: the checkpoints themselves show the fork.
    let out = casetrail(&forged, &["audit", "checkpoint"]);
    let same_size = dir.path().join("same-size.checkpoint");
    std::fs::write(&same_size, &out.stdout).unwrap();
    let out = consistency(&old, &same_size, key, None);
    assert!(!out.status.success());
    assert!(text(&out).contains("forked"), "{}", text(&out));

    // The forged log grows and its server signs a new head and proves "consistency" as well as it can: refused.
    let old_size: u64 = String::from_utf8(std::fs::read(&old).unwrap())
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let verdict = |data: &Path| {
        let new = grown_and_linked(data, old_size, &dir.path().join("new.json"));
        consistency(&old, &new, key, None)
    };
    let out = verdict(&forged);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the log was rewritten"),
        "{}",
        text(&out)
    );
    // The honest log, grown the same way, passes.
    let out = verdict(&honest);
    assert!(out.status.success(), "{}", text(&out));
}

/// Serves `data`, appends one event, and saves into `file` the consistency answer from `from` to the head (with
/// the checkpoint it signs), then stops the server.
fn grown_and_linked(data: &Path, from: u64, file: &Path) -> std::path::PathBuf {
    let admin = token(data, &format!("admin-{}", id()), "admin", None);
    let (mut child, base) = spawn(data, &[]);
    let client = reqwest::blocking::Client::new();
    let posted = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(&admin)
        .body(received("000.00.12.H27-191231-0001", DEPT).to_string())
        .send()
        .unwrap();
    assert_eq!(posted.status().as_u16(), 201);
    let answer = client
        .get(format!("{base}/v1/audit/consistency?from={from}"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    std::fs::write(file, answer.bytes().unwrap()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    file.to_path_buf()
}

#[test]
fn the_signing_key_is_made_once_private_and_verify_checks_stored_checkpoints() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start(&["--audit-origin", "motcua.example.vn/casetrail"]);
    let key_file = s.data().join("audit-signing.key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = verifier_key(&s);
    assert!(key.starts_with("motcua.example.vn/casetrail+"), "{key}");
    s.receive("000.00.12.H27-190312-0001", DEPT);
    let (status, _) = s.post("/v1/audit/checkpoints", Some(&s.auditor), &json!({}));
    assert_eq!(status, 201);
    let data = s.data();
    let mut s = s;
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    assert!(s.child.wait().unwrap().success());
    // `verify` re-checks the stored checkpoints against the log it re-hashed.
    let out = casetrail(&data, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "1 stored checkpoint signed with the data directory's key and matching the log"
        ),
        "{}",
        text(&out)
    );
    // A second start keeps the key.
    let (child, base) = spawn(&data, &["--audit-origin", "ignored.example"]);
    s.child = child;
    s.base = base;
    assert_eq!(verifier_key(&s), key);
    let _ = s.child.kill();
    let _ = s.child.wait();
    std::thread::sleep(std::time::Duration::from_millis(600)); // sled's flusher lets go of the lock

    // Someone with the disk rewrites an event and rebuilds every index and audit hash from the changed events:
    // the tree is self-consistent again, but no longer the one the stored checkpoints signed.
    {
        let db = sled::open(&data).unwrap();
        let text = String::from_utf8(store::tamper::event_bytes(&db, 2))
            .unwrap()
            .replace("\"name\":\"Sở Tư pháp\"", "\"name\":\"Sở Tư Pháp\"");
        store::tamper::set_event(&db, 2, text.into_bytes());
        db.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(600));
    let rebuilt = casetrail(&data, &["rebuild-indexes"]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt));
    let out = casetrail(&data, &["verify"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the log was rewritten after it was signed"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_signing_key_given_by_configuration_is_used_and_the_data_directory_gets_none() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("province.key");
    // Made ahead, by the command line, under the province's name.
    let out = Command::new(BIN)
        .args(["--data", keys.path().join("unused").to_str().unwrap()])
        .args(["audit", "key", "--audit-key", key_file.to_str().unwrap()])
        .args(["--audit-origin", "motcua.hatinh.gov.vn/casetrail"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let made = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        made.starts_with("motcua.hatinh.gov.vn/casetrail+"),
        "{made}"
    );
    // Named in a config file, the server signs with it, and makes none in its data directory.
    let config = keys.path().join("casetrail.toml");
    std::fs::write(
        &config,
        format!(
            "audit_key = {:?}\ncheckpoint_every_events = 2\n",
            key_file.to_str().unwrap()
        ),
    )
    .unwrap();
    let s = Server::start(&["--config", config.to_str().unwrap()]);
    assert_eq!(verifier_key(&s), made);
    assert!(!s.data().join("audit-signing.key").exists());
    // The four agencies registered at start were signed at 2 and 4; two more events make 6.
    s.receive("000.00.12.H27-190312-0001", DEPT);
    s.receive("000.00.12.H27-190312-0002", DEPT);
    let size = s.log_size();
    wait_for("a checkpoint by the file's count", || {
        checkpoint_sizes(&s).last() == Some(&size)
    });
    let (_, head) = s.get("/v1/audit/head", Some(&s.auditor));
    let key = ::audit::VerifierKey::parse(&made).unwrap();
    let signed =
        ::audit::open_checkpoint(head["checkpoint"]["note"].as_str().unwrap(), &key).unwrap();
    assert_eq!(signed.size, size);
    // A key file others may read is refused at start, with one line.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = casetrail(
        &s.data(),
        &["audit", "key", "--audit-key", key_file.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out)
    );
}
