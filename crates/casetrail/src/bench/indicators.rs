//! `casetrail bench indicators`: the figures of docs/benchmarks.md for the indicator tables.

use crate::bench::median;
use crate::cmd::Result;
use app::indicators::{loader, Indicators, Query, Snapshots};
use domain::calendar::Cut;
use domain::Period;
use projections::indicators::scorecard::Scorecard;
use projections::indicators::{Engine, Group};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// Resident and peak resident memory of this process, in MiB (Linux).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn millis(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1_000.0
}

pub fn run(
    data: &crate::cmd::DataDir,
    period: Period,
    queries: usize,
    history: usize,
    snapshot_every: u64,
    duckdb: Option<&Path>,
) -> Result<ExitCode> {
    let log = crate::cmd::open(data)?;
    let size = log.head().size;
    println!("log: {size} events in {}", data.display());

    // 1. The store alone: read and decode every event, fold nothing.
    let started = Instant::now();
    let mut n = 0u64;
    log.replay_to(0, u64::MAX, &mut |_| n += 1)?;
    let decode_rate = n as f64 / started.elapsed().as_secs_f64();
    println!("store replay (read + decode, no fold): {decode_rate:.0} events/s");

    // 2. A full rebuild of the engine from position 1.
    let (rss_before, _) = memory_mib();
    let started = Instant::now();
    let mut engine = Engine::new(Cut::Calendar);
    app::indicators::replay(&mut engine, &*log, size)?;
    let rebuild_secs = started.elapsed().as_secs_f64();
    let (rss_after, peak) = memory_mib();
    println!(
        "rebuild (read + decode + fold): {:.1} s, {:.0} events/s; {} agencies, {} dossiers held in memory, {} read back",
        rebuild_secs,
        size as f64 / rebuild_secs,
        engine.agency_count(),
        engine.dossiers_in_memory(),
        engine.reloads
    );
    // The fold alone: the same events, decoded beforehand, folded again into a fresh engine.
    let sample: Vec<domain::StoredEvent> = log.read_after(0, 2_000_000)?;
    let started = Instant::now();
    let mut fold_only = Engine::new(Cut::Calendar);
    fold_only.fold_all(sample.iter().cloned(), &mut loader(&*log))?;
    let fold_rate = sample.len() as f64 / started.elapsed().as_secs_f64();
    drop(sample);
    println!(
        "fold only (first {} events, already decoded): {fold_rate:.0} events/s",
        fold_only.position()
    );
    drop(fold_only);
    let snapshot = postcard::to_allocvec(&engine)?.len();
    println!(
        "memory: resident {rss_after:.0} MiB after the rebuild ({rss_before:.0} MiB before it; peak {peak:.0} MiB); engine snapshot {:.1} MiB",
        snapshot as f64 / 1_048_576.0
    );

    // 3. The live table: the engine as the server holds it.
    for group in [Group::Province, Group::Agency, Group::Subtree] {
        let times: Vec<f64> = (0..queries.max(1))
            .map(|_| {
                let started = Instant::now();
                let rows = engine.table(period, group, None);
                std::hint::black_box(rows);
                millis(started)
            })
            .collect();
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "live {period} table by {group}: median {:.3} ms, p99 {:.3} ms ({} queries)",
            median(times),
            sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)],
            sorted.len()
        );
    }
    let province = engine.table(period, Group::Province, None);
    if let Some(row) = province.first() {
        println!(
            "{period} province: received {}, online {} ({:.2} %), postal dossiers {} ({:.2} %)",
            row.counts.received,
            row.counts.received_online,
            row.online_rate().unwrap_or(0.0) * 100.0,
            row.counts.postal_dossiers,
            row.postal_rate().unwrap_or(0.0) * 100.0
        );
    }
    drop(engine);

    // 4. History: as_of and known_at at random positions, from snapshots.
    let snapshots = Snapshots::new(data, Cut::Calendar, snapshot_every);
    let started = Instant::now();
    let indicators = Indicators::open(&*log, Cut::Calendar, Scorecard::default_card(), snapshots)?;
    println!(
        "server start (latest snapshot + replay after it): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // Snapshots at every interval, as a server that followed the log from the start would have written them.
    let mut engine = Engine::new(Cut::Calendar);
    let mut position = snapshot_every;
    while position < size {
        if !indicators.snapshots.usable(&*log, Cut::Calendar, position) {
            app::indicators::replay(&mut engine, &*log, position)?;
            indicators.snapshots.save(&*log, &engine)?;
        }
        position += snapshot_every;
    }
    drop(engine);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let first = log.event(1)?.map(|e| e.recorded_at);
    let last = log.event(size)?.map(|e| e.recorded_at);
    let (mut as_of, mut known_at) = (Vec::new(), Vec::new());
    for _ in 0..history.max(1) {
        let q = Query {
            periods: vec![period],
            group: Group::Province,
            scope: None,
            as_of: Some(rng.gen_range(1..=size)),
            known_at: None,
            profile: None,
        };
        let started = Instant::now();
        indicators.answer(&*log, &q).map_err(|e| e.to_string())?;
        as_of.push(millis(started));
        if let (Some(first), Some(last)) = (first, last) {
            let t = first + (last - first) * rng.gen_range(0..1_000) / 1_000;
            let q = Query {
                as_of: None,
                known_at: Some(domain::KnownAt::Instant(t)),
                ..q
            };
            let started = Instant::now();
            indicators.answer(&*log, &q).map_err(|e| e.to_string())?;
            known_at.push(millis(started));
        }
    }
    println!(
        "as_of table (nearest snapshot + replay), {} positions: median {:.0} ms, max {:.0} ms",
        as_of.len(),
        median(as_of.clone()),
        as_of.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "known_at table, {} instants: median {:.0} ms, max {:.0} ms",
        known_at.len(),
        median(known_at.clone()),
        known_at.iter().cloned().fold(0.0, f64::max)
    );

    // 5. DuckDB over the export, the same quarter, for the ratio.
    if let Some(export) = duckdb {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-duckdb");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(export)
            .arg(period.to_string())
            .output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            return Err(format!(
                "{}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
    }
    Ok(ExitCode::SUCCESS)
}
