//! The single writer: group commit into the `log` tree. Each group becomes blocks plus one run of audit hashes,
//! written as one atomic sled batch, flushed and fsynced; only then are its index entries handed on (to the tail
//! and the indexer) and its head published.

use crate::decide::{unwritten, CommitGroup, Committed, Decider};
use crate::index::{self, Delta, IndexJob, SharedTail};
use crate::merkle::Frontier;
use crate::trees::Trees;
use crate::{AppendError, Head, StoreError};
use chrono::{DateTime, Utc};
use domain::{StoredEvent, StreamHead};
use std::collections::HashMap;
use std::sync::Arc;
use tlog_tiles::{tree_hash, Hash};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

pub(crate) use crate::queue::Job;

pub(crate) type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The writer's cache of committed stream heads, by stream key. Only the writer changes heads, and it puts each
/// group's new heads here once the group is durable, so an entry is always the committed head.
pub(crate) type HeadCache = quick_cache::unsync::Cache<String, Arc<StreamHead>>;

/// How many stream heads the writer keeps: the dossiers in progress of a province, with room to spare.
pub(crate) const HEAD_CACHE_STREAMS: usize = 65_536;

pub(crate) struct Writer {
    pub trees: Trees,
    /// Index entries of committed events the indexer has not written yet (shared with readers).
    pub tail: SharedTail,
    pub indexer: std::sync::mpsc::Sender<IndexJob>,
    /// Through which position the indexer has written.
    pub indexed: Arc<std::sync::atomic::AtomicU64>,
    pub compressor: zstd::bulk::Compressor<'static>,
    /// The database file and sled's blob files, so that each group can end with a real fsync (sled's own flush
    /// ends with `sync_file_range`, which does not survive power loss, and never syncs blob files).
    pub db_file: Option<crate::durable::Syncer>,
    pub size: u64,
    /// The leaves of the audit tree's unfinished tile.
    pub frontier: Frontier,
    /// The committed heads of recently written streams: what the index would answer, without its lookups.
    pub heads: std::cell::RefCell<HeadCache>,
    pub last_recorded_at: DateTime<Utc>,
    pub head: watch::Sender<Head>,
    pub clock: Clock,
    pub clock_skew: chrono::Duration,
    pub group_events_max: usize,
    pub metrics: Arc<crate::metrics::WriterMetrics>,
    /// Set after a failed write (shared with readers): from then on every append is refused until the store is
    /// reopened, because the failed group may or may not have reached the disk.
    pub failed: Arc<std::sync::OnceLock<String>>,
}

impl Writer {
    pub fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(jobs) = crate::queue::next_group(&mut rx, self.group_events_max) {
            let metrics = self.metrics.clone();
            metrics.writing.on(|| self.commit_group(jobs));
        }
    }

    fn commit_group(&mut self, jobs: Vec<Job>) {
        let now = StoredEvent::truncate_recorded_at((self.clock)());
        let mut group = CommitGroup::new(self.size, self.frontier.clone(), self.last_recorded_at);
        let failed = self.failed.clone();
        // An IO error while deciding is as serious as one while writing: the log refuses writes until it is
        // reopened, so that no later append can succeed past a failure whose extent is unknown.
        let read_failed = move |e: StoreError| {
            let why = format!("a read failed ({e}); the store refuses writes until it is reopened");
            let _ = failed.set(why.clone());
            AppendError::Unavailable(why)
        };
        let decider = Decider {
            committed: &*self,
            size: self.size,
            clock_skew: self.clock_skew,
            read_failed: &read_failed,
        };
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            let events = job.request.events.len();
            let answer = match self.failed.get() {
                Some(why) => Err(AppendError::Unavailable(why.clone())),
                None if events == 0 || events > domain::parse::BATCH_EVENTS_MAX => {
                    Err(AppendError::BatchSize(events))
                }
                None => decider.decide_request(&mut group, &job.request, now),
            };
            answers.push((job.reply, answer));
        }
        // A read that failed while deciding set `failed`: what the group decided after it may rest on a wrong
        // answer, so none of the group is written.
        if let (Some(why), false) = (self.failed.get(), group.records.is_empty()) {
            unwritten(&mut answers, why, self.size);
            group.records.clear();
        }
        if !group.records.is_empty() {
            let started = std::time::Instant::now();
            match self.write(&group) {
                Ok(root) => {
                    self.size += group.records.len() as u64;
                    self.frontier = std::mem::take(&mut group.growth.frontier);
                    self.last_recorded_at = group.last_recorded_at;
                    // The entries go to the tail before the head moves, so that a reader who sees the new head
                    // finds them; then to the indexer, which drops them from the tail once written.
                    let heads: HashMap<String, Arc<StreamHead>> = std::mem::take(&mut group.heads)
                        .into_iter()
                        .map(|(k, h)| (k, Arc::new(h)))
                        .collect();
                    let mut delta = Delta::default();
                    for r in &group.records {
                        delta.add(&r.stream, &r.stored, &heads[&r.stream]);
                    }
                    delta.add_to(&self.tail);
                    let mut cache = self.heads.borrow_mut();
                    for (stream, head) in &heads {
                        cache.insert(stream.clone(), head.clone());
                    }
                    drop(cache);
                    let _ = self.indexer.send(IndexJob::Delta(delta));
                    self.head.send_replace(Head {
                        size: self.size,
                        root,
                    });
                    self.metrics
                        .record_group(group.records.len(), started.elapsed());
                    self.bound_the_tail();
                }
                Err(e) => {
                    let why = format!(
                        "a write failed ({e}); the store refuses writes until it is reopened"
                    );
                    let _ = self.failed.set(why.clone());
                    unwritten(&mut answers, &why, self.size);
                }
            }
        }
        for (reply, answer) in answers {
            // A waiter that went away (a dropped request) does not matter: its events are written or not as decided.
            let _ = reply.send(answer);
        }
    }

    /// Waits for the indexer while too many committed events wait to be indexed: a bound on the tail's memory.
    fn bound_the_tail(&self) {
        let indexed = self.indexed.load(std::sync::atomic::Ordering::Acquire);
        if self.size.saturating_sub(indexed) > index::TAIL_EVENTS_MAX {
            let (reply, answer) = std::sync::mpsc::sync_channel(1);
            if self.indexer.send(IndexJob::Flush(reply)).is_ok() {
                let _ = answer.recv();
            }
        }
    }

    /// Writes the group's blocks and audit data in one atomic batch, flushes, fsyncs; returns the new root.
    fn write(&mut self, group: &CommitGroup) -> Result<Hash, StoreError> {
        use crate::merkle::{key, pack, pack_prefixes, LEAVES, UPPER};
        let mut batch = sled::Batch::default();
        let bytes: Vec<&[u8]> = group.records.iter().map(|r| r.bytes.as_slice()).collect();
        let mut first = self.size + 1;
        for run in crate::block::runs(&bytes) {
            let value = crate::block::encode(run, &mut self.compressor)?;
            batch.insert(&crate::trees::block_key(first), value);
            first += run.len() as u64;
        }
        let growth = &group.growth;
        batch.insert(&key(LEAVES, self.size + 1), pack_prefixes(&growth.leaves));
        if !growth.upper.is_empty() {
            batch.insert(&key(UPPER, growth.upper_from), pack(&growth.upper));
        }
        let t = &self.trees;
        t.log.apply_batch(batch)?;
        match &mut self.db_file {
            Some(syncer) => syncer.flush_and_sync(|| t.db.flush().map(|_| ()))?,
            None => {
                t.db.flush()?;
            }
        }
        let new_size = self.size + group.records.len() as u64;
        let source = |from, to| t.leaf_hashes(from, to);
        let reader = growth.reader(&t.log, new_size, &source);
        tree_hash(new_size, &reader).map_err(|e| reader.explain(e))
    }
}

impl Committed for Writer {
    fn by_id(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        match index::id_position(&self.trees.index, &self.tail, id)? {
            None => Ok(None),
            Some(p) => self.trees.event(p),
        }
    }

    /// From the cache, else from the index (and then kept).
    fn head(&self, stream: &str) -> Result<StreamHead, StoreError> {
        if let Some(head) = self.heads.borrow().get(stream) {
            return Ok(StreamHead::clone(head));
        }
        let head = index::stream_head(&self.trees.index, &self.tail, stream)?.unwrap_or_default();
        if head.version > 0 {
            self.heads
                .borrow_mut()
                .insert(stream.to_owned(), Arc::new(head.clone()));
        }
        Ok(head)
    }

    fn latest(&self, stream: &str) -> Result<Option<StoredEvent>, StoreError> {
        let positions = index::stream_positions(&self.trees.index, &self.tail, stream, self.size)?;
        match positions.last() {
            Some(&p) => self.trees.event(p),
            None => Ok(None),
        }
    }

    fn upper(&self) -> &dyn crate::merkle::UpperHashes {
        &self.trees.log
    }
}
