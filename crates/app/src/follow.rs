//! The followers: tasks that run beside the single writer for as long as the service runs, and never hold it up.
//!
//! [`follow`] folds every committed event once into the catalogue (reference events) and the indicator tables, and
//! publishes how far the catalogue has folded (`App::catalogue_folded`): a write of reference data waits for that;
//! [`sign_periodically`] signs checkpoints of the head on a schedule. Both wait on the log's commit watch.

use crate::App;
use std::sync::Arc;

/// How long the follower leaves a commit before folding it into the live indicator engine. A question about a
/// position the engine has not reached folds the engine forward to it itself and is answered by the live engine;
/// one about a position the engine has passed needs a snapshot and a replay (tens to hundreds of milliseconds).
/// Leaving new commits a moment for the questions that follow them ("read your writes", here or on another node)
/// keeps them on the first path; the catalogue is not deferred.
pub const FOLD_DEFER: std::time::Duration = std::time::Duration::from_millis(100);

/// Follows commits: folds reference events into the catalogue at once, and every event into the indicator tables
/// `FOLD_DEFER` after the follower read it. It runs beside the writer and never holds it up.
pub async fn follow(app: Arc<App>) {
    use std::collections::VecDeque;
    use tokio::time::Instant;
    let mut watch = app.log.watch();
    // What the follower has read (and handed to the catalogue), and the pages waiting for the indicator engine.
    let mut read = app.indicators.position();
    let mut waiting: VecDeque<(Instant, Vec<domain::StoredEvent>)> = VecDeque::new();
    loop {
        let size = watch.borrow_and_update().size;
        while read < size {
            // On the blocking pool: on a shared database a read is a round trip.
            let log = app.log.clone();
            let after = read;
            let page = tokio::task::spawn_blocking(move || log.read_after(after, 1_000))
                .await
                .unwrap_or_else(|e| Err(store::StoreError::Unavailable(e.to_string())));
            match page {
                Ok(events) if !events.is_empty() => {
                    read = events.last().expect("not empty").position;
                    if events
                        .iter()
                        .any(|e| !e.event.event_type().is_dossier_event())
                    {
                        app.fold_reference(&events);
                    }
                    app.catalogue_folded(read);
                    waiting.push_back((Instant::now() + FOLD_DEFER, events));
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "the follower could not read the log");
                    break;
                }
            }
        }
        while let Some((due, _)) = waiting.front() {
            if *due > Instant::now() {
                break;
            }
            let (_, events) = waiting.pop_front().expect("a page is waiting");
            let worker = app.clone();
            let folded =
                tokio::task::spawn_blocking(move || worker.indicators.fold(&*worker.log, &events))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(why) = folded {
                // Read again from where the engine stands at the next commit (the catalogue folds each event
                // at most once however often it is handed one).
                tracing::error!(%why, "the indicator tables could not follow the log");
                waiting.clear();
                read = app.indicators.position();
                break;
            }
        }
        let next = waiting.front().map(|(due, _)| *due);
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = async {
                match next {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Reloads the credentials whenever the store says another process changed them (another node on the same
/// database issued or revoked a token): a token revoked anywhere is refused here too, and every stream and long
/// request it authorised ends (`App::revoked`), within the store's bound (`docs/scaling.md`).
pub async fn follow_credentials(app: Arc<App>) {
    let mut changed = app.log.credentials_changed();
    while changed.changed().await.is_ok() {
        // Until it succeeds: a change the store announced once is not announced again.
        loop {
            let log = app.log.clone();
            match tokio::task::spawn_blocking(move || log.credentials()).await {
                Ok(Ok(all)) => {
                    app.reload_credentials(all);
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the credentials could not be reloaded; retrying")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the credentials could not be reloaded; retrying")
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

/// Signs a checkpoint of the head when `checkpoint_every_secs` have passed since the last one, or
/// `checkpoint_every_events` events have arrived, whichever comes first, and only when the log has grown. It runs
/// beside the writer: signing reads the committed head and writes only the checkpoints tree.
pub async fn sign_periodically(app: Arc<App>) {
    use std::time::{Duration, Instant};
    let every_secs = app.settings.checkpoint_every_secs;
    let every_events = app.settings.checkpoint_every_events;
    if every_secs == 0 && every_events == 0 {
        return;
    }
    let mut commits = app.log.watch();
    let mut stopping = app.stopping.subscribe();
    let mut signed_size = match app.log.latest_checkpoint() {
        Ok(latest) => latest.map(|c| c.size),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the latest checkpoint; periodic checkpoints are off");
            return;
        }
    };
    let mut last_at = Instant::now();
    let period = Duration::from_secs(every_secs.max(1));
    loop {
        let size = commits.borrow_and_update().size;
        let signed = signed_size.unwrap_or(0);
        let grown = size > signed;
        let by_time = every_secs > 0 && last_at.elapsed() >= period;
        let by_count = every_events > 0 && size.saturating_sub(signed) >= every_events;
        // On a log several nodes serve, one of them signs on the schedule (`Checkpoints::periodic_signer`).
        if grown && (by_time || by_count) && app.log.periodic_signer() {
            let worker = app.clone();
            let signed = tokio::task::spawn_blocking(move || {
                worker
                    .notary
                    .checkpoint_head(&*worker.log, chrono::Utc::now())
            })
            .await;
            last_at = Instant::now();
            let failure = match signed {
                Ok(Ok(c)) => {
                    signed_size = Some(c.size);
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            // A store that refuses (a full disk) must not be retried in a tight loop: the count rule would say
            // "due" again at once. Wait a period (a second at least), or for the stop.
            tracing::error!(error = %failure, "could not sign a checkpoint; trying again later");
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stopping.changed() => return,
            }
            continue;
        }
        // Nothing due now. The timer is armed only while there is something to sign: with nothing new since the
        // last checkpoint its deadline may lie in the past, and a past deadline is always ready (a spinning loop).
        // A commit wakes the loop instead, and the deadline is then judged again.
        let deadline = tokio::time::Instant::from_std(last_at + period);
        tokio::select! {
            changed = commits.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(deadline), if every_secs > 0 && grown => {}
            _ = stopping.changed() => return,
        }
    }
}
