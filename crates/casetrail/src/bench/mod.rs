//! `casetrail bench store`: durable append throughput by group size, group commit under concurrency, the cost of
//! fsync, and full replay speed. Prints a Markdown table; docs/benchmarks.md keeps the figures.

pub mod audit;
pub mod check;
pub mod http;
pub mod indicators;
pub mod nodes;

use crate::cmd::Result;
use clap::Subcommand;
use domain::{Event, StreamHead, Submitted};
use generator::lives::LifeGenerator;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use store::{AppendRequest, EventLog, SledLog, Store};

#[derive(Subcommand)]
pub enum What {
    /// Append and replay throughput of the sled log.
    Store {
        /// Events in the large log (groups of 1,000, then replayed).
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Where to make the benchmark's logs (a temporary directory under it, removed afterwards).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Replay passes; the median is reported.
        #[arg(long, default_value_t = 3)]
        replays: usize,
    },
    /// Load on the real server over loopback: `casetrail serve` in a child process on a fresh directory, and
    /// `connections` clients posting as fast as answers come for `seconds`.
    Http {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Events per request.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Where to make the server's data directory (removed afterwards).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// The log on PostgreSQL against sled and the bare PostgreSQL table: durable appends over HTTP (64 × 1 event,
    /// 16 × 500) with sled, one PostgreSQL node, two nodes on one database, and pgbench on the bare events table,
    /// alternating round by round on one private cluster; then the follower lag between two nodes.
    Nodes {
        /// Seconds of each run.
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        /// Rounds of every setup; medians are reported.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Where to make the benchmark's directories (removed afterwards).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Only these setups (comma-separated: sled, pg1, pg2, pg4, bare, pg1-sync, pg2-sync, pg4-sync,
        /// bare-sync, and lag for the follower lag); all of them by default.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Audit: append throughput with a checkpoint signed every second against without (alternating rounds), then
    /// bundles and proofs on a large log (built under `--dir` on first run, reused after).
    Audit {
        /// Events in the large log.
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Seconds of each write-path run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rounds of (without, with) write-path runs; medians are reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Threads appending single events in the write-path runs.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Only the large-log figures.
        #[arg(long)]
        skip_write_path: bool,
        /// Where the logs go (the large one is kept for reuse).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Replay speed of an existing data directory (`--data`): read + decode + fold, median of `--runs`.
    Replay {
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Indicator tables on an existing data directory (`--data`): full rebuild, memory, the live table, and
    /// `as_of` / `known_at` tables from snapshots. See docs/benchmarks.md.
    Indicators {
        /// The quarter whose tables are timed.
        #[arg(long, default_value = "2019-Q1")]
        period: domain::Period,
        /// Timed queries of the live table; the median is reported.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Timed `as_of` and `known_at` tables at random positions.
        #[arg(long, default_value_t = 20)]
        history: usize,
        /// Snapshot interval for the history queries (snapshots are written under the data directory).
        #[arg(long, default_value_t = 250_000)]
        snapshot_every: u64,
        /// Also time DuckDB on this export (NDJSON) with scripts/bench-duckdb, for the ratio.
        #[arg(long)]
        duckdb: Option<PathBuf>,
    },
    /// `check-report`'s peak memory and time on generated published tables of these sizes, streamed against the
    /// whole table in memory (alternating; medians of `--runs`).
    CheckReport {
        /// Table sizes in MiB.
        #[arg(long, value_delimiter = ',', default_value = "5,25,50")]
        mb: Vec<u64>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where the tables go (a temporary directory under it, removed afterwards).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// One in-memory run of `bench check-report` (a child of it).
    #[command(hide = true)]
    CheckInMemory {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(what: What, data: &crate::cmd::DataDir) -> Result<ExitCode> {
    match what {
        What::Store {
            events,
            dir,
            replays,
        } => store(events, &dir, replays),
        What::Nodes {
            seconds,
            rounds,
            dir,
            only,
        } => crate::bench::nodes::run(&dir, seconds, rounds, &only),
        What::Http {
            connections,
            seconds,
            batch,
            dir,
        } => crate::bench::http::run(&dir, connections, seconds, batch),
        What::Indicators {
            period,
            queries,
            history,
            snapshot_every,
            duckdb,
        } => crate::bench::indicators::run(
            data,
            period,
            queries,
            history,
            snapshot_every,
            duckdb.as_deref(),
        ),
        What::Audit {
            events,
            seconds,
            rounds,
            clients,
            skip_write_path,
            dir,
        } => crate::bench::audit::run(
            &dir,
            crate::bench::audit::Options {
                events,
                seconds,
                rounds,
                clients,
                skip_write_path,
            },
        ),
        What::CheckReport { mb, runs, dir } => crate::bench::check::run(&dir, &mb, runs),
        What::CheckInMemory { file, json } => crate::bench::check::in_memory(&file, json),
        What::Replay { runs } => {
            let log = crate::cmd::open(data)?;
            let runs = runs.max(1);
            let show = |what: &str, rates: Vec<f64>| {
                println!(
                    "{what} {} events: median {:.0} events/s (runs: {})",
                    log.head().size,
                    median(rates.clone()),
                    rates
                        .iter()
                        .map(|r| format!("{r:.0}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            let decoded: Vec<f64> = (0..runs)
                .map(|_| decode_only(&*log))
                .collect::<Result<_>>()?;
            show("read + decompress + decode of", decoded);
            let folded: Vec<f64> = (0..runs).map(|_| replay(&*log)).collect::<Result<_>>()?;
            show("read + decode + fold into stream heads of", folded);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Events per second of a replay that only decodes (the store's share of every rebuild).
fn decode_only(log: &dyn Store) -> Result<f64> {
    let started = Instant::now();
    let mut n = 0u64;
    log.replay_to(0, u64::MAX, &mut |e| {
        n += 1;
        std::hint::black_box(e);
    })?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn submitted(events: &[Event]) -> Vec<Submitted> {
    events.iter().cloned().map(Submitted::from).collect()
}

/// Appends `events` sequentially in groups of `group`; returns events per second.
fn sequential(dir: &Path, events: &[Event], group: usize, fsync: bool) -> Result<(f64, SledLog)> {
    let mut config = crate::cmd::scratch_config(dir);
    config.fsync = fsync;
    let log = SledLog::open(config)?;
    let batches: Vec<Vec<Submitted>> = events.chunks(group).map(submitted).collect();
    let started = Instant::now();
    for events in batches {
        log.append_blocking(AppendRequest {
            events,
            source: "bench".into(),
        })?;
    }
    Ok((events.len() as f64 / started.elapsed().as_secs_f64(), log))
}

/// `clients` threads each append single events; group commit batches them.
fn concurrent(dir: &Path, events: &[Event], clients: usize) -> Result<f64> {
    let log = Arc::new(SledLog::open(crate::cmd::scratch_config(dir))?);
    // Each client takes whole dossiers so that its events stay in order.
    let mut per_client: Vec<Vec<Event>> = vec![Vec::new(); clients];
    for e in events {
        let d = e.dossier.as_ref().expect("dossier events").as_str();
        let slot = d
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % clients;
        per_client[slot].push(e.clone());
    }
    let started = Instant::now();
    let threads: Vec<_> = per_client
        .into_iter()
        .map(|mine| {
            let log = log.clone();
            std::thread::spawn(move || {
                for e in mine {
                    log.append_blocking(AppendRequest {
                        events: submitted(&[e]),
                        source: "bench".into(),
                    })
                    .expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a client panicked")?;
    }
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}

/// Reads, decodes and folds every event into dossier heads; returns events per second.
pub fn replay(log: &dyn Store) -> Result<f64> {
    let started = Instant::now();
    let mut heads: HashMap<String, StreamHead> = HashMap::new();
    let n = log.replay_to(0, u64::MAX, &mut |e: domain::StoredEvent| {
        let key = e.event.stream_key();
        match heads.get_mut(key.as_ref()) {
            Some(head) => domain::apply_in_place(head, &e.event),
            None => {
                let mut head = StreamHead::default();
                domain::apply_in_place(&mut head, &e.event);
                heads.insert(key.into_owned(), head);
            }
        }
    })?;
    assert_eq!(n, log.head().size, "replay saw every event");
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn store(n: usize, dir: &Path, replays: usize) -> Result<ExitCode> {
    let tmp = tempdir(dir)?;
    eprintln!("generating {n} events…");
    let events = LifeGenerator::for_2019(7).events(n);
    let bytes: usize = events.iter().map(|e| e.to_json(None).len()).sum();
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |what: &str, value: String| {
        eprintln!("{what}: {value}");
        rows.push((what.to_owned(), value));
    };
    row(
        "events (mean submitted JSON size)",
        format!("{} ({} B)", events.len(), bytes / events.len()),
    );

    let small = &events[..events.len().min(200_000)];
    // The engine's ceiling: the same canonical bytes, one key each, no index, no audit tree.
    let canonical: Vec<Vec<u8>> = small
        .iter()
        .enumerate()
        .map(|(i, e)| {
            domain::StoredEvent {
                position: i as u64 + 1,
                version: 1,
                recorded_at: chrono::Utc::now(),
                source: "bench".into(),
                event: e.clone(),
            }
            .canonical_bytes()
        })
        .collect();
    let bare = store::bare_sled_appends_per_sec(&tmp.join("bare"), &canonical, 1000)?;
    drop(canonical);
    row(
        "bare sled: same bytes, one key per event, groups of 1,000, flush + fsync, first 200k",
        format!("{bare:.0}"),
    );
    let (g1000_nofsync, _) = sequential(&tmp.join("g1000-nofsync"), small, 1000, false)?;
    let (g1000_small, _) = sequential(&tmp.join("g1000-small"), small, 1000, true)?;
    row(
        "durable appends/s, groups of 1,000, first 200k events, no fsync",
        format!("{g1000_nofsync:.0}"),
    );
    row(
        "durable appends/s, groups of 1,000, first 200k events, fsync",
        format!(
            "{g1000_small:.0} (fsync costs {:.0} %)",
            100.0 * (1.0 - g1000_small / g1000_nofsync)
        ),
    );
    let (g100, _) = sequential(
        &tmp.join("g100"),
        &events[..events.len().min(100_000)],
        100,
        true,
    )?;
    row(
        "durable appends/s, groups of 100, first 100k events",
        format!("{g100:.0}"),
    );
    let (g1, _) = sequential(&tmp.join("g1"), &events[..events.len().min(3_000)], 1, true)?;
    row(
        "durable appends/s, groups of 1, one client, first 3k events",
        format!("{g1:.0}"),
    );
    let c64 = concurrent(&tmp.join("c64"), &events[..events.len().min(100_000)], 64)?;
    row(
        "durable appends/s, single-event appends from 64 threads, first 100k events",
        format!("{c64:.0}"),
    );

    let (g1000, log) = sequential(&tmp.join("big"), &events, 1000, true)?;
    row(
        &format!("durable appends/s, groups of 1,000, all {n} events"),
        format!("{g1000:.0}"),
    );
    drop(events);
    let runs: Vec<f64> = (0..replays.max(1))
        .map(|_| replay(&log))
        .collect::<Result<_>>()?;
    row(
        "replay events/s (read + decode + fold), median",
        format!(
            "{:.0} (runs: {})",
            median(runs.clone()),
            runs.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let disk = log.stats()?.disk_bytes;
    row(
        "disk bytes per event",
        format!("{}", disk / log.head().size.max(1)),
    );
    drop(log);
    println!("| measure | value |\n| --- | --- |");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(ExitCode::SUCCESS)
}

fn tempdir(under: &Path) -> Result<PathBuf> {
    let dir = under.join(format!("casetrail-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
