//! How a node learns of commits made by the others: a session of its own that `LISTEN`s on `casetrail_head`
//! (every group transaction notifies, and PostgreSQL delivers a notification only once its transaction has
//! committed), and reads `log_head` at every notification and at least every poll interval anyway (a notification
//! can be lost with its session; a hot standby delivers none). Listening starts before the first read, and both are
//! done again after every reconnection, so that no commit falls between them. The node's head only moves forward
//! (`Shared::observe`).

use crate::{db, Shared};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use store::{Head, StoreError};
use tokio::sync::watch;

/// The committed head as `log_head` holds it.
pub async fn read_head(client: &impl tokio_postgres::GenericClient) -> Result<Head, StoreError> {
    let row = client
        .query_one("SELECT size, root FROM log_head WHERE id = 1", &[])
        .await
        .map_err(db)?;
    Ok(Head {
        size: row.get::<_, i64>(0) as u64,
        root: crate::hash_of(row.get::<_, &[u8]>(1))?,
    })
}

/// How many credentials there are, and how many are live.
async fn credential_count(client: &tokio_postgres::Client) -> Result<(i64, i64), StoreError> {
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE revoked_at IS NULL) FROM credentials",
            &[],
        )
        .await
        .map_err(db)?;
    Ok((row.get(0), row.get(1)))
}

/// Follows the database's head until `stop` turns true.
pub async fn follow(
    session: tokio_postgres::Config,
    poll: Duration,
    shared: Arc<Shared>,
    node: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        if let Err(e) = listen_once(&session, poll, &shared, &node, &mut stop).await {
            tracing::warn!(error = %e, "the head listener lost the database; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        } else {
            backoff = Duration::from_millis(100);
        }
    }
}

async fn listen_once(
    session: &tokio_postgres::Config,
    poll: Duration,
    shared: &Shared,
    node: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let (client, mut connection) = session.connect(tokio_postgres::NoTls).await.map_err(db)?;
    let (notified, mut notifications) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    let _ = notified.send(n.channel() == "casetrail_credentials");
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let result = async {
        client
            .batch_execute("LISTEN casetrail_head; LISTEN casetrail_credentials")
            .await
            .map_err(db)?;
        // Whatever changed while no session listened is reloaded once.
        shared.credentials.send_modify(|n| *n += 1);
        // The periodic signer is whoever's listener session holds this lock: one node at a time, and another
        // takes over within a poll once that session ends (a node stopped, killed or cut off).
        let mut signer = false;
        let mut counted = None;
        // The writer's election, once a poll (notifications may wake the loop thousands of times a second).
        let mut elected_at: Option<tokio::time::Instant> = None;
        loop {
            if elected_at.is_none_or(|at| at.elapsed() >= poll) {
                shared.election.round(&client, node).await?;
                elected_at = Some(tokio::time::Instant::now());
            }
            let before = shared.size();
            shared.observe(before, read_head(&client).await?);
            // A count of live and all credentials, each round: a change a lost notification hid is seen anyway.
            let count = credential_count(&client).await?;
            if counted.is_some_and(|c| c != count) {
                shared.credentials.send_modify(|n| *n += 1);
            }
            counted = Some(count);
            if !signer {
                signer = client
                    .query_one("SELECT pg_try_advisory_lock(7238402920)", &[])
                    .await
                    .map_err(db)?
                    .get(0);
                shared
                    .signer
                    .store(signer, std::sync::atomic::Ordering::SeqCst);
            }
            tokio::select! {
                got = notifications.recv() => {
                    let Some(credentials) = got else {
                        return Err(StoreError::Unavailable("the listener's session closed".into()));
                    };
                    // Many commits may have notified: one read covers them all.
                    let mut credentials = credentials;
                    while let Ok(c) = notifications.try_recv() {
                        credentials |= c;
                    }
                    if credentials {
                        shared.credentials.send_modify(|n| *n += 1);
                    }
                }
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => return Ok(()),
            }
            if *stop.borrow() {
                return Ok(());
            }
        }
    }
    .await;
    shared
        .signer
        .store(false, std::sync::atomic::Ordering::SeqCst);
    shared.election.lost_session();
    driver.abort();
    result
}
