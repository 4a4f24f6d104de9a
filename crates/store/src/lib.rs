//! casetrail's log: the [`EventLog`] interface, and [`SledLog`], its implementation on sled.
//!
//! The log is append-only. One writer task owns every append and commits in groups: it drains what is queued,
//! decides every event against its stream, assigns gapless positions and versions, hashes the new leaves into the
//! audit tree, writes the whole group as compressed blocks in one atomic sled batch, flushes and fsyncs once, and
//! only then answers. The blocks are the only truth; the indexes are derived from them behind a watermark by an
//! indexer thread, and [`SledLog::rebuild_indexes`] recomputes them from the blocks alone.

pub mod block;
mod conformance_suite;
mod durable;
mod error;
pub mod format1;
pub(crate) mod index;
pub mod lsm;
mod merkle;
mod metrics;
mod sled_log;
#[doc(hidden)]
pub mod tamper;
mod trees;
mod writer;

pub use conformance_suite::conformance;

/// An event as stored: its position and its canonical bytes (the bytes its leaf hash is of).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub position: u64,
    pub bytes: Vec<u8>,
}

impl RawEvent {
    pub fn of(e: &StoredEvent) -> RawEvent {
        RawEvent {
            position: e.position,
            bytes: e.canonical_bytes(),
        }
    }
}
pub use error::{AppendError, EventRefusal, Refusal, StoreError};
pub use merkle::{record_hash, Hash, MemoryHashes};
pub use metrics::{Buckets, WriterMetrics};
pub use sled_log::{
    bare_sled_appends_per_sec, upgrade_stopped_halfway, Config, SledLog, Stats, StoredCheckpoint,
    VerifyReport,
};

use domain::{StoredEvent, StreamHead, Submitted};
use serde::Serialize;
use std::future::Future;
use uuid::Uuid;

/// The log's size and the audit tree's root at that size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Head {
    pub size: u64,
    /// Base64, as in C2SP checkpoints.
    #[serde(serialize_with = "merkle::serialize_hash")]
    pub root: Hash,
}

/// One batch to append, all or nothing.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub events: Vec<Submitted>,
    /// The name of the credential (or tool) writing; stored as each new event's `source`. Events that carry their
    /// stored fields (a restore from an export) keep their own.
    pub source: String,
}

/// What the log says of one event of an accepted batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub id: Uuid,
    pub position: u64,
    pub version: u64,
    /// The event was already in the log with the same content; this is its original receipt.
    pub replayed: bool,
}

/// The answer to an accepted batch: one receipt per event, in the batch's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppendOutcome {
    pub receipts: Vec<Receipt>,
}

impl AppendOutcome {
    /// True when every event was already stored: nothing new was written.
    pub fn all_replayed(&self) -> bool {
        self.receipts.iter().all(|r| r.replayed)
    }
}

/// The interface every log implementation offers, and that [`conformance`] checks.
///
/// Reads never wait for the writer. An `Ok` from [`EventLog::append`] means the batch is durable on disk.
pub trait EventLog: Send + Sync + 'static {
    /// Queues a batch for the writer and waits for its answer.
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send;

    /// Like [`EventLog::append`], for threads outside an async runtime.
    fn append_blocking(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError>;

    /// The committed size and root.
    fn head(&self) -> Head;

    /// The root of the tree of the first `size` events (`size <= head().size`).
    fn root_at(&self, size: u64) -> Result<Hash, StoreError>;

    /// The inclusion proof (RFC 6962 audit path) of the event at `position` in the tree of the first `size`
    /// events (`1 <= position <= size <= head().size`).
    fn prove_inclusion(&self, position: u64, size: u64) -> Result<Vec<Hash>, StoreError>;

    /// The consistency proof that the tree of the first `to` events extends the tree of the first `from`
    /// (`from <= to <= head().size`; empty when `from` is 0 or equals `to`).
    fn prove_consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError>;

    /// The event at a position.
    fn event(&self, position: u64) -> Result<Option<StoredEvent>, StoreError>;

    /// The event with an id.
    fn event_by_id(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError>;

    /// Up to `limit` events after `after`, in order.
    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every event of a stream (a dossier code, `agency/<code>`, …), in version order.
    fn stream(&self, stream: &str) -> Result<Vec<StoredEvent>, StoreError>;

    /// [`EventLog::read_after`], as each event's position and stored canonical bytes: what is sent on as it is
    /// stored (NDJSON, live streams) need not be decoded and encoded again.
    fn read_raw_after(&self, after: u64, limit: usize) -> Result<Vec<RawEvent>, StoreError> {
        Ok(self
            .read_after(after, limit)?
            .iter()
            .map(RawEvent::of)
            .collect())
    }

    /// [`EventLog::stream`], as stored canonical bytes.
    fn stream_raw(&self, stream: &str) -> Result<Vec<RawEvent>, StoreError> {
        Ok(self.stream(stream)?.iter().map(RawEvent::of).collect())
    }

    /// A stream's events stored before `position`, in order: what a read model that dropped the stream folds
    /// again to continue from `position`.
    fn stream_before(&self, stream: &str, position: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = self.stream(stream)?;
        events.retain(|e| e.position < position);
        Ok(events)
    }

    /// A stream's head: its last version and, for a dossier, its state. `None` for a stream with no events.
    fn stream_head(&self, stream: &str) -> Result<Option<StreamHead>, StoreError>;

    /// A receiver of the head after every commit: how followers learn of new events without polling. The writer
    /// publishes without ever waiting for a receiver.
    fn watch(&self) -> tokio::sync::watch::Receiver<Head>;
}
