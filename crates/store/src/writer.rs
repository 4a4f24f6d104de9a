//! The single writer: group commit into the `log` tree. Each group becomes blocks plus one run of audit hashes,
//! written as one atomic sled batch, flushed and fsynced; only then are its index entries handed on (to the tail
//! and the indexer) and its head published.

use crate::index::{self, Delta, IndexJob, SharedTail};
use crate::merkle::{Frontier, Growth};
use crate::trees::Trees;
use crate::{
    AppendError, AppendOutcome, AppendRequest, EventRefusal, Head, Receipt, Refusal, StoreError,
};
use chrono::{DateTime, Utc};
use domain::{decide, AgencyCode, Context, EventData, StoredEvent, Stream, StreamHead};
use std::collections::HashMap;
use std::sync::Arc;
use tlog_tiles::{record_hash, tree_hash, Hash};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

pub(crate) type Reply = oneshot::Sender<Result<AppendOutcome, AppendError>>;

pub(crate) struct Job {
    pub request: AppendRequest,
    pub reply: Reply,
}

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

/// A new event of the current group, ready to write.
struct Record {
    stored: StoredEvent,
    bytes: Vec<u8>,
    stream: String,
}

/// What the group has decided so far, on top of what is committed.
struct CommitGroup {
    heads: HashMap<String, StreamHead>,
    ids: HashMap<Uuid, usize>,
    records: Vec<Record>,
    /// What the group adds to the audit tree.
    growth: Growth,
    last_recorded_at: DateTime<Utc>,
}

/// What one request has decided so far, on top of the group: joins the group only if the whole request is
/// accepted.
struct Pending {
    heads: HashMap<String, StreamHead>,
    ids: HashMap<Uuid, usize>,
    records: Vec<Record>,
    last_recorded_at: DateTime<Utc>,
}

/// The answer to an event whose id was stored before: its original receipt for the same content, else a refusal.
fn replay(earlier: &StoredEvent, event: &domain::Event) -> Result<Receipt, Refusal> {
    if earlier.event == *event {
        Ok(Receipt {
            id: event.id,
            position: earlier.position,
            version: earlier.version,
            replayed: true,
        })
    } else {
        Err(Refusal::IdReused {
            position: earlier.position,
        })
    }
}

/// The times and source an event is judged and stored with: now (never before the log's last record) and the
/// request's source for a new event; for a restored one, those it was exported with, which must fit where it
/// would land. Returns (the time its rules are judged at, `recorded_at`, `source`).
fn when_recorded(
    submitted: &domain::Submitted,
    position: u64,
    last_recorded_at: DateTime<Utc>,
    now: DateTime<Utc>,
    source: &str,
) -> Result<(DateTime<Utc>, DateTime<Utc>, String), Refusal> {
    let Some(f) = &submitted.stored else {
        return Ok((now, now.max(last_recorded_at), source.to_owned()));
    };
    if f.position != position {
        return Err(Refusal::StoredFields(format!(
            "it was exported at position {}, but would be stored at {position}",
            f.position
        )));
    }
    if f.recorded_at < last_recorded_at {
        return Err(Refusal::StoredFields(format!(
            "its recorded_at {} is before the log's last, {}",
            f.recorded_at, last_recorded_at
        )));
    }
    // A restored event is judged as it was when it was recorded.
    Ok((f.recorded_at, f.recorded_at, f.source.clone()))
}

/// Turns into `unavailable` every answer that names a position past `committed`: the group holding it was not
/// written. (A replay of an event that an earlier request of the same group added names such a position too.)
fn unwritten(
    answers: &mut [(Reply, Result<AppendOutcome, AppendError>)],
    why: &str,
    committed: u64,
) {
    for (_, answer) in answers.iter_mut() {
        if matches!(answer, Ok(outcome) if outcome.receipts.iter().any(|r| r.position > committed))
        {
            *answer = Err(AppendError::Unavailable(why.to_owned()));
        }
    }
}

impl Writer {
    pub fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut events = first.request.events.len();
            let mut jobs = vec![first];
            while events < self.group_events_max {
                match rx.try_recv() {
                    Ok(job) => {
                        events += job.request.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            let metrics = self.metrics.clone();
            metrics.writing.on(|| self.commit_group(jobs));
        }
    }

    fn commit_group(&mut self, jobs: Vec<Job>) {
        let now = StoredEvent::truncate_recorded_at((self.clock)());
        let mut group = CommitGroup {
            heads: HashMap::new(),
            ids: HashMap::new(),
            records: Vec::new(),
            growth: Growth::new(self.size, self.frontier.clone()),
            last_recorded_at: self.last_recorded_at,
        };
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            let events = job.request.events.len();
            let answer = match self.failed.get() {
                Some(why) => Err(AppendError::Unavailable(why.clone())),
                None if events == 0 || events > domain::parse::BATCH_EVENTS_MAX => {
                    Err(AppendError::BatchSize(events))
                }
                None => self.decide_request(&mut group, &job.request, now),
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

    /// Decides one request against the committed log plus the group so far; on success adds its new events to
    /// the group. A refused request leaves the group as it was.
    fn decide_request(
        &self,
        group: &mut CommitGroup,
        request: &AppendRequest,
        now: DateTime<Utc>,
    ) -> Result<AppendOutcome, AppendError> {
        let n = request.events.len();
        let mut pending = Pending {
            heads: HashMap::with_capacity(n),
            ids: HashMap::with_capacity(n),
            records: Vec::with_capacity(n),
            last_recorded_at: group.last_recorded_at,
        };
        let mut receipts = Vec::with_capacity(n);
        let mut refusals = Vec::new();
        for (index, submitted) in request.events.iter().enumerate() {
            let event = &submitted.event;
            if let Err(why) = event.check() {
                panic!(
                    "the parser let through an event that breaks the envelope invariants: {why}"
                );
            }
            let decided = match self
                .earlier(group, &pending, event.id)
                .map_err(|e| self.read_failed(e))?
            {
                Some(earlier) => replay(&earlier, event),
                None => self
                    .decide_new(group, &mut pending, submitted, &request.source, now)
                    .map_err(|e| self.read_failed(e))?,
            };
            match decided {
                Ok(receipt) => receipts.push(receipt),
                Err(refusal) => refusals.push(EventRefusal {
                    index,
                    id: event.id,
                    refusal,
                }),
            }
        }
        if !refusals.is_empty() {
            return Err(AppendError::Refused(refusals));
        }
        self.merge(group, pending)
            .map_err(|e| self.read_failed(e))?;
        Ok(AppendOutcome { receipts })
    }

    /// An IO error while deciding is as serious as one while writing: the log refuses writes until it is
    /// reopened, so that no later append can succeed past a failure whose extent is unknown.
    fn read_failed(&self, e: StoreError) -> AppendError {
        let why = format!("a read failed ({e}); the store refuses writes until it is reopened");
        let _ = self.failed.set(why.clone());
        AppendError::Unavailable(why)
    }

    /// The event stored earlier with this id, if any: in this request, in the group, or in the log.
    fn earlier(
        &self,
        group: &CommitGroup,
        pending: &Pending,
        id: Uuid,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let decided = pending
            .ids
            .get(&id)
            .map(|&i| &pending.records[i])
            .or_else(|| group.ids.get(&id).map(|&i| &group.records[i]));
        match decided {
            Some(r) => Ok(Some(r.stored.clone())),
            None => self.stored_by_id(id),
        }
    }

    /// Decides an event whose id is new: its stream's rules, its stored fields if it is restored, the agency
    /// tree. Accepted, it joins `pending`; the outer error is a failed read, the inner a refusal.
    fn decide_new(
        &self,
        group: &CommitGroup,
        pending: &mut Pending,
        submitted: &domain::Submitted,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Receipt, Refusal>, StoreError> {
        let event = &submitted.event;
        let stream = event.stream().key();
        let head = match pending
            .heads
            .get(&stream)
            .or_else(|| group.heads.get(&stream))
        {
            Some(h) => h.clone(),
            None => self.committed_head(&stream)?,
        };
        let position = self.size + (group.records.len() + pending.records.len()) as u64 + 1;
        let (ctx_now, recorded_at, source) =
            match when_recorded(submitted, position, pending.last_recorded_at, now, source) {
                Ok(when) => when,
                Err(refusal) => return Ok(Err(refusal)),
            };
        let ctx = Context {
            now: ctx_now,
            clock_skew: self.clock_skew,
        };
        let next = match decide(&head, event, submitted.expected_version, &ctx) {
            Ok(next) => next,
            Err(rejection) => return Ok(Err(Refusal::Rule(rejection))),
        };
        if let Err(cycle) = self.agency_tree_kept(event, group, &pending.records)? {
            return Ok(Err(Refusal::Rule(cycle)));
        }
        if let Some(f) = submitted
            .stored
            .as_ref()
            .filter(|f| f.version != next.version)
        {
            return Ok(Err(Refusal::StoredFields(format!(
                "it was exported as version {} of its stream, but would be version {}",
                f.version, next.version
            ))));
        }
        let stored = StoredEvent {
            position,
            version: next.version,
            recorded_at,
            source,
            event: event.clone(),
        };
        // Pair assertion, write side: what we are about to store satisfies the stored invariants.
        if let Err(why) = stored.check() {
            panic!("about to store an event that breaks the stored invariants: {why}");
        }
        let receipt = Receipt {
            id: event.id,
            position,
            version: next.version,
            replayed: false,
        };
        pending.ids.insert(event.id, pending.records.len());
        pending.records.push(Record {
            bytes: stored.canonical_bytes(),
            stored,
            stream: stream.clone(),
        });
        pending.heads.insert(stream, next);
        pending.last_recorded_at = recorded_at;
        Ok(Ok(receipt))
    }

    /// The agency tree stays a tree, whatever the distance (registrations earlier in this request and in the group
    /// count): a check of the whole tree, which only the writer sees.
    fn agency_tree_kept(
        &self,
        event: &domain::Event,
        group: &CommitGroup,
        records: &[Record],
    ) -> Result<Result<(), domain::Rejection>, StoreError> {
        match (&event.data, &event.agency) {
            (EventData::AgencyRegistered(a), Some(agency)) => match &a.parent {
                Some(parent) => domain::stream::check_agency_tree(agency, parent, |code| {
                    self.parent_of(code, group, records)
                }),
                None => Ok(Ok(())),
            },
            _ => Ok(Ok(())),
        }
    }

    /// Adds an accepted request's events to the group: their leaves hashed into the audit tree in order, their
    /// ids, their streams' heads.
    fn merge(&self, group: &mut CommitGroup, pending: Pending) -> Result<(), StoreError> {
        for record in pending.records {
            group.growth.push(
                record.stored.position - 1,
                record_hash(&record.bytes),
                &self.trees.log,
            )?;
            group
                .ids
                .insert(record.stored.event.id, group.records.len());
            group.records.push(record);
        }
        group.heads.extend(pending.heads);
        group.last_recorded_at = pending.last_recorded_at;
        Ok(())
    }

    /// The current parent of `agency`: its latest registration in this request, the group, or the log.
    fn parent_of(
        &self,
        agency: &AgencyCode,
        group: &CommitGroup,
        records: &[Record],
    ) -> Result<Option<AgencyCode>, StoreError> {
        let stream = Stream::Agency(agency.clone()).key();
        let pending = records
            .iter()
            .rev()
            .chain(group.records.iter().rev())
            .find(|r| r.stream == stream);
        let latest = match pending {
            Some(r) => Some(r.stored.event.data.clone()),
            None => {
                let positions =
                    index::stream_positions(&self.trees.index, &self.tail, &stream, self.size)?;
                match positions.last() {
                    Some(&p) => self.trees.event(p)?.map(|e| e.event.data),
                    None => None,
                }
            }
        };
        Ok(match latest {
            Some(EventData::AgencyRegistered(a)) => a.parent,
            _ => None,
        })
    }

    /// A stream's committed head: from the cache, else from the index (and then kept).
    fn committed_head(&self, stream: &str) -> Result<StreamHead, StoreError> {
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

    fn stored_by_id(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        match index::id_position(&self.trees.index, &self.tail, id)? {
            None => Ok(None),
            Some(p) => self.trees.event(p),
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
