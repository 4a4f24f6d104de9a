//! The queue in front of a store's writer: what a caller hands it, how a caller waits, and how the writer takes
//! one group from it. Every store's writer uses these, so that appends are queued, bounded and grouped alike.

use crate::{AppendError, AppendOutcome, AppendRequest};
use tokio::sync::{mpsc, oneshot};

/// Where the writer sends a request's answer.
pub type Reply = oneshot::Sender<Result<AppendOutcome, AppendError>>;

/// One request waiting for the writer.
pub struct Job {
    pub request: AppendRequest,
    pub reply: Reply,
}

fn stopped<T>(_: T) -> AppendError {
    AppendError::Unavailable("the log writer has stopped".into())
}

/// Queues `request` at once (so that requests sent one after another are taken in that order, whenever their
/// answers are awaited), then waits for its answer. Only when the queue is full does queueing itself wait.
pub fn send(
    sender: mpsc::Sender<Job>,
    request: AppendRequest,
) -> impl std::future::Future<Output = Result<AppendOutcome, AppendError>> + Send + 'static {
    let (reply, answer) = oneshot::channel();
    let queued = match sender.try_send(Job { request, reply }) {
        Ok(()) => Ok(None),
        Err(mpsc::error::TrySendError::Full(job)) => Ok(Some(job)),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(stopped(())),
    };
    async move {
        if let Some(job) = queued? {
            sender.send(job).await.map_err(stopped)?;
        }
        answer.await.map_err(stopped)?
    }
}

/// [`send`], for a thread outside an async runtime.
pub fn send_blocking(
    sender: &mpsc::Sender<Job>,
    request: AppendRequest,
) -> Result<AppendOutcome, AppendError> {
    let (reply, answer) = oneshot::channel();
    sender
        .blocking_send(Job { request, reply })
        .map_err(stopped)?;
    answer.blocking_recv().map_err(stopped)?
}

/// Waits for the next request, then takes what else is queued, up to `events_max` events in all: one group.
/// `None` once every sender is gone and the queue is empty.
pub fn next_group(rx: &mut mpsc::Receiver<Job>, events_max: usize) -> Option<Vec<Job>> {
    let first = rx.blocking_recv()?;
    let mut events = first.request.events.len();
    let mut jobs = vec![first];
    while events < events_max {
        match rx.try_recv() {
            Ok(job) => {
                events += job.request.events.len();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
    Some(jobs)
}
