//! `casetrail bench http`: a load generator against the real server on loopback.

use crate::cmd::Result;
use std::io::BufRead;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::SledLog;

const AGENCY: &str = "000.00.12.H27";

/// One request's body: `batch` new dossiers for client `client`, request number `n`.
fn body(client: usize, n: u64, batch: usize) -> String {
    let mut out = String::with_capacity(batch * 300 + 2);
    out.push('[');
    for i in 0..batch {
        if i > 0 {
            out.push(',');
        }
        let id = uuid::Uuid::now_v7();
        out.push_str(&format!(
            r#"{{"id":"{id}","type":"dossier.received","dossier":"L{client}-{n}-{i}","agency":"{AGENCY}","occurred_at":"2019-03-12T08:30:00+07:00","data":{{"procedure":"1.001234","channel":"online","online_level":"level4","due_at":"2019-03-19T17:00:00+07:00"}}}}"#
        ));
    }
    out.push(']');
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(under: &Path, connections: usize, seconds: u64, batch: usize) -> Result<ExitCode> {
    if batch == 0 || batch > domain::parse::BATCH_EVENTS_MAX {
        return Err("--batch is 1 to 1,000 events".into());
    }
    let dir = under.join(format!("casetrail-load-{}", std::process::id()));
    let data = dir.join("data");
    // Credentials first, while no server holds the directory.
    let token = load_token(&SledLog::open(crate::cmd::scratch_config(&data))?)?;
    let (child, base) = serve(&[
        std::ffi::OsStr::new("--data"),
        data.as_os_str(),
        std::ffi::OsStr::new("serve"),
    ])?;

    let outcome = load(&[base], &token, connections, seconds, batch);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    let m = outcome?;
    println!("| measure | value |\n| --- | --- |");
    println!("| connections × events per request | {connections} × {batch} |");
    println!("| acknowledged requests/s | {:.0} |", m.requests_per_sec());
    println!("| acknowledged events/s | {:.0} |", m.events_per_sec());
    println!(
        "| latency p50 / p99 / max | {:.1} ms / {:.1} ms / {:.1} ms |",
        m.p(0.50),
        m.p(0.99),
        m.p(1.0)
    );
    println!("| failed requests | {} |", m.failures);
    Ok(ExitCode::SUCCESS)
}

/// An admin token named `load`, made in `log` before any server holds it.
pub fn load_token(log: &dyn store::Store) -> Result<String> {
    Ok(app::tokens::issue(
        log,
        "load".into(),
        domain::Role::Admin,
        None,
        chrono::Utc::now(),
    )
    .map_err(crate::cmd::explain)?
    .token)
}

/// What one load run measured.
pub struct Measured {
    /// Latencies of the acknowledged requests, sorted.
    pub latencies: Vec<Duration>,
    pub failures: u64,
    pub elapsed: Duration,
    pub batch: usize,
    /// Busy CPU time of the whole machine during the run (every process: the servers, the database, the load
    /// generator), from `/proc/stat`; `None` where it cannot be read.
    pub cpu_busy: Option<Duration>,
    /// Where that CPU time went, by process (filled in by the caller that knows the processes).
    pub breakdown: Vec<(String, Duration)>,
}

/// The machine's busy CPU time so far (user, nice, system, irq, softirq, steal of every CPU), from `/proc/stat`.
pub fn cpu_busy_now() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal …; the clock ticks are 100 a second on Linux.
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    Some(Duration::from_millis(busy * 10))
}

/// The CPU time taken between two readings of [`cpu_busy_now`].
pub fn cpu_since(before: Option<Duration>) -> Option<Duration> {
    Some(cpu_busy_now()?.saturating_sub(before?))
}

impl Measured {
    pub fn requests_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn events_per_sec(&self) -> f64 {
        self.requests_per_sec() * self.batch as f64
    }

    /// Busy CPU time of the machine per acknowledged event, in microseconds.
    pub fn cpu_us_per_event(&self) -> Option<f64> {
        self.cpu_busy.map(|c| self.us_per_event(c))
    }

    /// `time` per acknowledged event, in microseconds.
    pub fn us_per_event(&self, time: Duration) -> f64 {
        let events = (self.latencies.len() * self.batch).max(1) as f64;
        time.as_secs_f64() * 1e6 / events
    }

    /// The share of the machine's CPUs that was busy during the run.
    pub fn cpu_share(&self) -> Option<f64> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        self.cpu_busy
            .map(|c| c.as_secs_f64() / (self.elapsed.as_secs_f64() * cpus))
    }

    /// The latency at quantile `q`, in milliseconds.
    pub fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies, q).as_secs_f64() * 1e3
    }
}

/// `connections` clients posting `batch` new dossiers per request for `seconds`, client `c` to `bases[c % n]`.
pub fn load(
    bases: &[String],
    token: &str,
    connections: usize,
    seconds: u64,
    batch: usize,
) -> Result<Measured> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let urls: Vec<Arc<String>> = bases
            .iter()
            .map(|b| Arc::new(format!("{b}/v1/events")))
            .collect();
        let token = Arc::new(token.to_owned());
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let (client, url, token) =
                    (client.clone(), urls[c % urls.len()].clone(), token.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut failures = 0u64;
                    let mut n = 0;
                    while Instant::now() < deadline {
                        n += 1;
                        let body = body(c, n, batch);
                        let started = Instant::now();
                        let resp = client
                            .post(url.as_str())
                            .bearer_auth(token.as_str())
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await;
                        match resp {
                            Ok(r) if r.status().as_u16() == 201 => {
                                let _ = r.bytes().await;
                                latencies.push(started.elapsed());
                            }
                            _ => failures += 1,
                        }
                    }
                    (latencies, failures)
                })
            })
            .collect();
        let started = Instant::now();
        let cpu = cpu_busy_now();
        let mut latencies = Vec::new();
        let mut failures = 0;
        for t in tasks {
            let (l, f) = t.await?;
            latencies.extend(l);
            failures += f;
        }
        latencies.sort();
        Ok::<_, Box<dyn std::error::Error>>(Measured {
            latencies,
            failures,
            elapsed: started.elapsed(),
            batch,
            cpu_busy: cpu_since(cpu),
            breakdown: Vec::new(),
        })
    })
}

/// Starts `casetrail <args> --listen 127.0.0.1:0` (args ending in `serve` and its flags) and returns it with the
/// address it listens on.
pub fn serve(args: &[&std::ffi::OsStr]) -> Result<(Server, String)> {
    let mut child = Server(
        std::process::Command::new(std::env::current_exe()?)
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.as_mut().expect("piped")).read_line(&mut line)?;
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or("the server did not start")?
        .to_owned();
    Ok((child, base))
}

/// The server under load, stopped gracefully (SIGTERM, then reaped) however the benchmark ends, an error
/// included: it must not outlive the command that started it.
pub struct Server(std::process::Child);

impl Server {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// User and system CPU time that process `pid` has used so far (its threads included), from `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based over the whole line).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The CPU time used so far by every running process called `name` (PostgreSQL's postmaster and backends).
pub fn processes_cpu(name: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .filter_map(process_cpu)
        .sum()
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}
