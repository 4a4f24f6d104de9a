//! End-to-end tests of the `casetrail` binary: real processes, real data directories.

mod cli;
mod crash;
mod dashboard;
mod http;

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_casetrail");

/// Runs `casetrail --data DIR args…` to completion.
pub fn casetrail(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("casetrail runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exported log: (position, id, the whole JSON) per line.
pub fn export(data: &Path) -> Vec<(u64, String, serde_json::Value)> {
    let out = casetrail(data, &["export"]);
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("export is NDJSON");
            (
                v["position"].as_u64().unwrap(),
                v["id"].as_str().unwrap().to_owned(),
                v,
            )
        })
        .collect()
}
