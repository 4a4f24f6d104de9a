//! `casetrail bench audit`: what signed checkpoints cost the write path, and what proofs and bundles cost on a
//! large log. See docs/benchmarks.md.

use crate::bench::median;
use crate::cmd::Result;
use chrono::TimeZone;
use domain::event::*;
use domain::{AgencyCode, DossierCode, Event, ProcedureCode, Submitted};
use generator::lives::LifeGenerator;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{AppendRequest, EventLog, SledLog};

pub struct Options {
    pub events: u64,
    pub seconds: u64,
    pub rounds: usize,
    pub clients: usize,
    pub skip_write_path: bool,
}

pub fn run(dir: &Path, o: Options) -> Result<ExitCode> {
    std::fs::create_dir_all(dir)?;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |what: &str, value: String| {
        eprintln!("{what}: {value}");
        rows.push((what.to_owned(), value));
    };
    if !o.skip_write_path {
        // Alternate the two set-ups so that the machine's drift affects both alike.
        let (mut without, mut with, mut signed) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..o.rounds.max(1) {
            let (rate, _) = write_path(dir, o.seconds, o.clients, None, round as u64)?;
            eprintln!("round {round}: without checkpoints {rate:.0} events/s");
            without.push(rate);
            let (rate, n) = write_path(
                dir,
                o.seconds,
                o.clients,
                Some(Duration::from_secs(1)),
                round as u64,
            )?;
            eprintln!(
                "round {round}: with a checkpoint every second {rate:.0} events/s ({n} signed)"
            );
            with.push(rate);
            signed.push(n as f64);
        }
        let list = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (a, b) = (median(without.clone()), median(with.clone()));
        row(
            &format!(
                "durable appends/s, single-event appends from {} threads, {} s, no checkpoints (median; runs)",
                o.clients, o.seconds
            ),
            format!("{a:.0} ({})", list(&without)),
        );
        row(
            "the same, a checkpoint signed and stored every second (median; runs)",
            format!(
                "{b:.0} ({}); {:.0} checkpoints per run",
                list(&with),
                median(signed)
            ),
        );
        row(
            "throughput cost of checkpoints every second (ratio of medians)",
            format!("{:.1} %", 100.0 * (1.0 - b / a)),
        );
    }
    let log = large_log(dir, o.events)?;
    large_log_figures(&log, &mut row)?;
    println!("| measure | value |\n| --- | --- |");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(ExitCode::SUCCESS)
}

/// Appends single events from `clients` threads for `seconds` to a fresh log, with a checkpoint signed every
/// `every` if given; returns events per second and the checkpoints signed.
fn write_path(
    under: &Path,
    seconds: u64,
    clients: usize,
    every: Option<Duration>,
    seed: u64,
) -> Result<(f64, u64)> {
    let dir = under.join(format!("audit-write-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = Arc::new(SledLog::open(crate::cmd::scratch_config(&dir))?);
    let notary = Arc::new(audit::Notary::new(
        audit::SigningKey::generate("bench.invalid/audit")?.0,
    ));
    let appended = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let signer = every.map(|every| {
        let (log, notary, done) = (log.clone(), notary.clone(), done.clone());
        std::thread::spawn(move || {
            let mut signed = 0u64;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                if notary.checkpoint_head(&*log, chrono::Utc::now()).is_ok() {
                    signed += 1;
                }
            }
            signed
        })
    });
    let workers: Vec<_> = (0..clients.max(1))
        .map(|c| {
            let (log, appended) = (log.clone(), appended.clone());
            std::thread::spawn(move || {
                let mut g = LifeGenerator::new(
                    seed * 1_000 + c as u64,
                    &format!("W{seed}x{c}"),
                    domain::calendar::vietnam()
                        .with_ymd_and_hms(2019, 1, 2, 8, 0, 0)
                        .single()
                        .expect("valid"),
                    360,
                );
                'run: loop {
                    for e in g.dossier() {
                        if Instant::now() >= deadline {
                            break 'run;
                        }
                        log.append_blocking(AppendRequest {
                            events: vec![Submitted::from(e)],
                            source: "bench".into(),
                        })
                        .expect("append");
                        appended.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a client panicked")?;
    }
    let rate = appended.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let signed = match signer {
        Some(s) => s.join().map_err(|_| "the signer panicked")?,
        None => 0,
    };
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((rate, signed))
}

/// The dossier whose bundle is timed: 20 events spread over the whole log.
const TARGET: &str = "BENCH-AUDIT-20";

fn target_events() -> Vec<Event> {
    let agency = AgencyCode::parse("000.01.00.H27").expect("valid");
    let dossier = DossierCode::parse(TARGET).expect("valid");
    let at = |day: i64| {
        domain::calendar::vietnam()
            .with_ymd_and_hms(2019, 1, 2, 8, 0, 0)
            .single()
            .expect("valid")
            + chrono::Duration::days(day)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut event = |day: i64, data: EventData| Event {
        id: uuid::Builder::from_unix_timestamp_millis(
            at(day).timestamp_millis() as u64,
            &rng.gen(),
        )
        .into_uuid(),
        dossier: Some(dossier.clone()),
        agency: Some(agency.clone()),
        occurred_at: at(day),
        data,
    };
    let mut out = vec![event(
        0,
        EventData::Received(Received {
            procedure: ProcedureCode::parse("1.001234").expect("valid"),
            channel: Channel::Counter,
            online_level: None,
            due_at: Some(at(60)),
            result_by_post: None,
            applicant: None,
        }),
    )];
    for i in 0..9 {
        out.push(event(
            1 + 2 * i,
            EventData::SupplementRequested(SupplementRequested { note: None }),
        ));
        out.push(event(
            2 + 2 * i,
            EventData::SupplementReceived(SupplementReceived {}),
        ));
    }
    out.push(event(
        30,
        EventData::Resolved(Resolved {
            outcome: Outcome::Approved,
        }),
    ));
    assert_eq!(out.len(), 20);
    out
}

/// A log of at least `events` events in `dir/audit-large-<events>`, reused when it is there already: generated
/// dossiers appended in groups of 900 to 1,000 events, with the 20 events of [`TARGET`] spread evenly through it.
fn large_log(dir: &Path, events: u64) -> Result<SledLog> {
    let path = dir.join(format!("audit-large-{events}"));
    let log = SledLog::open(crate::cmd::scratch_config(&path))?;
    if log.head().size >= events {
        eprintln!("reusing {} ({} events)", path.display(), log.head().size);
        return Ok(log);
    }
    if log.head().size > 0 {
        drop(log);
        std::fs::remove_dir_all(&path)?;
        return large_log(dir, events);
    }
    eprintln!("building {} with {events} events…", path.display());
    let started = Instant::now();
    let mut target = target_events().into_iter();
    let spacing = events / 20;
    let mut next_target_at = 1u64;
    let mut g = LifeGenerator::for_2019(77);
    let mut batch: Vec<Submitted> = Vec::with_capacity(1_100);
    let mut total = 0u64;
    while total < events {
        for e in g.dossier() {
            if total + batch.len() as u64 + 1 >= next_target_at {
                if let Some(t) = target.next() {
                    batch.push(Submitted::from(t));
                    next_target_at += spacing;
                }
            }
            batch.push(Submitted::from(e));
        }
        // Whole dossiers per batch, and never more than a batch may carry (1,000).
        if batch.len() >= 900 {
            let before = total;
            total += batch.len() as u64;
            log.append_blocking(AppendRequest {
                events: std::mem::take(&mut batch),
                source: "bench".into(),
            })?;
            if total / 1_000_000 > before / 1_000_000 {
                eprintln!(
                    "  {total} events, {:.0} events/s",
                    total as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
    }
    batch.extend(target.map(Submitted::from));
    if !batch.is_empty() {
        log.append_blocking(AppendRequest {
            events: batch,
            source: "bench".into(),
        })?;
    }
    eprintln!(
        "built in {:.0} s; reopening so that reads start from a cold sled cache",
        started.elapsed().as_secs_f64()
    );
    drop(log);
    Ok(SledLog::open(crate::cmd::scratch_config(&path))?)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn large_log_figures(log: &SledLog, row: &mut impl FnMut(&str, String)) -> Result<()> {
    let size = log.head().size;
    let target = log.stream(TARGET)?;
    if target.len() != 20 {
        return Err(format!("{TARGET} has {} events, not 20", target.len()).into());
    }
    row(
        "large log: events; the bundled dossier's positions",
        format!(
            "{size}; {}",
            target
                .iter()
                .map(|e| e.position.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let (key, _) = audit::SigningKey::generate("bench.invalid/audit")?;
    let verifier = audit::VerifierKey::parse(key.verifier_key())?;
    let notary = audit::Notary::new(key);
    // The first bundle signs a checkpoint of the head (as the server does when none covers the dossier).
    let started = Instant::now();
    let first = notary
        .bundle(log, TARGET, chrono::Utc::now())?
        .ok_or("no bundle")?;
    let first_ms = millis(started.elapsed());
    let mut times = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let b = notary
            .bundle(log, TARGET, chrono::Utc::now())?
            .ok_or("no bundle")?;
        bytes = serde_json::to_vec(&b)?;
        times.push(millis(started.elapsed()));
    }
    times.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    row(
        "bundle of a 20-event dossier: first (cold cache, signs a checkpoint); then median / max of 50",
        format!(
            "{first_ms:.1} ms; {:.2} ms / {:.2} ms ({} bytes, {} proof hashes)",
            median(times.clone()),
            times.last().copied().unwrap_or_default(),
            bytes.len(),
            first.events.iter().map(|e| e.proof.len()).sum::<usize>()
        ),
    );
    let mut verify = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        audit::verify_bundle(&bytes, &verifier)?;
        verify.push(millis(started.elapsed()));
    }
    row(
        "verify-bundle's checks of that bundle, in process (median of 50)",
        format!("{:.2} ms", median(verify)),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for _ in 0..1_000 {
        let p = rng.gen_range(1..=size);
        let started = Instant::now();
        log.prove_inclusion(p, size)?;
        inclusion.push(millis(started.elapsed()) * 1e3);
        let from = rng.gen_range(1..=size);
        let started = Instant::now();
        log.prove_consistency(from, size)?;
        consistency.push(millis(started.elapsed()) * 1e3);
    }
    row(
        "one inclusion proof / one consistency proof at a random size, against the head (median of 1,000)",
        format!(
            "{:.0} µs / {:.0} µs",
            median(inclusion),
            median(consistency)
        ),
    );
    let mut signing = Vec::new();
    let root = log.head().root;
    let key = notary.key();
    for _ in 0..1_000 {
        let started = Instant::now();
        std::hint::black_box(key.sign_checkpoint(size, root));
        signing.push(millis(started.elapsed()) * 1e3);
    }
    row(
        "signing one checkpoint note, without storing it (median of 1,000)",
        format!("{:.0} µs", median(signing)),
    );
    Ok(())
}
