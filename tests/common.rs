//! Helpers shared by the test binaries (`it` and `load`): running the binary, starting a server, and the guard
//! that ends every process a test starts. Each binary uses some of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_casetrail");

/// Raises this process's file-descriptor limit to its hard ceiling: a test that holds a thousand sockets or more
/// must not run out of descriptors itself.
pub fn raise_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Runs `casetrail --data DIR args…` to completion.
pub fn casetrail(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("casetrail runs")
}

pub fn token(data: &Path, name: &str, role: &str, agency: Option<&str>) -> String {
    created_token(casetrail(data, &token_args(name, role, agency)))
}

/// The arguments of `casetrail token create`.
pub fn token_args<'a>(name: &'a str, role: &'a str, agency: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["token", "create", "--name", name, "--role", role];
    if let Some(a) = agency {
        args.extend(["--agency", a]);
    }
    args
}

/// The token `casetrail token create` printed, insisting that it succeeded.
pub fn created_token(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

/// Starts `casetrail serve` on a data directory and returns the base URL once it listens.
pub fn spawn(data: &Path, extra: &[&str]) -> (Proc, String) {
    let mut child = Proc::spawn(
        Command::new(BIN)
            .arg("--data")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (child, base)
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
