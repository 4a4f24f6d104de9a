//! The report commands through the real binary: `check-report` on Kon Tum's published table (offline, against the
//! log, and through a server with `--url`), and `report --form` on the same quarter (docs/reports.md).

use super::{casetrail, stderr, stdout};
use std::io::Write;

/// A data directory holding Kon Tum's first quarter of 2023 (`generator::published`), imported as `casetrail
/// export` writes events; and the published table beside it.
fn kon_tum(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let file = dir.join("kon-tum.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for e in generator::published::kon_tum_2023_q1() {
        out.write_all(&e.canonical_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
    }
    drop(out);
    let data = dir.join("data");
    let imported = casetrail(&data, &["import", file.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let table = dir.join("published.csv");
    std::fs::write(&table, generator::published::KON_TUM_2023_Q1_CSV).unwrap();
    (data, table)
}

#[test]
fn check_report_and_the_form_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (data, table) = kon_tum(dir.path());
    let table = table.to_str().unwrap();

    // The table alone: the slip named, exit 3.
    let alone = casetrail(&dir.path().join("nowhere"), &["check-report", table]);
    assert_eq!(alone.status.code(), Some(3), "{}", stderr(&alone));
    let text = stdout(&alone);
    assert!(
        text.contains("online rate 37.76 %: A SLIP, the counts give 37.20 %"),
        "{text}"
    );
    assert!(text.contains("online rate 13.05 %: reproduced as 3399 / 26030 over new + carried over, truncated (profile kon-tum)"), "{text}");
    assert!(text.contains("most consistent profile: kon-tum"), "{text}");
    assert!(
        !dir.path().join("nowhere").exists(),
        "checking a table alone opens no data directory"
    );

    // Against the log: the counts are casetrail's (the profile's own cut, the 15th, is used).
    let against = casetrail(
        &data,
        &[
            "check-report",
            table,
            "--period",
            "2023-Q1",
            "--format",
            "json",
        ],
    );
    assert_eq!(against.status.code(), Some(3), "{}", stderr(&against));
    let report: serde_json::Value = serde_json::from_str(&stdout(&against)).unwrap();
    assert_eq!(
        (
            report["slips"].as_u64(),
            report["counts_differing"].as_u64()
        ),
        (Some(1), Some(0)),
        "{report}"
    );
    assert!(report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["against_log"].as_array().is_some_and(|c| !c.is_empty())));

    // The form by level under Kon Tum's profile: the published counts (offline here, through the server below).
    let args = [
        "report",
        "--period",
        "2023-Q1",
        "--form",
        "--by",
        "level",
        "--profile",
        "kon-tum",
        "--format",
        "csv",
        "--lang",
        "en",
    ];
    let offline = casetrail(&data, &args);
    assert!(offline.status.success(), "{}", stderr(&offline));
    let csv = stdout(&offline);
    let total = csv.lines().find(|l| l.contains(",Total,")).unwrap();
    assert!(
        total.starts_with(",Total,56039,12516,38613,4910,"),
        "{total}"
    );
    // Rows by procedure field: no offer of this log names a field, so every dossier is on the line "field not
    // given" of its level, and the total is the form's by level.
    let mut by_field_args = args;
    by_field_args[5] = "field";
    let field = casetrail(&data, &by_field_args);
    assert!(field.status.success(), "{}", stderr(&field));
    let by_field = stdout(&field);
    assert!(by_field.contains(",Field not given,"), "{by_field}");
    let field_total = by_field.lines().find(|l| l.contains(",Total,")).unwrap();
    assert_eq!(field_total, total);

    // The same through a running server.
    let (_server, base) = super::common::spawn(&data, &[]);
    let remote = casetrail(
        &data,
        &[
            "check-report",
            table,
            "--period",
            "2023-Q1",
            "--format",
            "json",
            "--url",
            &base,
        ],
    );
    assert_eq!(remote.status.code(), Some(3), "{}", stderr(&remote));
    let remote: serde_json::Value = serde_json::from_str(&stdout(&remote)).unwrap();
    assert_eq!(remote, report, "offline and remote answer alike");

    // A table that adds up and prints its rates right is clean: exit 0.
    let right = dir.path().join("right.csv");
    std::fs::write(
        &right,
        generator::published::KON_TUM_2023_Q1_CSV.replace("\"37,76\"", "\"37,20\""),
    )
    .unwrap();
    let clean = casetrail(
        &data,
        &["check-report", right.to_str().unwrap(), "--url", &base],
    );
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));

    let mut with_url = args.to_vec();
    with_url.extend(["--url", &base]);
    let remote = casetrail(&data, &with_url);
    assert!(remote.status.success(), "{}", stderr(&remote));
    assert_eq!(stdout(&remote), csv, "the server's form is the offline one");
}

/// `check-report -` reads stdin, copied to an unnamed file in TMPDIR (the check reads its table twice and holds
/// none of it): the answer is the file's, text and JSON, exit code included; a TMPDIR without room for the copy is
/// named, and nothing is answered (here a 64 KiB tmpfs, in a mount namespace of the test's own, as root).
#[test]
fn check_report_reads_stdin_as_it_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (header, body) = generator::published::KON_TUM_2023_Q1_CSV
        .split_once('\n')
        .unwrap();
    let table = dir.path().join("published.csv");
    std::fs::write(&table, format!("{header}\n{}", body.repeat(2000))).unwrap();
    assert!(std::fs::metadata(&table).unwrap().len() > 100 << 10);
    let nowhere = dir.path().join("nowhere");
    for format in ["text", "json"] {
        let args = ["check-report", table.to_str().unwrap(), "--format", format];
        let from_file = casetrail(&nowhere, &args);
        let from_stdin = std::process::Command::new(super::BIN)
            .arg("--data")
            .arg(&nowhere)
            .args(["check-report", "-", "--format", format])
            .stdin(std::fs::File::open(&table).unwrap())
            .output()
            .unwrap();
        assert_eq!(from_file.status.code(), Some(3), "{}", stderr(&from_file));
        assert_eq!(from_stdin.status.code(), Some(3), "{}", stderr(&from_stdin));
        assert_eq!(stdout(&from_stdin), stdout(&from_file), "{format}");
    }
    // An answer that cannot be written (a full disk) is an error, not a clean exit; a closed pipe is not.
    let full = std::process::Command::new(super::BIN)
        .arg("--data")
        .arg(&nowhere)
        .args(["check-report", table.to_str().unwrap()])
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(1), "{}", stderr(&full));
    assert!(
        stderr(&full).contains("writing the answer: No space left"),
        "{}",
        stderr(&full)
    );
    // A directory given as the table is named in the error, as a missing file is.
    let given = casetrail(&nowhere, &["check-report", dir.path().to_str().unwrap()]);
    assert_eq!(given.status.code(), Some(1));
    assert!(
        stderr(&given).contains(&format!("{}: Is a directory", dir.path().display())),
        "{}",
        stderr(&given)
    );
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=64k tmpfs {small} && TMPDIR={small} {b} --data {n} check-report - < {t}",
            small = small.display(),
            b = super::BIN,
            n = nowhere.display(),
            t = table.display(),
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("TMPDIR is full"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}
