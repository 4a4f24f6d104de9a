//! casetrail's log: the interface every store offers ([`Store`]: [`EventLog`], [`Credentials`], [`Checkpoints`],
//! [`Maintenance`]), and [`SledLog`], its implementation on sled. The PostgreSQL implementation is the `pglog`
//! crate; what both share of the writer's decisions and the audit tree is in [`shared`].
//!
//! The log is append-only. One writer task owns every append and commits in groups: it drains what is queued,
//! decides every event against its stream, assigns gapless positions and versions, hashes the new leaves into the
//! audit tree, writes the whole group as compressed blocks in one atomic sled batch, flushes and fsyncs once, and
//! only then answers. The blocks are the only truth; the indexes are derived from them behind a watermark by an
//! indexer thread, and [`SledLog::rebuild_indexes`] recomputes them from the blocks alone.

pub mod block;
mod conformance_suite;
pub mod decide;
mod durable;
mod error;
pub mod format1;
pub(crate) mod index;
pub mod lsm;
pub mod merkle;
mod metrics;
pub mod queue;
mod sled_log;
#[doc(hidden)]
pub mod tamper;
mod trees;
mod writer;

pub use conformance_suite::conformance;

/// Decodes a stored event from its canonical bytes, with the read-side pair assertion (its invariants, and that it
/// sits at `position`): what every store reads events with.
pub fn decode_stored(position: u64, bytes: &[u8]) -> Result<StoredEvent, StoreError> {
    trees::Trees::decode(position, bytes)
}

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

use chrono::{DateTime, Utc};
use domain::{Credential, StoredEvent, StreamHead, Submitted};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

/// A future the caller owns outright: what the store's asynchronous methods return, so that a store can be used
/// as `dyn Store`.
pub type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Receipt {
    pub id: Uuid,
    pub position: u64,
    pub version: u64,
    /// The event was already in the log with the same content; this is its original receipt.
    pub replayed: bool,
}

/// The answer to an accepted batch: one receipt per event, in the batch's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AppendOutcome {
    pub receipts: Vec<Receipt>,
}

impl AppendOutcome {
    /// True when every event was already stored: nothing new was written.
    pub fn all_replayed(&self) -> bool {
        self.receipts.iter().all(|r| r.replayed)
    }
}

/// An append's answer as one node sends it to another (the elected writer's answer to a batch handed to it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppendAnswer {
    Outcome(AppendOutcome),
    Error(AppendError),
}

/// The interface every log implementation offers, and that [`conformance`] checks.
///
/// Reads never wait for the writer. An `Ok` from [`EventLog::append`] means the batch is durable on disk.
pub trait EventLog: Send + Sync + 'static {
    /// Queues a batch for the writer and waits for its answer.
    fn append(&self, request: AppendRequest) -> Boxed<Result<AppendOutcome, AppendError>>;

    /// Like [`EventLog::append`], but always by this process's own writer, never handed to another node's: what
    /// the elected writer does with a batch another node forwarded to it.
    fn append_here(&self, request: AppendRequest) -> Boxed<Result<AppendOutcome, AppendError>> {
        self.append(request)
    }

    /// Like [`EventLog::append`], for threads outside an async runtime.
    fn append_blocking(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError>;

    /// The committed size and root, as this process last learned it (at once for its own writes).
    fn head(&self) -> Head;

    /// The committed size and root as the store holds them now: for a store that other processes write (several
    /// nodes on one database), what a reader asked for a position another node acknowledged must catch up to.
    /// Never before [`EventLog::head`].
    fn fresh_head(&self) -> Result<Head, StoreError> {
        Ok(self.head())
    }

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

    /// The keys of every stream whose key starts with `prefix` (`agency/`, `procedure/`, `targets/`), sorted.
    fn stream_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Calls `fold` with every event from position `after + 1` through `to` (or the head, if that comes first),
    /// in order: the replay path. Returns how many events were folded.
    fn replay_to(
        &self,
        after: u64,
        to: u64,
        fold: &mut dyn FnMut(StoredEvent),
    ) -> Result<u64, StoreError> {
        let to = to.min(self.head().size);
        let (mut at, mut folded) = (after, 0);
        while at < to {
            let page = self.read_after(at, REPLAY_PAGE.min((to - at) as usize))?;
            let Some(last) = page.last().map(|e| e.position) else {
                break;
            };
            for e in page {
                fold(e);
                folded += 1;
            }
            at = last;
        }
        Ok(folded)
    }

    /// Calls `each` with the position and stored canonical bytes of every event from `after + 1` through the
    /// head (read once at the start), in order, until it answers false: the export path.
    fn scan_raw_until(
        &self,
        after: u64,
        each: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let to = self.head().size;
        let mut at = after;
        while at < to {
            let page = self.read_raw_after(at, REPLAY_PAGE.min((to - at) as usize))?;
            let Some(last) = page.last().map(|e| e.position) else {
                break;
            };
            for e in &page {
                if !each(e.position, &e.bytes) {
                    return Ok(());
                }
            }
            at = last;
        }
        Ok(())
    }
}

/// How many events the default [`EventLog::replay_to`] reads at a time.
const REPLAY_PAGE: usize = 10_000;

/// What a revocation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The credential was live and is revoked now.
    Revoked,
    /// There is no live credential of that name.
    NoLiveCredential,
    /// It is the last live admin credential, which is never revoked.
    LastAdmin,
}

/// Whether revoking `name` would leave no live admin credential: it is the only live one. `live` holds the live
/// credentials only. Every store decides the rule with this.
pub fn last_admin(live: &[Credential], name: &str) -> bool {
    let admins = live
        .iter()
        .filter(|c| c.role == domain::Role::Admin)
        .count();
    admins == 1
        && live
            .iter()
            .any(|c| c.name == name && c.role == domain::Role::Admin)
}

/// Credentials: configuration beside the log, not events (neither in the log nor in its audit tree). Every
/// write is durable before it returns, and every store decides the last-admin rule in the same step as the
/// revocation, so that two revocations at once (from two processes too) cannot remove the last admin.
pub trait Credentials {
    /// Stores a new credential. Its name must be new.
    fn add_credential(&self, credential: &Credential) -> Result<(), StoreError>;

    /// Every credential, revoked ones included, by name.
    fn credentials(&self) -> Result<Vec<Credential>, StoreError>;

    /// Revokes the live credential `name` at `at`, unless it is the last live admin credential.
    fn revoke_credential(&self, name: &str, at: DateTime<Utc>) -> Result<Revoked, StoreError>;

    /// The live credential whose token hashes to `token_sha256`.
    fn credential_by_token_sha256(
        &self,
        token_sha256: &str,
    ) -> Result<Option<Credential>, StoreError>;

    /// Moves whenever a credential may have been added or revoked by another process (another node on the same
    /// database): what a service that keeps credentials in memory reloads them on. A store only one process opens
    /// (sled) never moves it: its receiver reports the sender gone.
    fn credentials_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }
}

/// The signed checkpoints issued over the log. What was signed cannot be derived again, so no rebuild touches them.
pub trait Checkpoints {
    /// Stores a signed checkpoint of the first `checkpoint.size` events, durably. The first one stored at a size
    /// is kept: when one exists already, nothing is written and that one is returned.
    fn add_checkpoint(&self, checkpoint: &StoredCheckpoint)
        -> Result<StoredCheckpoint, StoreError>;

    /// The checkpoint stored at `size`.
    fn checkpoint(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// The checkpoint of the largest size.
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// Whether this process is the one that signs checkpoints on a schedule (and at its stop). On a log several
    /// processes serve, one at a time is, so that nodes do not each sign their own every minute; any process may
    /// still sign one on demand. A log only one process opens: always.
    fn periodic_signer(&self) -> bool {
        true
    }

    /// Up to `limit` checkpoints of sizes above `after` (every size when `None`), by size.
    fn checkpoints(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError>;
}

/// What operators and the server's health checks use: what the store is, its state, its maintenance.
pub trait Maintenance {
    /// Where the log is, for messages: a directory, or a database with the password left out.
    fn location(&self) -> String;

    /// The writer's counters and timings.
    fn metrics(&self) -> &WriterMetrics;

    /// Why the log refuses writes, if it does (a failed write until it is reopened, an inspection-only open, a
    /// database that went backwards).
    fn write_failure(&self) -> Option<String>;

    /// Resolves, with why, once the storage under the log has stopped answering: a caller waiting on a read
    /// answers instead of waiting as long as the storage does.
    fn unresponsive(&self) -> Boxed<String>;

    /// How long a write may wait on the storage before it is taken as stalled.
    fn stall_bound(&self) -> std::time::Duration;

    /// Stops accepting appends, answers what was queued, and waits for the store's own threads. Idempotent.
    fn close(&self);

    /// Counts and sizes for `casetrail stats`.
    fn stats(&self) -> Result<Stats, StoreError>;

    /// Re-hashes every stored event, recomputes the root, checks every stream against its rules and every index
    /// against the events; names the first bad position.
    fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport, StoreError>;

    /// Rebuilds every derived structure (ids, heads, streams, audit hashes) from the events alone. Needs the
    /// writer idle.
    fn rebuild_indexes(&self, progress: &mut dyn FnMut(u64)) -> Result<Head, StoreError>;

    /// For a log that several processes serve: records, the first time, the verifier key checkpoints are signed
    /// with and the settings that change what is accepted or counted (`rules`, one per line), and refuses a
    /// process whose key or rules differ from those recorded, naming the difference. A log only one process
    /// opens (sled) records nothing.
    fn pin(&self, verifier_key: &str, rules: &str) -> Result<(), StoreError> {
        let _ = (verifier_key, rules);
        Ok(())
    }

    /// For a log that several processes serve: takes part in electing the one writer the others hand their
    /// batches to. `address` is where the other nodes reach this one (`None`: it never takes the role, and hands
    /// nothing on either); `secret` is what a forwarded batch carries to be taken. A log only one process opens
    /// (sled) has nothing to elect.
    fn elect(&self, address: Option<String>, secret: String) {
        let _ = (address, secret);
    }
}

/// A whole store: what the service and the commands hold, as `Arc<dyn Store>`.
pub trait Store: EventLog + Credentials + Checkpoints + Maintenance {}

impl Store for SledLog {}
