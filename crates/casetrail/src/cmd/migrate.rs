//! `casetrail migrate`: a whole log from one store to another (a sled directory to a PostgreSQL database, or
//! back), with its credentials and signed checkpoints. Every event is restored with its stored fields through the
//! destination's writer, so the destination decides, numbers and hashes it as the source did: the same bytes at
//! the same positions, the same audit root. An interrupted migration resumes where the destination stops, once
//! the destination is shown to hold the source's first events (the roots at its size agree).

use super::*;
use store::StoredCheckpoint;

/// Events per batch (the most one batch may carry).
const BATCH: usize = BATCH_EVENTS_MAX;

/// Batches sent ahead of their answers: the destination's writer takes them in order and commits several at once.
const IN_FLIGHT: usize = 8;

/// A store named on the command line: a directory or a `postgres://` database.
fn settings_for(place: &str, state: Option<&Path>) -> app::Settings {
    let mut settings = app::Settings::new(place);
    settings.place(state.map(Path::to_path_buf));
    settings
}

pub fn migrate(from: &str, to: &str, state: Option<&Path>) -> Result<ExitCode> {
    if from == to {
        return Err("--from and --to name the same log".into());
    }
    let from_settings = settings_for(from, state);
    if from_settings.database.is_none() && !Path::new(from).join("db").exists() {
        return Err(format!("{from} holds no casetrail log").into());
    }
    let source = open_settings(&from_settings, true)?;
    let target = open_settings(&settings_for(to, state), false)?;
    let head = source.head();
    let start = target.head();
    if start.size > head.size {
        return Err(format!(
            "{} holds {} events, more than the {} of {}: it is another log",
            target.location(),
            start.size,
            head.size,
            source.location()
        )
        .into());
    }
    if start.size > 0 && source.root_at(start.size)? != start.root {
        return Err(format!(
            "{} holds {} events that are not the first {} of {} (the roots at that size differ): it is another log",
            target.location(),
            start.size,
            start.size,
            source.location()
        )
        .into());
    }
    if start.size > 0 {
        println!(
            "casetrail migrate: {} holds the first {} events already; resuming after them",
            target.location(),
            start.size
        );
    }
    let progress = ProgressBar::new(head.size).with_style(
        ProgressStyle::with_template("migrating [{bar:40}] {pos}/{len} events ({per_sec}, {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    progress.set_position(start.size);
    let started = std::time::Instant::now();
    copy_events(&*source, &*target, start.size, head.size, &progress)?;
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let (credentials, checkpoints) = copy_the_rest(&*source, &*target)?;
    let end = target.fresh_head()?;
    if end != head {
        return Err(format!(
            "after the migration {} has {} events, root {}; {} has {} events, root {}",
            target.location(),
            end.size,
            end.root,
            source.location(),
            head.size,
            head.root
        )
        .into());
    }
    let moved = head.size - start.size;
    println!(
        "migrated {moved} events in {secs:.1} s ({:.0} events/s), {credentials} credentials and {checkpoints} checkpoints; {} now has {} events, root {} (the same as {})",
        moved as f64 / secs.max(1e-9),
        target.location(),
        end.size,
        end.root,
        source.location()
    );
    target.close();
    Ok(ExitCode::SUCCESS)
}

/// Restores the source's events `after + 1 ..= to` into the target, batch by batch, a few batches in flight.
fn copy_events(
    source: &dyn Store,
    target: &dyn Store,
    after: u64,
    to: u64,
    progress: &ProgressBar,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut waiting = std::collections::VecDeque::new();
        let mut at = after;
        while at < to || !waiting.is_empty() {
            while at < to && waiting.len() < IN_FLIGHT {
                let events = source.read_after(at, BATCH.min((to - at) as usize))?;
                let Some(last) = events.last().map(|e| e.position) else {
                    return Err(format!("{} ends at {at}, before {to}", source.location()).into());
                };
                let n = events.len() as u64;
                let request = AppendRequest {
                    events: events.into_iter().map(Submitted::from).collect(),
                    source: "migrate".into(),
                };
                // Queued now, in order: the writer takes the batches as they were sent.
                waiting.push_back((n, target.append(request)));
                at = last;
            }
            if let Some((n, answer)) = waiting.pop_front() {
                match answer.await {
                    Ok(_) => progress.inc(n),
                    Err(AppendError::Refused(r)) => {
                        return Err(format!(
                            "{} refused event {} of a batch ({}): {}; nothing after the events before it was written",
                            target.location(),
                            r[0].index,
                            r[0].id,
                            r[0].refusal
                        )
                        .into())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// Copies the credentials the target lacks (by name, revoked ones as revoked) and every signed checkpoint.
fn copy_the_rest(source: &dyn Store, target: &dyn Store) -> Result<(usize, usize)> {
    let there: std::collections::HashMap<String, domain::Credential> = target
        .credentials()?
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    let mut credentials = 0;
    for c in source.credentials()? {
        match there.get(&c.name) {
            None => {
                target.add_credential(&c)?;
                credentials += 1;
            }
            Some(t)
                if (&t.token_sha256, t.role, &t.agency) != (&c.token_sha256, c.role, &c.agency) =>
            {
                return Err(format!(
                    "{} has another credential named {:?}; remove one of them first",
                    target.location(),
                    c.name
                )
                .into())
            }
            // Revoked at the source since an earlier migration: revoked here too, at the source's time.
            Some(t) if t.revoked_at.is_none() && c.revoked_at.is_some() => {
                target.revoke_credential(&c.name, c.revoked_at.unwrap_or_else(chrono::Utc::now))?;
                credentials += 1;
            }
            Some(_) => {}
        }
    }
    let mut checkpoints = 0;
    let mut after = None;
    loop {
        let page: Vec<StoredCheckpoint> = source.checkpoints(after, 1_000)?;
        let Some(last) = page.last().map(|c| c.size) else {
            break;
        };
        for c in &page {
            // The signed note is the checkpoint; `issued_at` is kept to the store's precision (microseconds on
            // PostgreSQL).
            let kept = target.add_checkpoint(c)?;
            if (kept.size, &kept.note) != (c.size, &c.note) {
                return Err(format!(
                    "{} holds another checkpoint at size {}",
                    target.location(),
                    c.size
                )
                .into());
            }
            checkpoints += 1;
        }
        after = Some(last);
    }
    Ok((credentials, checkpoints))
}
