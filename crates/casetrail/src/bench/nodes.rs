//! `casetrail bench nodes`: durable appends over HTTP with the log on sled, on PostgreSQL with one node and with
//! two nodes on one database, and the bare PostgreSQL events table of `scripts/bench-postgres` driven by pgbench,
//! all in one run against one private cluster, the setups alternating round by round; then the follower lag
//! between two nodes (acknowledged on one → the other's head has it).

use super::http::{
    cpu_busy_now, cpu_since, load, load_token, process_cpu, processes_cpu, serve, Measured, Server,
};
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
    let cpu = cpu_busy_now();
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
    let cpu_busy = cpu_since(cpu);
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
        cpu_busy,
        breakdown: Vec::new(),
    })
}

/// A log made for one setup: where it is, an admin token, and the nodes serving it.
struct Running {
    bases: Vec<String>,
    token: String,
    nodes: Vec<Server>,
}

fn sled_setup(dir: &Path) -> Result<Running> {
    let data = dir.join("sled");
    let _ = std::fs::remove_dir_all(&data);
    let token = load_token(&store::SledLog::open(crate::cmd::scratch_config(&data))?)?;
    let (node, base) = serve(&[OsStr::new("--data"), data.as_os_str(), OsStr::new("serve")])?;
    Ok(Running {
        bases: vec![base],
        token,
        nodes: vec![node],
    })
}

/// `nodes` nodes on a new database, with `--advertise advertise` (`off`: each writes its own batches; `auto`: one
/// elected writer takes them all), once every node knows the writer.
fn pg_setup(
    cluster: &Cluster,
    name: &str,
    nodes: usize,
    dir: &Path,
    key: &Path,
    advertise: &str,
) -> Result<Running> {
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
            OsStr::new("--advertise"),
            OsStr::new(advertise),
        ])?;
        bases.push(base);
        servers.push(node);
    }
    if advertise != "off" {
        // The first node elects itself at its first listener round; the others learn it within a poll.
        let deadline = Instant::now() + Duration::from_secs(10);
        while cluster.psql(name, "SELECT count(*) FROM log_writer")? != "1" {
            if Instant::now() > deadline {
                return Err("no writer was elected within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(600));
    }
    Ok(Running {
        bases,
        token,
        nodes: servers,
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

/// What one setup runs on.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sled,
    /// casetrail on PostgreSQL with this many nodes, each taking its share of the clients.
    Nodes(usize),
    /// This many nodes with one elected writer: every other node hands it the batches it takes.
    Elected(usize),
    /// pgbench on the bare table.
    Bare,
}

/// A setup of the benchmark: its key for `--only`, what it runs on, and whether the primary has a synchronous
/// standby (a fresh one for each run, made with `pg_basebackup` and dropped after).
#[derive(Clone, Copy)]
struct Setup {
    key: &'static str,
    kind: Kind,
    standby: bool,
}

/// The setups, in the order each round runs them.
const SETUPS: [Setup; 11] = [
    Setup {
        key: "sled",
        kind: Kind::Sled,
        standby: false,
    },
    Setup {
        key: "pg1",
        kind: Kind::Nodes(1),
        standby: false,
    },
    Setup {
        key: "pg2",
        kind: Kind::Nodes(2),
        standby: false,
    },
    Setup {
        key: "pg4",
        kind: Kind::Nodes(4),
        standby: false,
    },
    Setup {
        key: "pg2-elected",
        kind: Kind::Elected(2),
        standby: false,
    },
    Setup {
        key: "pg4-elected",
        kind: Kind::Elected(4),
        standby: false,
    },
    Setup {
        key: "bare",
        kind: Kind::Bare,
        standby: false,
    },
    Setup {
        key: "pg1-sync",
        kind: Kind::Nodes(1),
        standby: true,
    },
    Setup {
        key: "pg2-sync",
        kind: Kind::Nodes(2),
        standby: true,
    },
    Setup {
        key: "pg4-sync",
        kind: Kind::Nodes(4),
        standby: true,
    },
    Setup {
        key: "bare-sync",
        kind: Kind::Bare,
        standby: true,
    },
];

/// The keys `--only` takes.
pub const SETUP_KEYS: &str =
    "sled, pg1, pg2, pg4, pg2-elected, pg4-elected, bare, pg1-sync, pg2-sync, pg4-sync, bare-sync";

impl Setup {
    fn name(&self) -> String {
        let on = match self.kind {
            Kind::Sled => "sled, 1 node".to_owned(),
            Kind::Nodes(1) => "PostgreSQL, 1 node".to_owned(),
            Kind::Nodes(n) => format!("PostgreSQL, {n} nodes"),
            Kind::Elected(n) => format!("PostgreSQL, {n} nodes, one writer"),
            Kind::Bare => "bare PostgreSQL table (pgbench)".to_owned(),
        };
        if self.standby {
            format!("{on}, synchronous standby")
        } else {
            on
        }
    }
}

/// One run of one setup and workload, on a fresh log (and a fresh standby when the setup has one).
fn measure(
    cluster: &Cluster,
    setup: &Setup,
    name: &str,
    (connections, batch): (usize, usize),
    seconds: u64,
    dir: &Path,
    key: &Path,
) -> Result<Measured> {
    let standby = if setup.standby {
        let standby = cluster.standby("bench")?;
        cluster.make_synchronous("bench")?;
        Some(standby)
    } else {
        None
    };
    let m = match setup.kind {
        Kind::Sled => {
            let s = sled_setup(dir)?;
            load(&s.bases, &s.token, connections, seconds, batch)
        }
        Kind::Nodes(n) | Kind::Elected(n) => {
            let advertise = if setup.kind == Kind::Elected(n) {
                "auto"
            } else {
                "off"
            };
            let s = pg_setup(cluster, name, n, dir, key, advertise)?;
            let pids: Vec<u32> = s.nodes.iter().map(Server::pid).collect();
            let each = || {
                let mut cpu: Vec<Duration> = pids
                    .iter()
                    .map(|&p| process_cpu(p).unwrap_or_default())
                    .collect();
                cpu.push(processes_cpu("postgres"));
                cpu.push(process_cpu(std::process::id()).unwrap_or_default());
                cpu
            };
            let before = each();
            let mut m = load(&s.bases, &s.token, connections, seconds, batch)?;
            let after = each();
            let names = (0..n)
                .map(|i| format!("node {}", i + 1))
                .chain(["PostgreSQL".to_owned(), "load".to_owned()]);
            m.breakdown = names
                .zip(after.iter().zip(&before).map(|(a, b)| a.saturating_sub(*b)))
                .collect();
            Ok(m)
        }
        Kind::Bare => bare(cluster, name, connections, seconds, batch, dir),
    };
    if let Some(standby) = standby {
        drop(standby);
        cluster.forget_standby("bench")?;
    }
    cluster.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    )?;
    m
}

pub fn run(dir: &Path, seconds: u64, rounds: usize, only: &[String]) -> Result<ExitCode> {
    let setups: Vec<Setup> = SETUPS
        .into_iter()
        .filter(|s| only.is_empty() || only.iter().any(|o| o == s.key))
        .collect();
    if let Some(unknown) = only
        .iter()
        .find(|o| o.as_str() != "lag" && !SETUPS.iter().any(|s| s.key == o.as_str()))
    {
        return Err(format!("no setup {unknown:?}; the setups are {SETUP_KEYS}, and lag").into());
    }
    let dir: PathBuf = dir.join(format!("casetrail-nodes-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cluster = Cluster::start(&Options {
        shared_buffers_mb: 512,
        ..Options::default()
    })?;
    let key = dir.join("audit.key");
    audit::SigningKey::load_or_create(&key, Some("bench.invalid/casetrail"))?;
    const WORKLOADS: [(usize, usize); 2] = [(64, 1), (16, 500)];
    // (setup, workload) → per round: events/s, p50, p99, µs of the machine's CPU per event.
    let mut figures: Vec<Vec<(f64, f64, f64, f64)>> = vec![Vec::new(); setups.len() * 2];
    for round in 0..rounds.max(1) {
        for (s, setup) in setups.iter().enumerate() {
            for (w, workload) in WORKLOADS.into_iter().enumerate() {
                let name = format!("r{round}s{s}w{w}");
                let m = measure(&cluster, setup, &name, workload, seconds, &dir, &key)?;
                eprintln!(
                    "round {round}: {}, {} × {}: {:.0} events/s, p50 {:.1} ms, p99 {:.1} ms, {} failed, CPUs {:.0} % busy, {:.0} µs of CPU per event",
                    setup.name(),
                    workload.0,
                    workload.1,
                    m.events_per_sec(),
                    m.p(0.5),
                    m.p(0.99),
                    m.failures,
                    m.cpu_share().unwrap_or(f64::NAN) * 100.0,
                    m.cpu_us_per_event().unwrap_or(f64::NAN)
                );
                if !m.breakdown.is_empty() {
                    let parts: Vec<String> = m
                        .breakdown
                        .iter()
                        .map(|(who, cpu)| format!("{who} {:.0}", m.us_per_event(*cpu)))
                        .collect();
                    eprintln!("  µs of CPU per event by process: {}", parts.join(", "));
                }
                figures[s * 2 + w].push((
                    m.events_per_sec(),
                    m.p(0.5),
                    m.p(0.99),
                    m.cpu_us_per_event().unwrap_or(0.0),
                ));
            }
        }
    }
    println!(
        "| setup | 64 × 1 event: events/s | p50 / p99 | CPU per event | 16 × 500 events: events/s | p50 / p99 | CPU per event |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let med =
        |i: usize, k: usize| median(figures[i].iter().map(|f| [f.0, f.1, f.2, f.3][k]).collect());
    for (s, setup) in setups.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.1} / {:.1} ms | {:.0} µs | {:.0} | {:.0} / {:.0} ms | {:.1} µs |",
            setup.name(),
            med(s * 2, 0),
            med(s * 2, 1),
            med(s * 2, 2),
            med(s * 2, 3),
            med(s * 2 + 1, 0),
            med(s * 2 + 1, 1),
            med(s * 2 + 1, 2),
            med(s * 2 + 1, 3)
        );
    }
    // Ratios of the medians, where both setups ran.
    let at = |key: &str| setups.iter().position(|s| s.key == key);
    let mut ratios = Vec::new();
    for (a, b, what) in [
        ("pg1", "bare", "PostgreSQL 1 node / bare table"),
        (
            "pg1-sync",
            "bare-sync",
            "with a synchronous standby, 1 node / bare table",
        ),
        ("pg2", "pg1", "2 nodes / 1 node"),
        ("pg4", "pg1", "4 nodes / 1 node"),
        ("pg2-elected", "pg1", "2 nodes with one writer / 1 node"),
        ("pg4-elected", "pg1", "4 nodes with one writer / 1 node"),
        (
            "pg2-elected",
            "pg2",
            "2 nodes, one writer / every node writing",
        ),
        (
            "pg1-sync",
            "pg1",
            "1 node with / without a synchronous standby",
        ),
        ("pg1", "sled", "PostgreSQL 1 node / sled"),
    ] {
        if let (Some(a), Some(b)) = (at(a), at(b)) {
            let r = |w: usize| med(a * 2 + w, 0) / med(b * 2 + w, 0).max(1e-9);
            ratios.push(format!("{what}: singles {:.2}, batches {:.2}", r(0), r(1)));
        }
    }
    if !ratios.is_empty() {
        println!("\nratios of the medians: {}", ratios.join("; "));
    }
    if only.is_empty() || only.iter().any(|o| o == "lag") {
        for busy in [false, true] {
            let lag = follower_lag(&cluster, &dir, &key, busy, seconds)?;
            let p =
                |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
            println!(
                "follower lag {}, {} samples: acknowledged on one node → the other node's head has it: p50 {:.1} ms, p99 {:.1} ms; → the other node answers a table `as_of` it: p50 {:.1} ms, p99 {:.1} ms",
                if busy { "with 32 clients writing single events to the first node" } else { "with no other load" },
                lag.head.len(),
                p(&lag.head, 0.5),
                p(&lag.head, 0.99),
                p(&lag.table, 0.5),
                p(&lag.table, 0.99),
            );
        }
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

/// Follower lag samples, sorted.
struct Lag {
    head: Vec<Duration>,
    table: Vec<Duration>,
}

/// Posts single events to one node and times until the other node's head (`/v1/audit/head`, which reports the
/// node's own head, not the database's) reaches the acknowledged position, and until the other node answers the
/// province's indicator table `as_of` that position (read your writes: it waits until it has caught up). With
/// `busy`, 32 clients write single events to the first node meanwhile, for `seconds`.
fn follower_lag(
    cluster: &Cluster,
    dir: &Path,
    key: &Path,
    busy: bool,
    seconds: u64,
) -> Result<Lag> {
    let name = if busy { "lag-busy" } else { "lag" };
    let setup = pg_setup(cluster, name, 2, dir, key, "auto")?;
    let background = busy.then(|| {
        let (bases, token) = (vec![setup.bases[0].clone()], setup.token.clone());
        std::thread::spawn(move || {
            load(&bases, &token, 32, seconds, 1)
                .map(|m| m.events_per_sec())
                .map_err(|e| e.to_string())
        })
    });
    let client = reqwest::blocking::Client::new();
    let mut lag = Lag {
        head: Vec::new(),
        table: Vec::new(),
    };
    let started = Instant::now();
    for n in 0.. {
        if (busy && started.elapsed() > Duration::from_secs(seconds.saturating_sub(1).max(1)))
            || (!busy && n == 300)
        {
            break;
        }
        let (position, acknowledged) = post_one(&client, &setup, &format!("LAG-{n}"))?;
        loop {
            let head: serde_json::Value = client
                .get(format!("{}/v1/audit/head", setup.bases[1]))
                .bearer_auth(&setup.token)
                .send()?
                .json()?;
            if head["size"].as_u64().unwrap_or(0) >= position {
                lag.head.push(acknowledged.elapsed());
                break;
            }
            if acknowledged.elapsed() > Duration::from_secs(10) {
                return Err("the second node did not learn of a commit within 10 s".into());
            }
        }
        // A second event, so that the table asked for is at a position the other node may not have yet.
        let (position, acknowledged) = post_one(&client, &setup, &format!("LAG-T-{n}"))?;
        let table = client
            .get(format!(
                "{}/v1/indicators?period=2019-Q1&group=province&as_of={position}",
                setup.bases[1]
            ))
            .bearer_auth(&setup.token)
            .send()?;
        if table.status().as_u16() != 200 {
            return Err(format!(
                "the other node answered the table as of {position} with {}",
                table.status()
            )
            .into());
        }
        let table: serde_json::Value = table.json()?;
        if table["stamp"]["position"].as_u64() != Some(position) {
            return Err(
                format!("the table as of {position} was stamped {}", table["stamp"]).into(),
            );
        }
        lag.table.push(acknowledged.elapsed());
    }
    if let Some(background) = background {
        background
            .join()
            .map_err(|_| "the background load panicked")??;
    }
    if std::env::var_os("PROBE_STATEMENTS").is_some() {
        let _ = cluster.psql(name, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        eprintln!("{}", cluster.psql(name, "SELECT round(total_exec_time)::text || ' ms ' || calls || ' calls ' || rows || ' rows: ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 14").unwrap_or_default());
        let _ = cluster.psql(name, "SELECT pg_stat_statements_reset()");
    }
    cluster.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    )?;
    lag.head.sort();
    lag.table.sort();
    Ok(lag)
}

/// Posts a new dossier to the first node: the position acknowledged, and when.
fn post_one(
    client: &reqwest::blocking::Client,
    setup: &Running,
    dossier: &str,
) -> Result<(u64, Instant)> {
    let body = format!(
        r#"{{"id":"{}","type":"dossier.received","dossier":"{dossier}","agency":"000.00.12.H27","occurred_at":"2019-03-12T08:30:00+07:00","data":{{"procedure":"1.001234","channel":"counter"}}}}"#,
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
    Ok((position, acknowledged))
}
