//! End-to-end tests of the `casetrail` binary: real processes, real data directories.

mod cli;
#[path = "../common.rs"]
mod common;
mod crash;
mod dashboard;
mod http;
mod reports;
mod upgrade;

pub use common::{casetrail, marked, processes_in, Proc, BIN};
mod postgres;
mod procs;

use std::path::Path;
use std::process::Output;

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
