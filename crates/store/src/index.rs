//! The derived indexes of format 2 and the indexer that writes them behind the log.
//!
//! The log (blocks and audit hashes) is the only truth. Three kinds of entries are derived from it, all kept in
//! one merge tree ([`crate::lsm`]) so that sled writes a few kilobytes per key instead of one key per entry:
//! - `i ‖ event id (16 bytes)` → position (8 bytes, big-endian). Kept for ever: idempotency has no expiry.
//! - `h ‖ stream key` → [`HeadRecord`] (postcard): the stream's last version, its folded dossier state, and the
//!   positions of its versions not yet spilled to a chunk.
//! - `p ‖ stream key ‖ 0x00 ‖ first version (8 bytes, big-endian)` → the positions of [`CHUNK`] consecutive
//!   versions (8 bytes each, big-endian): the long part of a long stream.
//!
//! The merge tree's manifest says through which position they are complete (the watermark). The writer never
//! writes them: after each group is durable it adds the group's entries to the [`Tail`] (in memory, shared with
//! readers) and hands them to the indexer thread, which writes them as one run, with the watermark, then drops
//! them from the tail. Readers look in the tail first, then in the merge tree, so that an entry is always in one
//! of the two. At open, the events after the watermark are indexed again before anything is served
//! ([`index_from_log`]); writing an entry twice is harmless (the same id gets the same position, a head record skips
//! versions it already holds).

use crate::lsm::Lsm;
use crate::StoreError;
use domain::{DossierState, StoredEvent, StreamHead};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use uuid::Uuid;

/// Positions per chunk of the `streams` tree.
pub const CHUNK: usize = 1024;
/// The indexer writes once this many events wait, or [`FLUSH_AFTER`] after the first of them.
pub const FLUSH_EVENTS: usize = 32_768;
pub const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(500);
/// The writer waits for the indexer when this many events wait to be indexed: a bound on the tail's memory.
pub const TAIL_EVENTS_MAX: u64 = 1_000_000;

/// The records the indexer wrote last, by stream key: each batch updates the record of every stream it touches,
/// and reading it back from the merge tree costs a chunk's decompression. Only the code that writes records fills
/// it, after a successful write, so an entry is always what the trees hold.
pub(crate) type RecordCache = quick_cache::unsync::Cache<String, HeadRecord>;

/// A record cache of the size the indexer keeps.
pub(crate) fn record_cache() -> RecordCache {
    RecordCache::new(65_536)
}

/// A stream as the index keeps it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeadRecord {
    pub version: u64,
    pub dossier: Option<DossierState>,
    /// The positions of versions `version - positions.len() + 1 ..= version`; earlier ones are in chunks.
    pub positions: Vec<u64>,
}

impl HeadRecord {
    pub fn head(&self) -> StreamHead {
        StreamHead {
            version: self.version,
            dossier: self.dossier.clone(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("head records serialize")
    }

    pub fn decode(stream: &str, bytes: &[u8]) -> Result<HeadRecord, StoreError> {
        postcard::from_bytes(bytes)
            .map_err(|e| StoreError::IndexMismatch(format!("the head of {stream}: {e}")))
    }
}

pub(crate) const HEAD: u8 = b'h';
pub(crate) const ID: u8 = b'i';
const POSITIONS: u8 = b'p';

pub(crate) fn head_key(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 1);
    k.push(HEAD);
    k.extend_from_slice(stream.as_bytes());
    k
}

pub(crate) fn id_key(id: Uuid) -> [u8; 17] {
    let mut k = [ID; 17];
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// `p ‖ stream ‖ 0x00 ‖ first version`: a stream's chunks sort by version, and no stream's sort inside another's
/// (stream keys contain no NUL).
pub(crate) fn chunk_key(stream: &str, first_version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 10);
    k.push(POSITIONS);
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k.extend_from_slice(&first_version.to_be_bytes());
    k
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// The derived entries: the merge tree, and `meta` for the rebuild flag.
#[derive(Clone)]
pub(crate) struct IndexTrees {
    pub lsm: Arc<Lsm>,
    pub meta: sled::Tree,
}

impl IndexTrees {
    pub fn watermark(&self) -> Result<u64, StoreError> {
        Ok(self.lsm.watermark())
    }

    pub fn id(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        match self.lsm.get(&id_key(id))? {
            None => Ok(None),
            Some(v) => Ok(Some(decode_u64(&v).ok_or_else(|| {
                StoreError::IndexMismatch(format!("the id index entry of {id} is damaged"))
            })?)),
        }
    }

    pub fn record(&self, stream: &str) -> Result<Option<HeadRecord>, StoreError> {
        self.lsm
            .get(&head_key(stream))?
            .map(|v| HeadRecord::decode(stream, &v))
            .transpose()
    }

    /// Every position the index holds for a stream, by version (1, 2, …).
    pub fn positions(&self, stream: &str) -> Result<Vec<u64>, StoreError> {
        let Some(record) = self.record(stream)? else {
            return Ok(Vec::new());
        };
        let spilled = record.version - record.positions.len() as u64;
        let mut out = Vec::with_capacity(record.version as usize);
        let mut first = 1;
        while first <= spilled {
            let chunk = self.lsm.get(&chunk_key(stream, first))?.ok_or_else(|| {
                StoreError::IndexMismatch(format!("{stream} has no positions from version {first}"))
            })?;
            if chunk.len() != CHUNK * 8 {
                return Err(StoreError::IndexMismatch(format!(
                    "the positions of {stream} from version {first} are damaged"
                )));
            }
            out.extend(chunk.chunks_exact(8).filter_map(decode_u64));
            first += CHUNK as u64;
        }
        out.extend_from_slice(&record.positions);
        Ok(out)
    }

    /// The keys of every stream whose key starts with `prefix`, in order.
    pub fn stream_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let from = head_key(prefix);
        let mut out = Vec::new();
        for entry in self.lsm.scan(&from) {
            let (k, _) = entry?;
            if !k.starts_with(&from) {
                break;
            }
            out.push(String::from_utf8_lossy(&k[1..]).into_owned());
        }
        Ok(out)
    }

    /// How many distinct keys of a kind (`ID`, `HEAD`) the index holds.
    pub fn count(&self, kind: u8) -> Result<u64, StoreError> {
        let mut n = 0;
        for entry in self.lsm.scan(&[kind]) {
            let (k, _) = entry?;
            if k.first() != Some(&kind) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }
}

/// One stream's part of the tail: its newest head and the positions of its events not yet in the trees.
#[derive(Clone, Debug, Default)]
pub struct TailStream {
    /// Shared between the tail and the indexer's delta, so that a head is cloned once per group, not per event.
    pub head: Arc<StreamHead>,
    /// (version, position), in order.
    pub positions: Vec<(u64, u64)>,
}

/// Entries of committed events that the trees may not hold yet.
#[derive(Debug, Default)]
pub struct Tail {
    pub ids: HashMap<Uuid, u64>,
    pub streams: HashMap<String, TailStream>,
    /// The last position added.
    pub last: u64,
}

pub type SharedTail = Arc<RwLock<Tail>>;

/// What one or more groups add to the indexes.
#[derive(Debug, Default)]
pub struct Delta {
    pub last: u64,
    pub events: usize,
    pub ids: Vec<(Uuid, u64)>,
    /// Per stream: its newest head and the (version, position) of its new events.
    pub streams: HashMap<String, TailStream>,
}

impl Delta {
    /// Adds one committed event, with its stream's head after it.
    pub fn add(&mut self, stream: &str, stored: &StoredEvent, head: &Arc<StreamHead>) {
        self.ids.push((stored.event.id, stored.position));
        let s = match self.streams.get_mut(stream) {
            Some(s) => s,
            None => self.streams.entry(stream.to_owned()).or_default(),
        };
        s.head = head.clone();
        s.positions.push((stored.version, stored.position));
        self.last = self.last.max(stored.position);
        self.events += 1;
    }

    pub fn merge(&mut self, other: Delta) {
        self.ids.extend(other.ids);
        for (stream, s) in other.streams {
            let mine = self.streams.entry(stream).or_default();
            mine.head = s.head;
            mine.positions.extend(s.positions);
        }
        self.last = self.last.max(other.last);
        self.events += other.events;
    }

    /// Adds the delta to the shared tail (the writer, after the group is durable and before it is published).
    pub fn add_to(&self, tail: &SharedTail) {
        let mut tail = tail.write().expect("tail lock");
        tail.ids.extend(self.ids.iter().copied());
        for (stream, s) in &self.streams {
            let t = tail.streams.entry(stream.clone()).or_default();
            t.head = s.head.clone();
            t.positions.extend_from_slice(&s.positions);
        }
        tail.last = tail.last.max(self.last);
    }

    /// Drops from the shared tail what this delta wrote to the trees.
    pub fn remove_from(&self, tail: &SharedTail) {
        let mut tail = tail.write().expect("tail lock");
        for (id, _) in &self.ids {
            tail.ids.remove(id);
        }
        for stream in self.streams.keys() {
            if let Some(t) = tail.streams.get_mut(stream) {
                t.positions.retain(|&(_, p)| p > self.last);
                if t.positions.is_empty() {
                    tail.streams.remove(stream);
                }
            }
        }
    }

    /// Writes the delta as one run of the merge tree, with the watermark. Not flushed: the next group's flush
    /// carries it, and an index that did not reach the disk is caught up at open.
    pub fn write(&self, trees: &IndexTrees, cache: &mut RecordCache) -> Result<(), StoreError> {
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> =
            Vec::with_capacity(self.ids.len() + self.streams.len());
        let mut records = Vec::with_capacity(self.streams.len());
        for (id, position) in &self.ids {
            entries.push((id_key(*id).to_vec(), position.to_be_bytes().to_vec()));
        }
        for (stream, s) in &self.streams {
            let mut record = match cache.remove(stream.as_str()) {
                Some((_, record)) => record,
                None => trees.record(stream)?.unwrap_or_default(),
            };
            for &(version, position) in &s.positions {
                // Written before a crash that came ahead of the watermark: already there.
                if version <= record.version {
                    continue;
                }
                if version != record.version + 1 {
                    return Err(StoreError::IndexMismatch(format!(
                        "{stream} goes from version {} to {version}",
                        record.version
                    )));
                }
                record.version = version;
                record.positions.push(position);
                if record.positions.len() == CHUNK {
                    let first = version + 1 - CHUNK as u64;
                    let packed: Vec<u8> = record
                        .positions
                        .iter()
                        .flat_map(|p| p.to_be_bytes())
                        .collect();
                    entries.push((chunk_key(stream, first), packed));
                    record.positions.clear();
                }
            }
            if s.head.version == record.version {
                record.dossier = s.head.dossier.clone();
            }
            entries.push((head_key(stream), record.encode()));
            records.push((stream.clone(), record));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // The same id twice in one delta (a catch-up over a crash) maps to the same position: keep one.
        entries.dedup_by(|a, b| a.0 == b.0);
        trees.lsm.add(entries, self.last)?;
        for (stream, record) in records {
            cache.insert(stream, record);
        }
        Ok(())
    }
}

/// Indexes the events after the watermark, from the log itself: what an open does before serving, and what
/// `rebuild-indexes` does from position 0. `events` yields them in order; `progress` hears of each write.
pub(crate) fn index_from_log(
    trees: &IndexTrees,
    events: impl Iterator<Item = Result<StoredEvent, StoreError>>,
    chunk_events: usize,
    mut sink: impl FnMut(Delta) -> Result<(), StoreError>,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    let mut delta = Delta::default();
    let mut heads: HashMap<String, StreamHead> = HashMap::new();
    let mut last = trees.watermark()?;
    for item in events {
        let stored = match item {
            Ok(stored) => stored,
            Err(e) => {
                // Damage: hand on what was indexed up to it (so that `verify` names the damage, not the events
                // before it), then stop.
                if delta.events > 0 {
                    sink(delta)?;
                }
                return Err(e);
            }
        };
        let stream = stored.event.stream().key();
        let head = match heads.get_mut(&stream) {
            Some(h) => h,
            None => {
                // Start from what the trees hold; a version they hold already is skipped.
                let start = trees.record(&stream)?.map(|r| r.head()).unwrap_or_default();
                heads.entry(stream.clone()).or_insert(start)
            }
        };
        if stored.version > head.version + 1 {
            if delta.events > 0 {
                sink(delta)?;
            }
            return Err(StoreError::IndexMismatch(format!(
                "{stream} is indexed through version {}, but position {} holds version {}",
                head.version, stored.position, stored.version
            )));
        }
        if stored.version > head.version {
            domain::apply_in_place(head, &stored.event);
        }
        if stored.version == head.version {
            delta.add(&stream, &stored, &Arc::new(head.clone()));
        } else {
            delta.ids.push((stored.event.id, stored.position));
            delta.last = stored.position;
            delta.events += 1;
        }
        last = stored.position;
        if delta.events >= chunk_events {
            sink(std::mem::take(&mut delta))?;
            heads.clear();
            progress(last);
        }
    }
    if delta.events > 0 {
        sink(delta)?;
    }
    progress(last);
    Ok(last)
}

/// Work for the indexer thread.
pub(crate) enum IndexJob {
    Delta(Delta),
    /// Write everything received so far, then answer.
    Flush(std::sync::mpsc::SyncSender<Result<(), String>>),
}

/// The indexer thread: writes what the writer hands it, in large batches, behind the log.
pub(crate) struct Indexer {
    pub trees: IndexTrees,
    pub tail: SharedTail,
    /// The position through which the trees are complete, for the writer's bound on the tail.
    pub indexed: Arc<std::sync::atomic::AtomicU64>,
    pub failed: Arc<std::sync::OnceLock<String>>,
    pub flush_after: std::time::Duration,
    /// Where the indexer says it is writing (a disk that stops answering keeps it there).
    pub metrics: Arc<crate::metrics::WriterMetrics>,
}

impl Indexer {
    pub fn run(self, jobs: std::sync::mpsc::Receiver<IndexJob>) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut pending = Delta::default();
        let mut since: Option<std::time::Instant> = None;
        let mut stopped = false;
        let mut records = record_cache();
        loop {
            let wait = match since {
                None => std::time::Duration::from_secs(3600),
                Some(t) => self.flush_after.saturating_sub(t.elapsed()),
            };
            let mut answer = None;
            let closed = match jobs.recv_timeout(wait) {
                Ok(IndexJob::Delta(d)) => {
                    since.get_or_insert_with(std::time::Instant::now);
                    pending.merge(d);
                    false
                }
                Ok(IndexJob::Flush(reply)) => {
                    answer = Some(reply);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let due = since.is_some_and(|t| t.elapsed() >= self.flush_after);
            if pending.events > 0
                && (closed || due || answer.is_some() || pending.events >= FLUSH_EVENTS)
            {
                let delta = std::mem::take(&mut pending);
                since = None;
                // After a failed write nothing more is written: a later run would move the watermark past the
                // entries that failed, and the next open would never index them. The tail keeps every entry, so
                // reads stay right until then; the next open catches up from the watermark.
                let written = if stopped {
                    Err(StoreError::Tree(
                        "the indexer stopped after a failed write".into(),
                    ))
                } else {
                    let trees = &self.trees;
                    self.metrics
                        .indexing
                        .on(|| delta.write(trees, &mut records))
                };
                match written {
                    Ok(()) => {
                        delta.remove_from(&self.tail);
                        self.indexed
                            .store(delta.last, std::sync::atomic::Ordering::Release);
                    }
                    Err(e) => {
                        stopped = true;
                        let _ = self.failed.set(format!(
                            "writing the indexes failed ({e}); the store refuses writes until it is reopened"
                        ));
                    }
                }
            }
            if let Some(reply) = answer {
                let _ = reply.send(match self.failed.get() {
                    Some(why) => Err(why.clone()),
                    None => Ok(()),
                });
            }
            if closed {
                return;
            }
        }
    }
}

/// Positions of a stream: what the trees hold, then the tail's, by version, capped at `size`. Reads the tail first:
/// an entry the indexer moves in between is in the trees by the time they are read.
pub(crate) fn stream_positions(
    trees: &IndexTrees,
    tail: &SharedTail,
    stream: &str,
    size: u64,
) -> Result<Vec<u64>, StoreError> {
    let in_tail: Vec<(u64, u64)> = tail
        .read()
        .expect("tail lock")
        .streams
        .get(stream)
        .map(|s| s.positions.clone())
        .unwrap_or_default();
    let mut by_version: BTreeMap<u64, u64> = trees
        .positions(stream)?
        .into_iter()
        .enumerate()
        .map(|(i, p)| (i as u64 + 1, p))
        .collect();
    by_version.extend(in_tail);
    Ok(by_version.into_values().filter(|&p| p <= size).collect())
}

/// A stream's newest head: the tail's, else the trees'.
pub(crate) fn stream_head(
    trees: &IndexTrees,
    tail: &SharedTail,
    stream: &str,
) -> Result<Option<StreamHead>, StoreError> {
    if let Some(s) = tail.read().expect("tail lock").streams.get(stream) {
        return Ok(Some(StreamHead::clone(&s.head)));
    }
    Ok(trees.record(stream)?.map(|r| r.head()))
}

/// The position of an event id: the tail's, else the trees'.
pub(crate) fn id_position(
    trees: &IndexTrees,
    tail: &SharedTail,
    id: Uuid,
) -> Result<Option<u64>, StoreError> {
    if let Some(&p) = tail.read().expect("tail lock").ids.get(&id) {
        return Ok(Some(p));
    }
    trees.id(id)
}
