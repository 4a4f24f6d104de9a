//! The data directory's own commands: export, verify, stats, rebuild-indexes, upgrade, and the hidden
//! `append-loop` of the crash test.

use super::*;

pub fn export(data: &DataDir, after: u64, output: Option<&Path>) -> Result<ExitCode> {
    // The events alone, read as they are stored: opened for inspection (the indexes neither checked nor caught
    // up on disk), so it exports a log whose indexes are being rebuilt too.
    let log = open_to_read(data, true)?;
    let out: Box<dyn Write> = match output {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut failed = None;
    log.scan_raw_until(after, &mut |_, bytes| match out
        .write_all(bytes)
        .and_then(|_| out.write_all(b"\n"))
    {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    match failed {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Some(e) => return Err(e.into()),
        None => {}
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub fn verify(data: &DataDir) -> Result<ExitCode> {
    let log = open_to_read(data, true)?;
    let progress = bar(None, "verifying");
    let report = log.verify(&mut |n| progress.set_message(format!("verifying: {n} events")))?;
    progress.finish_and_clear();
    if report.problems.is_empty() {
        // The signed checkpoints the log keeps: each must commit to this log's root at its size.
        let key_file = data.join(app::AUDIT_KEY_FILE);
        let key = match ::audit::SigningKey::load(&key_file) {
            Ok(k) => Some(::audit::VerifierKey::parse(k.verifier_key())?),
            Err(_) => None,
        };
        let (checked, problems) = ::audit::check_stored_checkpoints(&*log, key.as_ref())?;
        if let Some((_, what)) = problems.first() {
            println!("bad: {what}");
            for (_, w) in problems.iter().skip(1).take(20) {
                println!("  also: {w}");
            }
            return Ok(ExitCode::FAILURE);
        }
        let signed = if key.is_some() {
            "signed with the data directory's key and "
        } else {
            ""
        };
        let plural = if checked == 1 { "" } else { "s" };
        let lag = match report.size - report.indexed_through {
            0 => String::new(),
            n => format!(" (the indexes on disk lag {n} events behind the log: the next open catches them up)"),
        };
        println!(
            "ok: {} events in {} streams; every hash, index and stream rule checks; {checked} stored checkpoint{plural} {signed}matching the log; root {}{lag}",
            report.size,
            report.streams,
            report.root.as_deref().unwrap_or("")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (position, what) = &report.problems[0];
    println!("bad: first bad position {position}: {what}");
    for (p, w) in report.problems.iter().skip(1).take(20) {
        println!("  also at {p}: {w}");
    }
    if report.problems.len() > 21 {
        println!("  and {} more", report.problems.len() - 21);
    }
    Ok(ExitCode::FAILURE)
}

pub fn stats(data: &DataDir) -> Result<ExitCode> {
    let log = open_to_read(data, false)?;
    let s = log.stats()?;
    println!("events          {}", s.size);
    println!("audit root      {}", s.root);
    println!("streams         {} ({} dossiers)", s.streams, s.dossiers);
    println!("event bytes     {}", s.event_bytes);
    println!("stored bytes    {} ({})", s.stored_bytes, s.stored_as);
    println!("index bytes     {}", s.index_bytes);
    println!("disk bytes      {}", s.disk_bytes);
    if let (Some(first), Some(last)) = (s.first_recorded_at, s.last_recorded_at) {
        println!("recorded        {first} … {last}");
    }
    for (ty, n) in &s.events_by_type {
        println!("  {ty:<30} {n}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rebuild(data: &DataDir) -> Result<ExitCode> {
    let log = open_for_inspection(data)?;
    let before = log.head();
    let progress = bar(None, "rebuilding");
    let head =
        log.rebuild_indexes(&mut |n| progress.set_message(format!("rebuilding: {n} events")))?;
    progress.finish_and_clear();
    println!(
        "rebuilt every index from {} events; root {} (was {})",
        head.size, head.root, before.root
    );
    Ok(ExitCode::SUCCESS)
}

pub fn append_loop(
    data: &DataDir,
    seed: u64,
    prefix: &str,
    events: usize,
    threads: usize,
    index_flush_ms: Option<u64>,
) -> Result<ExitCode> {
    data.sled_only("append-loop")?;
    use rand::{Rng, SeedableRng};
    let mut config = config(data);
    if let Some(ms) = index_flush_ms {
        config.index_flush_after = std::time::Duration::from_millis(ms);
    }
    let log = std::sync::Arc::new(SledLog::open(config)?);
    let per_thread = events.div_ceil(threads.max(1));
    let workers: Vec<_> = (0..threads.max(1))
        .map(|t| {
            let log = log.clone();
            let prefix = format!("{prefix}{t}");
            std::thread::spawn(move || -> std::result::Result<(), String> {
                let start = domain::calendar::vietnam()
                    .with_ymd_and_hms(2019, 1, 2, 8, 0, 0)
                    .single()
                    .expect("valid");
                let mut g = generator::lives::LifeGenerator::new(
                    seed * 1000 + t as u64,
                    &prefix,
                    start,
                    360,
                );
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ t as u64);
                let mut done = 0;
                while done < per_thread {
                    let dossier = g.dossier();
                    for chunk in dossier.chunks(rng.gen_range(1..=dossier.len())) {
                        let events = chunk.iter().cloned().map(Submitted::from).collect();
                        let outcome = log
                            .append_blocking(AppendRequest {
                                events,
                                source: "crash-test".into(),
                            })
                            .map_err(|e| e.to_string())?;
                        let mut out = std::io::stdout().lock();
                        for r in outcome.receipts {
                            writeln!(out, "ack {} {}", r.id, r.position)
                                .map_err(|e| e.to_string())?;
                        }
                        out.flush().map_err(|e| e.to_string())?;
                        done += chunk.len();
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a writer thread panicked")??;
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies a file or a directory tree, fsyncing each copy, keeping permissions (the signing key is 0600).
fn copy_durably(from: &Path, to: &Path) -> Result<()> {
    let kind = std::fs::symlink_metadata(from)?.file_type();
    if !kind.is_dir() && !kind.is_file() {
        // A link, a pipe, a socket: not casetrail's; left where it is, in the old directory.
        eprintln!(
            "casetrail: {} is not a plain file or directory; not copied",
            from.display()
        );
        return Ok(());
    }
    if kind.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_durably(&entry.path(), &to.join(entry.file_name()))?;
        }
        std::fs::File::open(to)?.sync_all()?;
    } else {
        std::fs::copy(from, to)?;
        std::fs::File::open(to)?.sync_all()?;
    }
    Ok(())
}

/// fsyncs the directory holding `path`, so that a rename into it survives a power cut.
fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()?;
    Ok(())
}

/// `casetrail upgrade`: rewrites a format-1 data directory in format 2. The new log is built beside the old one
/// (`<data>.upgrading`) by appending every event with its stored fields, so that each lands at its position with
/// its version, recorded time and source, and the same canonical bytes; then credentials and signed checkpoints are
/// copied as they are, the roots of both are compared, and only then are the directories swapped. The old one is
/// kept as `<data>.format1` until the user removes it.
pub fn upgrade(data: &DataDir) -> Result<ExitCode> {
    data.sled_only("upgrade")?;
    let name = data
        .file_name()
        .ok_or("the data directory has no name")?
        .to_string_lossy()
        .into_owned();
    let beside = |suffix: &str| data.with_file_name(format!("{name}.{suffix}"));
    let (building, kept) = (beside("upgrading"), beside("format1"));
    if !data.join("db").exists() {
        // An upgrade stopped between its two renames: the old log is kept, the new one complete. Finish it.
        if kept.join("db").exists() && building.join("db").exists() && !data.exists() {
            std::fs::rename(&building, data)?;
            sync_parent(data)?;
            println!(
                "finished the upgrade of {} that stopped before its last step; format 1 is kept in {}",
                data.display(),
                kept.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        return Err(format!("{} holds no casetrail log", data.display()).into());
    }
    // Format 2's first layout is converted in place: the same blocks and indexes, sparser audit hashes.
    let converting = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("converting the audit hashes [{bar:40}] {pos} events")
            .expect("valid template")
            .progress_chars("=> "),
    );
    if let Some(head) = SledLog::convert_dense(&config(data), |n| converting.set_position(n))? {
        converting.finish_and_clear();
        println!(
            "converted {} from format 2's first layout: {} events, root {} (unchanged)",
            data.display(),
            head.size,
            head.root
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(old) = store::format1::Format1::open(data)? else {
        println!("{} is already in format 2: nothing to do", data.display());
        return Ok(ExitCode::SUCCESS);
    };
    let size = old.size()?;
    let old_root = old.root(size)?;
    if kept.exists() {
        return Err(format!(
            "{} exists already (an earlier upgrade's copy of format 1?); move it away first",
            kept.display()
        )
        .into());
    }
    if building.exists() {
        // What an interrupted upgrade left: never served, rebuilt from the start.
        std::fs::remove_dir_all(&building)?;
    }
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("upgrading to format 2 [{bar:40}] {pos}/{len} events ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let new = SledLog::open(data.settings_at(&building).store_config())?;
    let mut batch: Vec<Submitted> = Vec::with_capacity(BATCH_EVENTS_MAX);
    let mut events = old.events();
    loop {
        let next = events.next().transpose()?;
        if let Some((position, bytes)) = &next {
            let stored = domain::StoredEvent::from_canonical_bytes(bytes).map_err(|e| {
                format!("format 1, position {position}: {e}; run `casetrail verify` on it")
            })?;
            batch.push(Submitted::from(stored));
        }
        if batch.len() == BATCH_EVENTS_MAX || (next.is_none() && !batch.is_empty()) {
            let n = batch.len() as u64;
            new.append_blocking(AppendRequest {
                events: std::mem::take(&mut batch),
                source: "casetrail-upgrade".into(),
            })
            .map_err(|e| format!("format 1 holds events format 2 refuses: {e}"))?;
            progress.inc(n);
        }
        if next.is_none() {
            break;
        }
    }
    new.adopt(&old)?;
    let new_head = new.head();
    new.close();
    drop(new);
    drop(events);
    drop(old);
    progress.finish_and_clear();
    if new_head.size != size || new_head.root != old_root {
        return Err(format!(
            "the rewritten log ({} events, root {}) differs from format 1 ({size} events, root {old_root}); {} is left as it was",
            new_head.size,
            new_head.root,
            data.display()
        )
        .into());
    }
    // Everything that is not sled's own files (the signing key, indicator snapshots) is copied into the new
    // directory, so that the old one stays whole until the swap (the snapshots name positions and roots, which are
    // the same, so they stay valid).
    for entry in std::fs::read_dir(data)? {
        let entry = entry?;
        let file = entry.file_name();
        let f = file.to_string_lossy();
        if f == "db" || f == "conf" || f == "blobs" || f.starts_with("snap.") {
            continue;
        }
        copy_durably(&entry.path(), &building.join(&file))?;
    }
    std::fs::File::open(&building)?.sync_all()?;
    // sled's flusher lets go of the old directory's lock a moment after its last handle is dropped.
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::fs::rename(data, &kept)?;
    std::fs::rename(&building, data)?;
    sync_parent(data)?;
    println!(
        "upgraded {} to format 2: {size} events, root {old_root} (unchanged); format 1 is kept in {} until you remove it",
        data.display(),
        kept.display()
    );
    Ok(ExitCode::SUCCESS)
}
