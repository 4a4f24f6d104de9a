//! `casetrail bench nodes`: durable appends over HTTP with the log on sled, on PostgreSQL with one node and with
//! two nodes on one database, and the bare PostgreSQL events table of `scripts/bench-postgres` driven by pgbench,
//! all in one run against one private cluster, the setups alternating round by round; then the follower lag
//! between two nodes (acknowledged on one → the other's head has it).

use super::http::{load, load_token, serve, Measured, Server};
use crate::cmd::Result;
use pglog::cluster::{Cluster, Options, PG_BIN};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The bare table and what pgbench inserts into it: `scripts/bench-postgres`'s, as a Marten or cqrs-es user makes it.
const SCHEMA: &str = "CREATE TABLE events (position bigserial PRIMARY KEY, id uuid NOT NULL UNIQUE, \
    stream text NOT NULL, version bigint NOT NULL, type text NOT NULL, agency text, occurred_at timestamptz NOT NULL, \
    recorded_at timestamptz NOT NULL DEFAULT now(), source text NOT NULL, payload jsonb NOT NULL, UNIQUE (stream, version))";
const DATA: &str = r#"'{"procedure": "1.001234", "channel": "online", "online_level": "level4"}'"#;

fn pgbench_script(batch: usize) -> String {
    if batch == 1 {
        format!(
            "\\set r random(1, 9000000000000000000)\nINSERT INTO events (id, stream, version, type, agency, occurred_at, source, payload) \
             VALUES (gen_random_uuid(), 'B-' || :client_id || '-' || :r, 1, 'dossier.received', '000.00.12.H27', now(), 'bench', {DATA});\n"
        )
    } else {
        format!(
            "\\set r random(1, 9000000000000000000)\nINSERT INTO events (id, stream, version, type, agency, occurred_at, source, payload) \
             SELECT gen_random_uuid(), 'B-' || :client_id || '-' || :r || '-' || g, 1, 'dossier.received', '000.00.12.H27', now(), 'bench', {DATA} \
             FROM generate_series(1, {batch}) AS g;\n"
        )
    }
}

/// pgbench against the bare table on a fresh database: transactions of `batch` rows from `clients` clients.
fn bare(
    cluster: &Cluster,
    name: &str,
    clients: usize,
    seconds: u64,
    batch: usize,
    dir: &Path,
) -> Result<Measured> {
    cluster.create_database(name)?;
    cluster.psql(name, SCHEMA)?;
    let script = dir.join(format!("{name}.sql"));
    std::fs::write(&script, pgbench_script(batch))?;
    let logs = dir.join(format!("{name}-log"));
    std::fs::create_dir_all(&logs)?;
    let started = Instant::now();
    let out = std::process::Command::new(Path::new(PG_BIN).join("pgbench"))
        .args([
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
        ])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-l",
        ])
        .arg(format!("--log-prefix={}", logs.join("tx").display()))
        .arg("-f")
        .arg(&script)
        .arg(name)
        .current_dir(&logs)
        .output()?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        return Err(format!("pgbench: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    // Each line of the per-transaction logs: client, transaction, latency in µs, …
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&logs)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|f| f.parse::<u64>().ok())
            {
                latencies.push(Duration::from_micros(us));
            }
        }
    }
    latencies.sort();
    Ok(Measured {
        latencies,
        failures: 0,
        elapsed: elapsed
            .min(Duration::from_secs(seconds))
            .max(Duration::from_secs(1)),
        batch,
    })
}

/// A log made for one setup: where it is, an admin token, and the nodes serving it.
struct Setup {
    bases: Vec<String>,
    token: String,
    _nodes: Vec<Server>,
}

fn sled_setup(dir: &Path) -> Result<Setup> {
    let data = dir.join("sled");
    let _ = std::fs::remove_dir_all(&data);
    let token = load_token(&store::SledLog::open(crate::cmd::scratch_config(&data))?)?;
    let (node, base) = serve(&[OsStr::new("--data"), data.as_os_str(), OsStr::new("serve")])?;
    Ok(Setup {
        bases: vec![base],
        token,
        _nodes: vec![node],
    })
}

fn pg_setup(cluster: &Cluster, name: &str, nodes: usize, dir: &Path, key: &Path) -> Result<Setup> {
    let url = cluster.create_database(name)?;
    let token = load_token(&pglog::PgLog::open(pglog::Config::new(url.clone()))?)?;
    let mut bases = Vec::new();
    let mut servers = Vec::new();
    for n in 0..nodes {
        let state = dir.join(format!("{name}-state-{n}"));
        let (node, base) = serve(&[
            OsStr::new("--data"),
            OsStr::new(&url),
            OsStr::new("--state"),
            state.as_os_str(),
            OsStr::new("serve"),
            OsStr::new("--audit-key"),
            key.as_os_str(),
        ])?;
        bases.push(base);
        servers.push(node);
    }
    Ok(Setup {
        bases,
        token,
        _nodes: servers,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 0 => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        n => v[n / 2],
    }
}

/// The setups, in the order each round runs them.
const SETUPS: [&str; 4] = [
    "sled, 1 node",
    "PostgreSQL, 1 node",
    "PostgreSQL, 2 nodes",
    "bare PostgreSQL table (pgbench)",
];

pub fn run(dir: &Path, seconds: u64, rounds: usize) -> Result<ExitCode> {
    let dir: PathBuf = dir.join(format!("casetrail-nodes-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cluster = Cluster::start(&Options {
        shared_buffers_mb: 512,
        ..Options::default()
    })?;
    let key = dir.join("audit.key");
    audit::SigningKey::load_or_create(&key, Some("bench.invalid/casetrail"))?;
    // (setup, workload) → per round: events/s, p50, p99.
    let mut figures: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); SETUPS.len() * 2];
    for round in 0..rounds.max(1) {
        for (s, setup) in SETUPS.iter().enumerate() {
            for (w, (connections, batch)) in [(64usize, 1usize), (16, 500)].into_iter().enumerate()
            {
                let name = format!("r{round}s{s}w{w}");
                let m = match s {
                    0 => {
                        let setup = sled_setup(&dir)?;
                        load(&setup.bases, &setup.token, connections, seconds, batch)?
                    }
                    1 | 2 => {
                        let setup = pg_setup(&cluster, &name, s, &dir, &key)?;
                        load(&setup.bases, &setup.token, connections, seconds, batch)?
                    }
                    _ => bare(&cluster, &name, connections, seconds, batch, &dir)?,
                };
                eprintln!(
                    "round {round}: {setup}, {connections} × {batch}: {:.0} events/s, p50 {:.1} ms, p99 {:.1} ms, {} failed",
                    m.events_per_sec(),
                    m.p(0.5),
                    m.p(0.99),
                    m.failures
                );
                figures[s * 2 + w].push((m.events_per_sec(), m.p(0.5), m.p(0.99)));
                cluster.psql(
                    "postgres",
                    &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                )?;
            }
        }
    }
    let lag = follower_lag(&cluster, &dir, &key)?;
    println!(
        "| setup | 64 × 1 event: events/s | p50 / p99 | 16 × 500 events: events/s | p50 / p99 |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let med = |i: usize, k: usize| median(figures[i].iter().map(|f| [f.0, f.1, f.2][k]).collect());
    for (s, setup) in SETUPS.iter().enumerate() {
        println!(
            "| {setup} | {:.0} | {:.1} / {:.1} ms | {:.0} | {:.0} / {:.0} ms |",
            med(s * 2, 0),
            med(s * 2, 1),
            med(s * 2, 2),
            med(s * 2 + 1, 0),
            med(s * 2 + 1, 1),
            med(s * 2 + 1, 2)
        );
    }
    let ratio = |a: usize, b: usize| med(a, 0) / med(b, 0).max(1e-9);
    println!(
        "\nratios of the medians: PostgreSQL 1 node / bare table: singles {:.2}, batches {:.2}; 2 nodes / 1 node: singles {:.2}, batches {:.2}; PostgreSQL 1 node / sled: singles {:.2}, batches {:.2}",
        ratio(2, 6),
        ratio(3, 7),
        ratio(4, 2),
        ratio(5, 3),
        ratio(2, 0),
        ratio(3, 1)
    );
    println!(
        "follower lag (acknowledged on one node → the other node's head has it), {} samples with no other load: p50 {:.1} ms, p99 {:.1} ms",
        lag.len(),
        lag[lag.len() / 2].as_secs_f64() * 1e3,
        lag[(lag.len() - 1) * 99 / 100].as_secs_f64() * 1e3
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

/// Posts single events to one node and times until the other node's head (`/v1/audit/head`, which reports the
/// node's own head, not the database's) reaches the acknowledged position.
fn follower_lag(cluster: &Cluster, dir: &Path, key: &Path) -> Result<Vec<Duration>> {
    let setup = pg_setup(cluster, "lag", 2, dir, key)?;
    let client = reqwest::blocking::Client::new();
    let mut lags = Vec::new();
    for n in 0..300 {
        let body = format!(
            r#"{{"id":"{}","type":"dossier.received","dossier":"LAG-{n}","agency":"000.00.12.H27","occurred_at":"2019-03-12T08:30:00+07:00","data":{{"procedure":"1.001234","channel":"counter"}}}}"#,
            uuid::Uuid::now_v7()
        );
        let answer: serde_json::Value = client
            .post(format!("{}/v1/events", setup.bases[0]))
            .bearer_auth(&setup.token)
            .header("content-type", "application/json")
            .body(body)
            .send()?
            .json()?;
        let acknowledged = Instant::now();
        let position = answer[0]["position"]
            .as_u64()
            .ok_or("no position in the answer")?;
        loop {
            let head: serde_json::Value = client
                .get(format!("{}/v1/audit/head", setup.bases[1]))
                .bearer_auth(&setup.token)
                .send()?
                .json()?;
            if head["size"].as_u64().unwrap_or(0) >= position {
                lags.push(acknowledged.elapsed());
                break;
            }
            if acknowledged.elapsed() > Duration::from_secs(10) {
                return Err("the second node did not learn of a commit within 10 s".into());
            }
        }
    }
    lags.sort();
    Ok(lags)
}
