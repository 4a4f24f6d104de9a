//! The sled implementation of [`EventLog`], format 2 (`docs/storage.md` has the why).
//!
//! Trees (numbers in keys are big-endian `u64`, so that they sort as numbers):
//! - `log`: the only truth. `b ‖ first position` → a block of consecutive events of one commit group
//!   ([`crate::block`]); `l ‖ first position` → the first 4 bytes of each of the group's leaf hashes;
//!   `t ‖ first index` → the audit-tree hashes at level 8 and up that the group completed ([`crate::merkle`]).
//!   A group is one atomic sled batch on this one tree.
//! - `index`, `filters`: the derived entries (ids, stream heads, positions), a merge tree written by the indexer
//!   behind its watermark ([`crate::index`], [`crate::lsm`]).
//! - `meta`: the format marker, the merge tree's manifest (with the watermark), and a flag while indexes are
//!   being rebuilt.
//! - `credentials`: name → credential (role, scope, SHA-256 of the token); `credential_hashes`: SHA-256 → name.
//!   Credentials are configuration, not events: they are not in the log nor in its audit tree.
//! - `checkpoints`: tree size → a signed checkpoint issued at that size (`StoredCheckpoint`, JSON). What was
//!   signed cannot be derived again (signatures are made once), so `rebuild-indexes` leaves this tree alone.
//!
//! The parts: [`open`] (opening, upgrading in place, adopting a format-1 log's configuration), [`credentials`]
//! (tokens and signed checkpoints), [`replay`] (scans and folds), [`maintenance`] (stats, rebuild), [`verify`].

mod credentials;
mod maintenance;
mod open;
mod replay;
mod verify;

pub use credentials::StoredCheckpoint;
pub use maintenance::Stats;
pub(crate) use open::open_db;
pub use open::{bare_sled_appends_per_sec, upgrade_stopped_halfway};
pub use verify::VerifyReport;

use crate::index::{self, SharedTail};
use crate::metrics::WriterMetrics;
use crate::trees::Trees;
use crate::writer::{Clock, Job};
use crate::{AppendError, AppendOutcome, AppendRequest, EventLog, Head, StoreError};
use chrono::{DateTime, Utc};
use domain::{StoredEvent, StreamHead};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tlog_tiles::Hash;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// The format this code writes. Format 1 (one sled key per event in an `events` tree, indexes written in the same
/// transaction) is read only by `casetrail upgrade`, which also converts format 2's first layout (every audit hash
/// stored, `h` keys; marker [`FORMAT_2_DENSE`]) in place.
pub const FORMAT: &[u8] = b"casetrail-log-v2.1";
pub const FORMAT_2_DENSE: &[u8] = b"casetrail-log-v2";
pub const FORMAT_1: &[u8] = b"casetrail-log-v1";
const REBUILDING: &[u8] = b"rebuilding";
/// Waiting appends beyond this many make senders wait: a bound on memory under overload.
const QUEUE_REQUESTS_MAX: usize = 16_384;
/// zstd level for blocks: level 1 compresses events about 6.8 times at about 1M events/s per core
/// (`docs/benchmarks.md`); higher levels cost more than they save here.
const ZSTD_LEVEL: i32 = 1;

/// How to open a log.
#[derive(Clone)]
pub struct Config {
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_capacity_bytes: u64,
    /// How far ahead of the server clock a business time may be.
    pub clock_skew: chrono::Duration,
    /// fsync the database file after each group's flush. Off only in benchmarks that measure its cost.
    pub fsync: bool,
    /// The most events the writer takes into one group.
    pub group_events_max: usize,
    /// The server clock; replaceable so that tests and simulations can set the time.
    pub clock: Clock,
    /// Open to look, not to write: skip the open-time index checks (so that `verify` can report what is wrong
    /// and `rebuild-indexes` can mend it), write nothing at open (events the indexes lag behind are indexed in
    /// memory only), and refuse every append.
    pub inspection: bool,
    /// How long the indexer lets committed events wait before writing their index entries (at most; it writes
    /// sooner once [`index::FLUSH_EVENTS`] wait). Longer only in tests that kill a process while indexes lag.
    pub index_flush_after: std::time::Duration,
    /// How long a write to the disk may go unfinished before the store takes the disk as stalled: an append still
    /// waiting then is answered `Unavailable`, a write outside the writer (a checkpoint, a credential) stops being
    /// waited for, and the store refuses writes until it is reopened.
    pub stall: std::time::Duration,
}

impl Config {
    pub fn new(path: impl Into<PathBuf>) -> Config {
        Config {
            path: path.into(),
            cache_capacity_bytes: 256 * 1024 * 1024,
            clock_skew: chrono::Duration::seconds(domain::stream::DEFAULT_CLOCK_SKEW_SECS),
            fsync: true,
            group_events_max: 8_192,
            clock: Arc::new(Utc::now),
            inspection: false,
            index_flush_after: index::FLUSH_AFTER,
            stall: std::time::Duration::from_secs(30),
        }
    }

    pub fn clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Config {
        self.clock = Arc::new(clock);
        self
    }
}

/// The log on sled. Dropping it (or [`SledLog::close`]) stops the writer after it has answered what was queued,
/// and the indexer after it has written what the writer handed it.
pub struct SledLog {
    trees: Trees,
    fsync: bool,
    tail: SharedTail,
    dir: PathBuf,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    head: watch::Receiver<Head>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: Arc<WriterMetrics>,
    failed: Arc<std::sync::OnceLock<String>>,
    /// Why the disk is taken as stalled, once it is (a write waited past `stall`); `failed` is set with it.
    stalled: Arc<std::sync::OnceLock<String>>,
    stall: std::time::Duration,
}

impl SledLog {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn metrics(&self) -> &WriterMetrics {
        &self.metrics
    }

    /// Why the log refuses writes, if it does: a write failed (until the log is reopened), or it was opened for
    /// inspection.
    pub fn write_failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// Stops accepting appends, lets the writer answer everything queued and the indexer write what it was
    /// handed, and waits for both. Idempotent.
    pub fn close(&self) {
        drop(self.sender.lock().expect("sender lock").take());
        if let Some(handle) = self.writer.lock().expect("writer lock").take() {
            if handle.join().is_err() {
                eprintln!("casetrail: the log writer panicked");
            }
        }
        // The writer held the indexer's only sender: with it gone, the indexer writes what it has and ends.
        if let Some(handle) = self.indexer.lock().expect("indexer lock").take() {
            if handle.join().is_err() {
                eprintln!("casetrail: the log indexer panicked");
            }
        }
        if self.failed.get().is_some() {
            // Every acknowledged event was flushed before its answer; a last flush on a disk that failed (or stopped
            // answering) can only wait. What the indexer wrote since is rebuilt from the log at the next open.
            return;
        }
        if self.fsync {
            // What the indexer wrote last (its larger filters may be blob files) survives a power cut too.
            let _ = sync(&self.trees, &self.dir);
        } else {
            let _ = self.trees.db.flush();
        }
    }

    /// The position through which the index trees are complete (the rest is in memory).
    pub fn indexed_through(&self) -> Result<u64, StoreError> {
        self.trees.index.watermark()
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, AppendError> {
        // The writer would refuse it too; a writer waiting on a stalled disk would not answer it at all.
        if let Some(why) = self.failed.get() {
            return Err(AppendError::Unavailable(why.clone()));
        }
        self.sender
            .lock()
            .expect("sender lock")
            .clone()
            .ok_or_else(|| AppendError::Unavailable("the log is shutting down".into()))
    }

    /// The keys of every stream whose key starts with `prefix` (`agency/`, `procedure/`, `targets/`), sorted.
    pub fn stream_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys: std::collections::BTreeSet<String> = self
            .tail
            .read()
            .expect("tail lock")
            .streams
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.extend(self.trees.index.stream_keys(prefix)?);
        Ok(keys.into_iter().collect())
    }

    /// Runs `write`, a write outside the writer (a credential, a checkpoint) with its flush, on a thread of its
    /// own and waits at most the stall bound for it: a disk that stops answering leaves that thread waiting, not
    /// the caller. Refused at once while the log refuses writes; one that does not finish in time makes it refuse
    /// them, as a failed write does.
    fn write_outside<T: Send + 'static>(
        &self,
        what: &str,
        write: impl FnOnce(&Trees, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if let Some(why) = self.failed.get() {
            return Err(StoreError::Unavailable(why.clone()));
        }
        let (trees, dir) = (self.trees.clone(), self.dir.clone());
        let (done, answer) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("casetrail-aside".into())
            .spawn(move || {
                let _ = done.send(write(&trees, &dir));
            })?;
        match answer.recv_timeout(self.stall) {
            Ok(written) => written,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(StoreError::Unavailable(
                self.watch_stall().declare(&format!("writing {what}")),
            )),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(StoreError::Unavailable(
                format!("writing {what} ended without an answer"),
            )),
        }
    }

    fn watch_stall(&self) -> StallWatch {
        StallWatch {
            metrics: self.metrics.clone(),
            failed: self.failed.clone(),
            stalled: self.stalled.clone(),
            bound: self.stall,
        }
    }

    /// Resolves, with why, once the disk under the log has stopped answering: a write of the log (the writer's
    /// group, the indexer's run, a credential or a checkpoint) has waited longer than the stall bound. From then
    /// on a read may wait as long as the disk does (sled lets no read past a write waiting for its lock, and that
    /// write waits for the flush the disk holds up), so a caller waiting on a read answers instead.
    pub fn unresponsive(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let (watch, check) = (self.watch_stall(), self.stall.min(STALL_CHECK));
        async move {
            loop {
                if let Some(why) = watch.stalled() {
                    return why;
                }
                tokio::time::sleep(check).await;
            }
        }
    }

    /// The stall bound: how long a write may wait on the disk before the disk is taken as stalled.
    pub fn stall_bound(&self) -> std::time::Duration {
        self.stall
    }
}

/// How often a caller waiting on the log looks whether the disk has stalled.
const STALL_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// What tells a stalled disk, owned so that a caller waiting on the log can carry it.
struct StallWatch {
    metrics: Arc<WriterMetrics>,
    failed: Arc<std::sync::OnceLock<String>>,
    stalled: Arc<std::sync::OnceLock<String>>,
    bound: std::time::Duration,
}

impl StallWatch {
    /// Takes the disk as stalled (`doing` did not finish within the bound): from now on the log refuses writes
    /// until it is reopened. Returns why (the first reason, if it was taken as stalled already).
    fn declare(&self, doing: &str) -> String {
        let why = self.stalled.get_or_init(|| {
            format!(
                "{doing} did not finish within {} s (the disk does not answer); the store refuses writes until it is reopened",
                self.bound.as_secs_f64()
            )
        });
        let _ = self.failed.set(why.clone());
        why.clone()
    }

    /// Why the disk is stalled, if it is: taken so already, or the writer has been on one group, or the indexer
    /// on one run, for longer than the bound.
    fn stalled(&self) -> Option<String> {
        if let Some(why) = self.stalled.get() {
            return Some(why.clone());
        }
        let past =
            |busy: &crate::metrics::Busy| busy.for_how_long().is_some_and(|t| t > self.bound);
        if past(&self.metrics.writing) {
            return Some(self.declare("a group's write"));
        }
        past(&self.metrics.indexing).then(|| self.declare("the indexer's write"))
    }
}

/// Flush and fsync, for the rare writes outside the writer (credentials, checkpoints) and the last one at close.
fn sync(trees: &Trees, dir: &Path) -> Result<(), StoreError> {
    crate::durable::Syncer::open(dir)?.flush_and_sync(|| trees.db.flush().map(|_| ()))
}

impl Drop for SledLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl EventLog for SledLog {
    fn append(&self, request: AppendRequest) -> crate::Boxed<Result<AppendOutcome, AppendError>> {
        // Queued now, not when first polled: appends are taken in the order they were made.
        let answered = self.sender().map(|s| crate::queue::send(s, request));
        let unresponsive = self.unresponsive();
        Box::pin(async move {
            let answered = answered?;
            // A writer that stays on one group past the stall bound is waiting for a disk that does not answer:
            // the request is answered then (its events may still reach the disk later; the same ids make a
            // retry safe), and so is every later one, at once.
            tokio::select! {
                biased;
                answer = answered => answer,
                why = unresponsive => Err(AppendError::Unavailable(why)),
            }
        })
    }

    fn append_blocking(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        crate::queue::send_blocking(&self.sender()?, request)
    }

    fn head(&self) -> Head {
        *self.head.borrow()
    }

    fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        crate::merkle::check_size(size, self.head().size)?;
        self.trees.root(size)
    }

    fn prove_inclusion(&self, position: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        crate::merkle::check_inclusion(position, size, self.head().size)?;
        self.trees
            .with_hashes(|h| tlog_tiles::prove_record(size, position - 1, h))
    }

    fn prove_consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        crate::merkle::check_consistency(from, to, self.head().size)?;
        if from == 0 {
            // Every tree extends the empty tree: nothing to prove.
            return Ok(Vec::new());
        }
        self.trees
            .with_hashes(|h| tlog_tiles::prove_tree(to, from, h))
    }

    fn event(&self, position: u64) -> Result<Option<StoredEvent>, StoreError> {
        if position > self.head().size {
            return Ok(None);
        }
        self.trees.event(position)
    }

    fn event_by_id(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        match index::id_position(&self.trees.index, &self.tail, id)? {
            Some(p) if p <= self.head().size => self.trees.event(p),
            _ => Ok(None),
        }
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let size = self.head().size;
        self.scan(after)
            .take_while(|e| e.as_ref().map_or(true, |e| e.position <= size))
            .take(limit)
            .collect()
    }

    fn stream(&self, stream: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let size = self.head().size;
        let positions = index::stream_positions(&self.trees.index, &self.tail, stream, size)?;
        self.trees.events_at(&positions)
    }

    fn read_raw_after(&self, after: u64, limit: usize) -> Result<Vec<crate::RawEvent>, StoreError> {
        let size = self.head().size;
        self.scan_raw(after)
            .take_while(|e| e.as_ref().map_or(true, |(p, _)| *p <= size))
            .take(limit)
            .map(|e| e.map(|(position, bytes)| crate::RawEvent { position, bytes }))
            .collect()
    }

    fn stream_raw(&self, stream: &str) -> Result<Vec<crate::RawEvent>, StoreError> {
        let size = self.head().size;
        let positions = index::stream_positions(&self.trees.index, &self.tail, stream, size)?;
        self.trees.raw_at(&positions)
    }

    /// Only the positions before `position` are read and decoded, not the whole stream.
    fn stream_before(&self, stream: &str, position: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let size = self.head().size.min(position.saturating_sub(1));
        let positions = index::stream_positions(&self.trees.index, &self.tail, stream, size)?;
        self.trees.events_at(&positions)
    }

    fn stream_head(&self, stream: &str) -> Result<Option<StreamHead>, StoreError> {
        if self.write_failure().is_some() {
            // A failed group may have reached sled's memory but not the disk or the committed head; fold the
            // committed events instead, which `stream` caps at the head.
            let events = self.stream(stream)?;
            if events.is_empty() {
                return Ok(None);
            }
            let mut head = StreamHead::default();
            for e in &events {
                domain::apply_in_place(&mut head, &e.event);
            }
            return Ok(Some(head));
        }
        index::stream_head(&self.trees.index, &self.tail, stream)
    }

    fn watch(&self) -> watch::Receiver<Head> {
        self.head.clone()
    }

    fn stream_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        SledLog::stream_keys(self, prefix)
    }

    fn replay_to(
        &self,
        after: u64,
        to: u64,
        fold: &mut dyn FnMut(StoredEvent),
    ) -> Result<u64, StoreError> {
        SledLog::replay_to(self, after, to, fold)
    }

    fn scan_raw_until(
        &self,
        after: u64,
        each: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let size = self.head().size;
        for item in self.scan_raw(after) {
            let (position, bytes) = item?;
            if position > size || !each(position, &bytes) {
                break;
            }
        }
        Ok(())
    }
}

impl crate::Maintenance for SledLog {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn metrics(&self) -> &WriterMetrics {
        &self.metrics
    }

    fn write_failure(&self) -> Option<String> {
        SledLog::write_failure(self).map(str::to_owned)
    }

    fn unresponsive(&self) -> crate::Boxed<String> {
        Box::pin(SledLog::unresponsive(self))
    }

    fn stall_bound(&self) -> std::time::Duration {
        self.stall
    }

    fn close(&self) {
        SledLog::close(self)
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        SledLog::stats(self)
    }

    fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport, StoreError> {
        SledLog::verify(self, progress)
    }

    fn rebuild_indexes(&self, progress: &mut dyn FnMut(u64)) -> Result<Head, StoreError> {
        SledLog::rebuild_indexes(self, progress)
    }
}
