//! Upgrading older data directories, kept as fixtures written by the older binaries with
//! `scripts/make-old-fixture` (which also recorded what those binaries answered): format 1
//! (`tests/fixtures/format1.tar.gz`) and format 2's first layout, which stored every audit hash
//! (`tests/fixtures/format2-dense.tar.gz`). Every command but `upgrade` refuses them in one line naming the
//! command to run; `upgrade` rewrites format 1 beside and converts the first layout in place; afterwards the
//! export, the audit root, the credentials, the signed checkpoints, an indicator report and a dossier's bundle are
//! what the older binary gave.

use super::{casetrail, stderr, stdout};
use std::path::Path;

fn unpack(into: &Path, name: &str) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(format!("{name}.tar.gz"));
    let out = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", stderr(&out));
}

fn expected(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("expected").join(name)).unwrap()
}

#[test]
fn a_format_1_directory_is_upgraded_with_everything_it_answered() {
    let dir = tempfile::tempdir().unwrap();
    unpack(dir.path(), "format1");
    let data = dir.path().join("format1");
    every_other_command_refuses(&data, "format 1");

    // What an upgrade killed while building leaves beside: discarded by the next attempt.
    let leftover = dir.path().join("format1.upgrading");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("db"), b"half-written").unwrap();
    let out = casetrail(&data, &["upgrade"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("(unchanged)"), "{}", stdout(&out));
    let kept = dir.path().join("format1.format1");
    assert!(kept.join("db").exists(), "format 1 kept beside");
    assert!(!leftover.exists());
    // The signing key is copied, not moved: the old directory stays whole.
    assert_eq!(
        std::fs::read(data.join("audit-signing.key")).unwrap(),
        std::fs::read(kept.join("audit-signing.key")).unwrap()
    );
    // An upgrade stopped between its two renames (the old log moved aside, the new one not yet in place): every
    // other command refuses rather than start an empty log there, and running the upgrade again finishes it.
    std::fs::rename(&data, &leftover).unwrap();
    let refused = casetrail(&data, &["stats"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("stopped halfway"),
        "{}",
        stderr(&refused)
    );
    assert!(!data.exists(), "a refused command made the directory");
    let out = casetrail(&data, &["upgrade"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("finished the upgrade"),
        "{}",
        stdout(&out)
    );
    assert!(data.join("db").exists() && !leftover.exists());
    answers_as_before(dir.path(), &data);

    // A second upgrade has nothing to do.
    let again = casetrail(&data, &["upgrade"]);
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("already in format 2"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn format_2s_first_layout_is_converted_in_place_with_everything_it_answered() {
    let dir = tempfile::tempdir().unwrap();
    unpack(dir.path(), "format2-dense");
    let data = dir.path().join("format2-dense");
    every_other_command_refuses(&data, "format 2's first layout");
    // Dense hashes missing at the end (that layout's open refused such a directory after a crash, naming
    // `rebuild-indexes`): nothing to compare with, the events are the truth, and the conversion goes on.
    on_log_tree(&data, |log| {
        let last = log.scan_prefix(b"h").keys().last().unwrap().unwrap();
        log.remove(last).unwrap();
    });
    let out = casetrail(&data, &["upgrade"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("converted") && stdout(&out).contains("(unchanged)"),
        "{}",
        stdout(&out)
    );
    answers_as_before(dir.path(), &data);
    // The dense hashes are gone; a conversion stopped after setting the marker leaves some, which the next open
    // that may write removes.
    let dense_keys = |data: &Path| on_log_tree(data, |log| log.scan_prefix(b"h").count());
    assert_eq!(dense_keys(&data), 0);
    on_log_tree(&data, |log| {
        let mut key = vec![b'h'];
        key.extend_from_slice(&7u64.to_be_bytes());
        log.insert(key, vec![0u8; 64]).unwrap();
    });
    assert_eq!(dense_keys(&data), 1);
    assert!(casetrail(&data, &["stats"]).status.success());
    assert_eq!(dense_keys(&data), 0);
    let again = casetrail(&data, &["upgrade"]);
    assert!(
        stdout(&again).contains("already in format 2"),
        "{}",
        stdout(&again)
    );
}

/// Runs `f` on the `log` tree of the data directory, flushed, and waits until sled lets go of its lock.
fn on_log_tree<T>(data: &Path, f: impl FnOnce(&sled::Tree) -> T) -> T {
    let db = sled::open(data).unwrap();
    let out = f(&db.open_tree("log").unwrap());
    db.flush().unwrap();
    drop(db);
    std::thread::sleep(std::time::Duration::from_millis(600)); // sled's flusher lets go of the lock
    out
}

/// Any command but `upgrade` says in one line what to run, and changes nothing.
fn every_other_command_refuses(data: &Path, format: &str) {
    let before = std::fs::read(data.join("db")).unwrap();
    for args in [&["stats"][..], &["export"], &["verify"], &["token", "list"]] {
        let out = casetrail(data, args);
        assert!(!out.status.success(), "{args:?} on {format} succeeded");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            err.contains(format) && err.contains("upgrade"),
            "{args:?}: {err}"
        );
    }
    assert!(
        std::fs::read(data.join("db")).unwrap() == before,
        "a refused command wrote"
    );
}

/// The same events, byte for byte; the same root; the same credentials; the same answers as the older binary
/// recorded in `dir/expected`.
fn answers_as_before(dir: &Path, data: &Path) {
    let data = data.to_path_buf();
    // The same events, byte for byte; the same root; the same credentials; the same answers.
    let export = casetrail(&data, &["export"]);
    assert!(export.status.success(), "{}", stderr(&export));
    assert!(
        stdout(&export) == expected(dir, "export.ndjson"),
        "the export differs"
    );
    let stats = stdout(&casetrail(&data, &["stats"]));
    let root = stats.lines().find(|l| l.starts_with("audit root")).unwrap();
    assert_eq!(format!("{root}\n"), expected(dir, "root.txt"));
    assert_eq!(
        stdout(&casetrail(&data, &["token", "list"])),
        expected(dir, "tokens.txt")
    );
    let report = casetrail(
        &data,
        &[
            "report", "--period", "2019", "--group", "level", "--lang", "en",
        ],
    );
    // The table and the position and root it was computed at; not the moment it was computed. Tables now name
    // their report profile (a first line, and the stamp): the default, national, whose table is the older one's.
    let uncomputed = |t: &str| t.split(" · computed").next().unwrap().to_owned();
    let now = stdout(&report);
    assert!(now.contains(" · root "), "{}", stderr(&report));
    let (named, table) = now.split_once('\n').unwrap();
    assert!(named.starts_with("Profile: national ("), "{named}");
    assert!(table.contains(" · profile national · computed "), "{table}");
    assert_eq!(
        uncomputed(&table.replace(" · profile national", "")),
        uncomputed(&expected(dir, "report.txt"))
    );
    // A dossier's bundle: its events, their proofs, and the checkpoint format 1 signed at the head, kept.
    let expected_bundle: serde_json::Value =
        serde_json::from_str(&expected(dir, "bundle.json")).unwrap();
    let bundle = casetrail(
        &data,
        &[
            "audit",
            "bundle",
            expected_bundle["dossier"].as_str().unwrap(),
        ],
    );
    assert!(bundle.status.success(), "{}", stderr(&bundle));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&bundle)).unwrap(),
        expected_bundle
    );

    // Both checkpoints format 1 signed are kept and still match the log.
    let verify = stdout(&casetrail(&data, &["verify"]));
    assert!(
        verify.starts_with("ok: ")
            && verify.contains("2 stored checkpoints signed with the data directory's key"),
        "{verify}"
    );
}
