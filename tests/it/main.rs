//! End-to-end tests of the `casetrail` binary: real processes, real data directories.

mod cli;
#[path = "../common.rs"]
mod common;
mod crash;
mod dashboard;
mod http;
mod procs;

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

/// Every process a test starts, ended when the test ends: dropping the guard (on success, failure or panic alike)
/// kills the child's whole process group and then any process that still carries the guard's mark in its
/// environment (inherited by every descendant, even one that left the group, as a browser may), and reaps the
/// child. `std::process::Child` alone does neither: a panicking test would leave its server running.
pub struct Proc {
    child: std::process::Child,
    mark: String,
}

/// The environment variable that marks a guarded process and its descendants.
pub const MARK: &str = "CASETRAIL_TEST_GUARD";

impl Proc {
    /// Spawns `command` in a process group of its own, marked.
    pub fn spawn(command: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mark = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let child = command
            .env(MARK, &mark)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
        Proc { child, mark }
    }

    /// The mark its descendants carry.
    pub fn mark(&self) -> &str {
        &self.mark
    }
}

impl std::ops::Deref for Proc {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.child
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.child
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The group is signalled only while its leader is unreaped: a reaped leader's number may be reused.
        if matches!(self.child.try_wait(), Ok(None)) {
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (pid, _) in marked(&self.mark) {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Live processes (zombies aside) whose environment carries `mark`, with their command lines.
pub fn marked(mark: &str) -> Vec<(u32, String)> {
    let needle = format!("{MARK}={mark}\0");
    live_processes()
        .filter(|(pid, _)| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// Live processes whose working directory or command line points into `dir`.
pub fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    live_processes()
        .filter(|(pid, cmdline)| {
            cmdline.contains(&needle)
                || std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Every process but zombies (which have ended and only wait to be reaped), with its command line.
fn live_processes() -> impl Iterator<Item = (u32, String)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let state = stat[stat.rfind(')')? + 2..].chars().next()?;
            if state == 'Z' || state == 'X' {
                return None;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
}
