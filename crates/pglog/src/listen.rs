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
pub async fn read_head(client: &tokio_postgres::Client) -> Result<Head, StoreError> {
    let row = client
        .query_one("SELECT size, root FROM log_head WHERE id = 1", &[])
        .await
        .map_err(db)?;
    Ok(Head {
        size: row.get::<_, i64>(0) as u64,
        root: crate::hash_of(row.get::<_, &[u8]>(1))?,
    })
}

/// Follows the database's head until `stop` turns true.
pub async fn follow(
    session: tokio_postgres::Config,
    poll: Duration,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        if let Err(e) = listen_once(&session, poll, &shared, &mut stop).await {
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
    stop: &mut watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let (client, mut connection) = session.connect(tokio_postgres::NoTls).await.map_err(db)?;
    let (notified, mut notifications) = tokio::sync::mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    let _ = notified.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let result = async {
        client
            .batch_execute("LISTEN casetrail_head")
            .await
            .map_err(db)?;
        loop {
            let before = shared.size();
            shared.observe(before, read_head(&client).await?);
            tokio::select! {
                got = notifications.recv() => {
                    if got.is_none() {
                        return Err(StoreError::Unavailable("the listener's session closed".into()));
                    }
                    // Many commits may have notified: one read covers them all.
                    while notifications.try_recv().is_ok() {}
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
    driver.abort();
    result
}
