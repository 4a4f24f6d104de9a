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

use crate::block::Block;
use crate::index::{self, IndexTrees, Indexer, SharedTail};
use crate::merkle::{Growth, Hashes, Upper};
use crate::writer::{Clock, Job, Writer};
use crate::{AppendError, AppendOutcome, AppendRequest, EventLog, Head, StoreError};
use chrono::{DateTime, Utc};
use domain::{decide, Context, Credential, EventData, StoredEvent, StreamHead};
use serde::Serialize;
use sled::Transactional;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tlog_tiles::{record_hash, stored_hash_count, tree_hash, Hash};
use tokio::sync::{mpsc, oneshot, watch};
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
        }
    }

    pub fn clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Config {
        self.clock = Arc::new(clock);
        self
    }
}

/// A histogram with fixed upper bounds, updated without locks (the writer must never wait for a reader).
#[derive(Debug)]
pub struct Buckets {
    pub bounds: &'static [f64],
    /// One count per bound, then one for values above the last; not cumulative.
    pub counts: Vec<AtomicU64>,
    /// The sum of observed values, in millionths.
    pub sum_micros: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [f64]) -> Buckets {
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }
}

/// Counters the writer keeps, for metrics and benchmarks.
#[derive(Debug)]
pub struct WriterMetrics {
    pub groups: AtomicU64,
    pub events: AtomicU64,
    pub write_micros: AtomicU64,
    /// Events per committed group.
    pub group_events: Buckets,
    /// Seconds to write, flush and fsync a group.
    pub commit_seconds: Buckets,
}

impl Default for WriterMetrics {
    fn default() -> WriterMetrics {
        WriterMetrics {
            groups: AtomicU64::new(0),
            events: AtomicU64::new(0),
            write_micros: AtomicU64::new(0),
            group_events: Buckets::new(&[
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
            ]),
            commit_seconds: Buckets::new(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        }
    }
}

impl WriterMetrics {
    pub(crate) fn record_group(&self, events: usize, took: std::time::Duration) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.write_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.group_events.observe(events as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }
}

/// The key prefix of blocks in the `log` tree.
const BLOCK: u8 = b'b';

/// The key of the block whose first event is at `first`.
pub(crate) fn block_key(first: u64) -> [u8; 9] {
    let mut k = [BLOCK; 9];
    k[1..].copy_from_slice(&first.to_be_bytes());
    k
}

fn block_first(key: &[u8]) -> Result<u64, StoreError> {
    key.get(1..)
        .and_then(index::decode_u64)
        .ok_or_else(|| StoreError::Damaged(format!("a block key of {} bytes", key.len())))
}

/// The event count a block's header states, without decompressing it.
fn block_count(first: u64, value: &[u8]) -> Result<u64, StoreError> {
    crate::block::count(value).ok_or_else(|| StoreError::Corrupt {
        position: first,
        message: "the block starting here has an unknown layout".into(),
    })
}

/// The block whose key is the last at or before `position` in a `log` tree: (its first position, its value).
pub(crate) fn block_entry(
    log: &sled::Tree,
    position: u64,
) -> Result<Option<(u64, sled::IVec)>, StoreError> {
    match log
        .range(block_key(0)..=block_key(position))
        .next_back()
        .transpose()?
    {
        None => Ok(None),
        Some((key, value)) => Ok(Some((block_first(&key)?, value))),
    }
}

/// The open trees.
#[derive(Clone)]
pub(crate) struct Trees {
    pub db: sled::Db,
    pub log: sled::Tree,
    pub index: IndexTrees,
    pub credentials: sled::Tree,
    pub credential_hashes: sled::Tree,
    pub checkpoints: sled::Tree,
}

impl Trees {
    fn open(db: sled::Db, read_only: bool) -> Result<Trees, StoreError> {
        Ok(Trees {
            log: db.open_tree("log")?,
            index: IndexTrees {
                lsm: Arc::new(crate::lsm::Lsm::open(
                    db.open_tree("index")?,
                    db.open_tree("filters")?,
                    db.open_tree("meta")?,
                    read_only,
                )?),
                meta: db.open_tree("meta")?,
            },
            credentials: db.open_tree("credentials")?,
            credential_hashes: db.open_tree("credential_hashes")?,
            checkpoints: db.open_tree("checkpoints")?,
            db,
        })
    }

    fn meta(&self) -> &sled::Tree {
        &self.index.meta
    }

    /// Decodes a stored event, with the read-side pair assertion (its invariants, and that it sits at its own
    /// position).
    pub fn decode(position: u64, bytes: &[u8]) -> Result<StoredEvent, StoreError> {
        let stored = StoredEvent::decode(bytes)
            .map_err(|message| StoreError::Corrupt { position, message })?;
        if stored.position != position {
            return Err(StoreError::Corrupt {
                position,
                message: format!("it says it is at position {}", stored.position),
            });
        }
        Ok(stored)
    }

    /// The block holding `position`, if any.
    pub fn block_at(&self, position: u64) -> Result<Option<Block>, StoreError> {
        let Some((first, value)) = block_entry(&self.log, position)? else {
            return Ok(None);
        };
        if first + block_count(first, &value)? <= position {
            return Ok(None);
        }
        Block::decode(first, &value).map(Some)
    }

    pub fn event(&self, position: u64) -> Result<Option<StoredEvent>, StoreError> {
        match self.block_at(position)? {
            None => Ok(None),
            Some(block) => match block.get(position) {
                None => Ok(None),
                Some(bytes) => Trees::decode(position, bytes).map(Some),
            },
        }
    }

    /// The raw blocks from the one holding position `from` on, in order: (first position, value).
    pub fn raw_blocks(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> + '_ {
        let start = match block_entry(&self.log, from) {
            Ok(Some((first, _))) => first,
            _ => from,
        };
        self.log
            .range(block_key(start)..=block_key(u64::MAX))
            .map(|item| {
                let (key, value) = item?;
                Ok((block_first(&key)?, value))
            })
    }

    /// The events at `positions` (ascending), decoding each block once.
    pub fn events_at(&self, positions: &[u64]) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::with_capacity(positions.len());
        let mut block: Option<Block> = None;
        for &p in positions {
            if !block
                .as_ref()
                .is_some_and(|b| b.first <= p && p <= b.last())
            {
                block = self.block_at(p)?;
            }
            let bytes = block.as_ref().and_then(|b| b.get(p)).ok_or_else(|| {
                StoreError::IndexMismatch(format!("an index names missing position {p}"))
            })?;
            out.push(Trees::decode(p, bytes)?);
        }
        Ok(out)
    }

    fn last_position(&self) -> Result<u64, StoreError> {
        match block_entry(&self.log, u64::MAX)? {
            None => Ok(0),
            Some((first, value)) => Ok(first + block_count(first, &value)? - 1),
        }
    }

    /// The leaf hashes of leaves `from..to` (0-based: positions `from + 1..=to`), as many as are stored.
    pub fn leaf_hashes(&self, from: u64, to: u64) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut out = Vec::with_capacity((to - from) as usize);
        let mut next = from + 1;
        while next <= to {
            let block = self
                .block_at(next)
                .map_err(|e| tlog_tiles::Error::InvalidInput(e.to_string()))?;
            let Some(block) = block else { break };
            for (_, bytes) in block.iter().filter(|(p, _)| (next..=to).contains(p)) {
                out.push(record_hash(bytes));
            }
            next = block.last() + 1;
        }
        Ok(out)
    }

    /// Runs `f` with a reader of every hash of the committed audit tree.
    fn with_hashes<T>(&self, f: impl FnOnce(&Hashes) -> T) -> T {
        let source = |from, to| self.leaf_hashes(from, to);
        f(&Hashes {
            upper: Upper {
                tree: &self.log,
                pending_from: u64::MAX,
                pending: &[],
            },
            leaves_from: 0,
            leaves: &[],
            source: &source,
        })
    }

    fn root(&self, size: u64) -> Result<Hash, StoreError> {
        self.with_hashes(|h| tree_hash(size, h))
            .map_err(|e| StoreError::Tree(e.to_string()))
    }

    /// Removes every run under `prefix` from the `log` tree.
    fn remove_runs(&self, prefix: u8) -> Result<(), StoreError> {
        let keys: Vec<sled::IVec> = self
            .log
            .range(crate::merkle::key(prefix, 0)..=crate::merkle::key(prefix, u64::MAX))
            .keys()
            .collect::<Result<_, _>>()?;
        for k in keys {
            self.log.remove(k)?;
        }
        Ok(())
    }

    /// Writes the audit data of the whole log again from its events (leaf-hash prefixes and the hashes above the
    /// tiles), `progress` given the position reached; returns the size. Checks that positions have no gap.
    fn write_audit_data(&self, mut progress: impl FnMut(u64)) -> Result<u64, StoreError> {
        use crate::merkle::{key, pack, pack_prefixes, Frontier, Growth, LEAVES, UPPER};
        self.remove_runs(LEAVES)?;
        self.remove_runs(UPPER)?;
        let mut growth = Growth::new(0, Frontier::default());
        let mut size = 0u64;
        let mut blocks = self.raw_blocks(1);
        let write = |growth: &Growth, size: u64| -> Result<(), StoreError> {
            let first = size + 1 - growth.leaves.len() as u64;
            self.log
                .insert(key(LEAVES, first), pack_prefixes(&growth.leaves))?;
            if !growth.upper.is_empty() {
                self.log
                    .insert(key(UPPER, growth.upper_from), pack(&growth.upper))?;
            }
            Ok(())
        };
        while let Some(item) = blocks.next() {
            let (first, value) = item?;
            let block = Block::decode(first, &value)?;
            for (position, bytes) in block.iter() {
                let stored = StoredEvent::from_canonical_bytes(bytes)
                    .map_err(|message| StoreError::Corrupt { position, message })?;
                if stored.position != size + 1 || position != size + 1 {
                    return Err(StoreError::Corrupt {
                        position: size + 1,
                        message: format!("a gap: position {} is missing", size + 1),
                    });
                }
                growth
                    .push(size, record_hash(bytes), &self.log)
                    .map_err(|e| StoreError::Tree(e.to_string()))?;
                size = position;
            }
            if growth.leaves.len() >= 65_536 {
                write(&growth, size)?;
                growth = Growth::new(size, std::mem::take(&mut growth.frontier));
                progress(size);
            }
        }
        if !growth.leaves.is_empty() {
            write(&growth, size)?;
        }
        Ok(size)
    }

    /// The audit data stored for `size` events: (leaf-hash prefixes, upper-tree hashes), and what they should be.
    fn audit_counts(&self, size: u64) -> Result<Option<String>, StoreError> {
        use crate::merkle::{packed_end, LEAVES, PREFIX_BYTES, TILE, UPPER};
        let leaves = packed_end(&self.log, LEAVES, PREFIX_BYTES)?.saturating_sub(1);
        let upper = packed_end(&self.log, UPPER, 32)?;
        let expected = stored_hash_count(size / TILE);
        Ok((leaves != size || upper != expected).then(|| {
            format!(
                "{size} events but {leaves} leaf hashes and {upper} audit hashes above the tiles, where {size} and {expected} were expected"
            )
        }))
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
}

pub(crate) fn open_db(config: &Config) -> Result<sled::Db, StoreError> {
    // An upgrade stopped between its two renames leaves no directory here, the old log beside it as `.format1` and
    // the new one as `.upgrading`: making a fresh empty log here would hide both.
    if !config.path.join("db").exists() {
        if let Some(name) = config
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        {
            let beside = |suffix: &str| config.path.with_file_name(format!("{name}.{suffix}"));
            if beside("format1").join("db").exists() && beside("upgrading").join("db").exists() {
                return Err(StoreError::Format(format!(
                    "an upgrade of {} stopped halfway; run `casetrail --data {} upgrade` to finish it",
                    config.path.display(),
                    config.path.display()
                )));
            }
        }
    }
    std::fs::create_dir_all(&config.path)?;
    // sled's background flusher keeps the file lock for a moment after its `Db` is dropped, so a reopen in the same
    // process right after a close can find the directory locked; only a lock that outlasts that is another owner.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_WAIT_MS);
    loop {
        // sled 0.34's recovery can panic on a database file damaged where it reads on open (a changed byte in a
        // log segment leaves a page it then fails to serialize). That is damage, not a bug of the caller: say so.
        let opened = quietly(|| {
            sled::Config::new()
                .path(&config.path)
                .cache_capacity(config.cache_capacity_bytes)
                .mode(sled::Mode::HighThroughput)
                .open()
        })
        .map_err(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            StoreError::Damaged(format!(
                "sled cannot recover {}: {why}",
                config.path.join("db").display()
            ))
        })?;
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked(config.path.clone()));
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e) => return Err(StoreError::Sled(e)),
        }
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into an `Err` without the panic hook printing it (on this thread only: the hook
/// installed once here defers to the previous one everywhere else), so that the caller can report it in one line.
fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result
}

/// How long `open` waits for a lock held by a closing `Db` of this process before calling it someone else's.
const LOCK_WAIT_MS: u64 = 1_500;

impl SledLog {
    /// Opens (creating if needed) the log in `config.path`, checks that its audit hashes end where the blocks
    /// ends, and starts the writer.
    pub fn open(config: Config) -> Result<SledLog, StoreError> {
        let db = open_db(&config)?;
        let meta = db.open_tree("meta")?;
        match meta.get("format")? {
            Some(f) if f.as_ref() == FORMAT => {}
            Some(f) if f.as_ref() == FORMAT_1 => {
                return Err(StoreError::NeedsUpgrade(config.path.clone(), "format 1"))
            }
            Some(f) if f.as_ref() == FORMAT_2_DENSE => {
                return Err(StoreError::NeedsUpgrade(
                    config.path.clone(),
                    "format 2's first layout (every audit hash stored)",
                ))
            }
            Some(f) => {
                return Err(StoreError::Format(format!(
                    "{} holds a log of format {:?}, not {:?}",
                    config.path.display(),
                    String::from_utf8_lossy(&f),
                    String::from_utf8_lossy(FORMAT)
                )))
            }
            None if db.tree_names().len() <= 2 && meta.is_empty() => {
                // A new directory: sled's default tree and `meta` itself.
                meta.insert("format", FORMAT)?;
                db.flush()?;
            }
            None => {
                return Err(StoreError::Format(format!(
                    "{} is not a casetrail data directory",
                    config.path.display()
                )))
            }
        }
        let trees = Trees::open(db, config.inspection)?;
        let size = trees.last_position()?;
        let tail: SharedTail = Default::default();
        let (last_recorded_at, root) = if config.inspection {
            // Index what the indexes lag behind, in memory only, so that reads answer right; write nothing. (Not
            // after an interrupted rebuild: the index is empty then, and the rebuild makes it again.)
            let from = trees.index.watermark().unwrap_or(0).min(size);
            if trees.meta().get(REBUILDING)?.is_none() {
                let caught_up = index::catch_up(
                    &trees.index,
                    SledLog::events_of(&trees, from),
                    usize::MAX,
                    |delta| {
                        delta.add_to(&tail);
                        Ok(())
                    },
                    |_| {},
                );
                if let Err(e) = caught_up {
                    eprintln!(
                        "casetrail: the indexes cannot be caught up in memory past damage ({e})"
                    );
                }
            }
            (
                DateTime::<Utc>::MIN_UTC,
                trees.root(size).unwrap_or(tlog_tiles::EMPTY_HASH),
            )
        } else {
            if trees.meta().get(REBUILDING)?.is_some() {
                return Err(StoreError::IndexMismatch(
                    "an index rebuild was interrupted".into(),
                ));
            }
            if let Some(wrong) = trees.audit_counts(size)? {
                return Err(StoreError::IndexMismatch(wrong));
            }
            // What a conversion from the dense layout stopped before removing (it set the marker first).
            trees.remove_runs(crate::merkle::DENSE)?;
            // The indexes may lag behind the log (the process stopped before the indexer wrote): index the rest
            // now, before anything is decided or served.
            let watermark = trees.index.watermark()?;
            if watermark > size {
                return Err(StoreError::IndexMismatch(format!(
                    "the indexes claim position {watermark}, past the log's {size}"
                )));
            }
            if watermark < size {
                let mut records = index::record_cache();
                index::catch_up(
                    &trees.index,
                    SledLog::events_of(&trees, watermark),
                    index::FLUSH_EVENTS * 4,
                    |delta| delta.write(&trees.index, &mut records),
                    |_| {},
                )?;
                trees.db.flush()?;
            }
            let last_recorded_at = match size {
                0 => DateTime::<Utc>::MIN_UTC,
                n => {
                    trees
                        .event(n)?
                        .ok_or_else(|| StoreError::IndexMismatch("the last event vanished".into()))?
                        .recorded_at
                }
            };
            (last_recorded_at, trees.root(size)?)
        };
        let (head_tx, head_rx) = watch::channel(Head { size, root });
        let db_file = if config.fsync {
            // The directory entries of a new data directory (sled's `db` and `conf`) must survive power loss too.
            std::fs::File::open(&config.path)?.sync_all()?;
            Some(crate::durable::Syncer::open(&config.path)?)
        } else {
            None
        };
        let metrics = Arc::new(WriterMetrics::default());
        let failed = Arc::new(std::sync::OnceLock::new());
        if config.inspection {
            let _ = failed.set("the log is open for inspection only".to_string());
        }
        let indexed = Arc::new(AtomicU64::new(size));
        let (index_tx, index_rx) = std::sync::mpsc::channel();
        let indexer = Indexer {
            trees: trees.index.clone(),
            tail: tail.clone(),
            indexed: indexed.clone(),
            failed: failed.clone(),
            flush_after: config.index_flush_after,
        };
        let indexer = std::thread::Builder::new()
            .name("casetrail-indexer".into())
            .spawn(move || indexer.run(index_rx))?;
        let writer = Writer {
            trees: trees.clone(),
            tail: tail.clone(),
            indexer: index_tx,
            indexed,
            compressor: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
            db_file,
            size,
            heads: std::cell::RefCell::new(crate::writer::HeadCache::new(
                crate::writer::HEAD_CACHE_STREAMS,
            )),
            // (A log open for inspection writes nothing, and may be damaged: it needs no frontier.)
            frontier: match config.inspection {
                true => Default::default(),
                false => crate::merkle::Frontier {
                    tile: trees
                        .leaf_hashes(size - size % crate::merkle::TILE, size)
                        .map_err(|e| StoreError::Tree(e.to_string()))?,
                },
            },
            last_recorded_at,
            head: head_tx,
            clock: config.clock.clone(),
            clock_skew: config.clock_skew,
            group_events_max: config.group_events_max,
            metrics: metrics.clone(),
            failed: failed.clone(),
        };
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let handle = std::thread::Builder::new()
            .name("casetrail-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(SledLog {
            fsync: config.fsync,
            trees,
            tail,
            dir: config.path,
            sender: Mutex::new(Some(tx)),
            head: head_rx,
            writer: Mutex::new(Some(handle)),
            indexer: Mutex::new(Some(indexer)),
            metrics,
            failed,
        })
    }

    /// Decoded events after position `after`, in order (no cap at the head: for open and maintenance).
    fn events_of(
        trees: &Trees,
        after: u64,
    ) -> impl Iterator<Item = Result<StoredEvent, StoreError>> + '_ {
        trees.raw_blocks(after + 1).flat_map(move |item| {
            let decoded: Vec<Result<StoredEvent, StoreError>> =
                match item.and_then(|(first, value)| Block::decode(first, &value)) {
                    Err(e) => vec![Err(e)],
                    Ok(block) => block
                        .iter()
                        .filter(|(p, _)| *p > after)
                        .map(|(p, bytes)| Trees::decode(p, bytes))
                        .collect(),
                };
            decoded
        })
    }

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
        if self.fsync {
            // What the indexer wrote last (its larger filters may be blob files) survives a power cut too.
            let _ = crate::durable::Syncer::open(&self.dir)
                .map_err(StoreError::from)
                .and_then(|mut s| s.flush_and_sync(|| self.trees.db.flush().map(|_| ())));
        } else {
            let _ = self.trees.db.flush();
        }
    }

    /// Copies what format 1 kept as format 2 keeps it (credentials, their token hashes, signed checkpoints) from
    /// a format-1 database into this new log, durably: the last step of `casetrail upgrade` before the swap.
    pub fn adopt(&self, old: &crate::format1::Format1) -> Result<(), StoreError> {
        for (name, tree) in old.kept_trees()? {
            let into = match name {
                "credentials" => &self.trees.credentials,
                "credential_hashes" => &self.trees.credential_hashes,
                _ => &self.trees.checkpoints,
            };
            for item in tree.iter() {
                let (k, v) = item?;
                into.insert(k, v)?;
            }
        }
        self.sync()
    }

    /// Converts a log in format 2's first layout (every audit hash stored under `h` keys) in place: writes the
    /// sparse audit data from the events, checks that it gives the root the dense hashes gave, sets the format
    /// marker, then removes the dense hashes. Returns `None` for a directory not in that layout, else (size,
    /// root). Stopped anywhere, it can be run again: before the marker is set the directory is still in the
    /// first layout (the new runs are written again), after it the next open removes what is left of the old.
    pub fn convert_dense(
        config: &Config,
        progress: impl FnMut(u64),
    ) -> Result<Option<Head>, StoreError> {
        let db = open_db(config)?;
        let meta = db.open_tree("meta")?;
        if meta.get("format")?.as_deref() != Some(FORMAT_2_DENSE) {
            return Ok(None);
        }
        let trees = Trees::open(db, true)?;
        let size = trees.last_position()?;
        let dense = crate::merkle::Dense(&trees.log);
        let old = tree_hash(size, &dense).map_err(|e| StoreError::Tree(e.to_string()))?;
        trees.write_audit_data(progress)?;
        trees.db.flush()?;
        let new = trees.root(size)?;
        if new != old {
            return Err(StoreError::Tree(format!(
                "the events give root {new}, the stored hashes {old}; the directory is left in its first layout"
            )));
        }
        meta.insert("format", FORMAT)?;
        trees.db.flush()?;
        trees.remove_runs(crate::merkle::DENSE)?;
        trees.db.flush()?;
        Ok(Some(Head { size, root: new }))
    }

    /// The position through which the index trees are complete (the rest is in memory).
    pub fn indexed_through(&self) -> Result<u64, StoreError> {
        self.trees.index.watermark()
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, AppendError> {
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

    /// Stores a new credential, durably. Its name must be new.
    pub fn add_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        credential.check().map_err(StoreError::Format)?;
        let t = &self.trees;
        let value = serde_json::to_vec(credential).expect("credentials serialize");
        let added = (&t.credentials, &t.credential_hashes)
            .transaction(|(names, hashes)| {
                if names.get(credential.name.as_bytes())?.is_some() {
                    return sled::transaction::abort(());
                }
                names.insert(credential.name.as_bytes(), value.as_slice())?;
                hashes.insert(
                    credential.token_sha256.as_bytes(),
                    credential.name.as_bytes(),
                )?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Abort(()) => {
                    StoreError::CredentialExists(credential.name.clone())
                }
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            });
        added?;
        self.sync()
    }

    /// Every credential, revoked ones included, by name.
    pub fn credentials(&self) -> Result<Vec<Credential>, StoreError> {
        self.trees
            .credentials
            .iter()
            .values()
            .map(|v| {
                serde_json::from_slice(&v?)
                    .map_err(|e| StoreError::Format(format!("a stored credential: {e}")))
            })
            .collect()
    }

    /// Revokes a credential; false when there is none of that name or it was revoked already.
    pub fn revoke_credential(&self, name: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(bytes) = self.trees.credentials.get(name.as_bytes())? else {
            return Ok(false);
        };
        let mut credential: Credential =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Format(e.to_string()))?;
        if credential.revoked_at.is_some() {
            return Ok(false);
        }
        credential.revoked_at = Some(at);
        self.trees.credentials.insert(
            name.as_bytes(),
            serde_json::to_vec(&credential).expect("credentials serialize"),
        )?;
        self.trees
            .credential_hashes
            .remove(credential.token_sha256.as_bytes())?;
        self.sync()?;
        Ok(true)
    }

    /// The live credential whose token hashes to `token_sha256`.
    pub fn credential_by_token_sha256(
        &self,
        token_sha256: &str,
    ) -> Result<Option<Credential>, StoreError> {
        let Some(name) = self.trees.credential_hashes.get(token_sha256.as_bytes())? else {
            return Ok(None);
        };
        let Some(bytes) = self.trees.credentials.get(&name)? else {
            return Ok(None);
        };
        let credential: Credential =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Format(e.to_string()))?;
        Ok(credential.revoked_at.is_none().then_some(credential))
    }

    /// Stores a signed checkpoint of the first `checkpoint.size` events, durably. The first one stored at a size
    /// is kept: when one exists already, nothing is written and that one is returned.
    pub fn add_checkpoint(
        &self,
        checkpoint: &StoredCheckpoint,
    ) -> Result<StoredCheckpoint, StoreError> {
        let size = self.head().size;
        if checkpoint.size > size {
            return Err(StoreError::OutOfRange(format!(
                "a checkpoint of size {} is past the log's size {size}",
                checkpoint.size
            )));
        }
        let value = serde_json::to_vec(checkpoint).expect("checkpoints serialize");
        let key = checkpoint.size.to_be_bytes();
        match self
            .trees
            .checkpoints
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))?
        {
            Ok(()) => {
                self.sync()?;
                Ok(checkpoint.clone())
            }
            Err(existing) => decode_checkpoint(
                existing
                    .current
                    .as_deref()
                    .expect("a failed swap from None found a value"),
            ),
        }
    }

    /// The checkpoint stored at `size`, if one was issued there.
    pub fn checkpoint(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.trees
            .checkpoints
            .get(size.to_be_bytes())?
            .map(|v| decode_checkpoint(&v))
            .transpose()
    }

    /// The checkpoint of the largest size.
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.trees
            .checkpoints
            .last()?
            .map(|(_, v)| decode_checkpoint(&v))
            .transpose()
    }

    /// Up to `limit` stored checkpoints of sizes above `after`, by size.
    pub fn checkpoints(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let from = match after {
            None => 0u64,
            Some(a) => match a.checked_add(1) {
                Some(f) => f,
                None => return Ok(Vec::new()),
            },
        };
        self.trees
            .checkpoints
            .range(from.to_be_bytes()..)
            .take(limit)
            .map(|item| decode_checkpoint(&item?.1))
            .collect()
    }

    /// Flush and fsync, for the rare writes outside the writer (credentials).
    fn sync(&self) -> Result<(), StoreError> {
        crate::durable::Syncer::open(&self.dir)?
            .flush_and_sync(|| self.trees.db.flush().map(|_| ()))
    }

    /// Every event from position `after + 1` on, decoded, in order: the replay path.
    /// Every event from position `after + 1` on, decoded, in order (no cap at the head).
    pub fn scan(&self, after: u64) -> impl Iterator<Item = Result<StoredEvent, StoreError>> + '_ {
        SledLog::events_of(&self.trees, after)
    }

    /// Calls `fold` with every event from position `after + 1` to the head, in order, decompressing and decoding
    /// on two threads while this one reads and folds: the replay path. Returns how many events were folded.
    pub fn replay(&self, after: u64, fold: impl FnMut(StoredEvent)) -> Result<u64, StoreError> {
        self.replay_to(after, self.head().size, fold)
    }

    /// [`SledLog::replay`], stopping after position `to` (or at the head, if that comes first).
    pub fn replay_to(
        &self,
        after: u64,
        to: u64,
        mut fold: impl FnMut(StoredEvent),
    ) -> Result<u64, StoreError> {
        const CHUNK_BLOCKS: usize = 8;
        const CHUNKS_IN_FLIGHT: usize = 8;
        const DECODERS: usize = 2;
        let size = self.head().size.min(to);
        if after >= size {
            return Ok(0);
        }
        type Chunk = Vec<(u64, sled::IVec)>;
        std::thread::scope(|scope| {
            let mut work = Vec::new();
            let mut results = Vec::new();
            for _ in 0..DECODERS {
                let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
                let (result_tx, result_rx) = std::sync::mpsc::sync_channel::<
                    Result<Vec<StoredEvent>, StoreError>,
                >(CHUNKS_IN_FLIGHT);
                scope.spawn(move || {
                    for chunk in work_rx {
                        let decoded = (|| {
                            let mut out = Vec::with_capacity(chunk.len() * 128);
                            for (first, value) in &chunk {
                                let block = Block::decode(*first, value)?;
                                for (p, bytes) in block.iter() {
                                    if p > after && p <= size {
                                        out.push(Trees::decode(p, bytes)?);
                                    }
                                }
                            }
                            Ok(out)
                        })();
                        if result_tx.send(decoded).is_err() {
                            break;
                        }
                    }
                });
                work.push(work_tx);
                results.push(result_rx);
            }
            let mut raw = self.trees.raw_blocks(after + 1);
            let (mut sent, mut received, mut folded, mut exhausted) = (0usize, 0usize, 0u64, false);
            loop {
                while !exhausted && sent - received < CHUNKS_IN_FLIGHT {
                    let mut chunk = Vec::with_capacity(CHUNK_BLOCKS);
                    for item in raw.by_ref() {
                        let (first, value) = item?;
                        if first > size {
                            exhausted = true;
                            break;
                        }
                        chunk.push((first, value));
                        if chunk.len() == CHUNK_BLOCKS {
                            break;
                        }
                    }
                    if chunk.len() < CHUNK_BLOCKS {
                        exhausted = true;
                    }
                    if chunk.is_empty() {
                        break;
                    }
                    work[sent % DECODERS]
                        .send(chunk)
                        .expect("decoders outlive the loop");
                    sent += 1;
                }
                if received == sent {
                    break;
                }
                // Chunk i went to decoder i % DECODERS, so reading the decoders in turn keeps the log's order.
                let decoded = results[received % DECODERS]
                    .recv()
                    .expect("a decoder answers every chunk")?;
                received += 1;
                for e in decoded {
                    folded += 1;
                    fold(e);
                }
            }
            Ok(folded)
        })
    }

    /// The decoded blocks holding positions `after + 1` on, in order: the raw canonical bytes, for export.
    pub fn blocks(&self, after: u64) -> impl Iterator<Item = Result<Block, StoreError>> + '_ {
        self.trees
            .raw_blocks(after + 1)
            .map(|item| item.and_then(|(first, value)| Block::decode(first, &value)))
    }

    /// Raw canonical bytes from position `after + 1` on (no cap at the head).
    pub fn scan_raw(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + '_ {
        self.blocks(after).flat_map(move |item| {
            let raw: Vec<Result<(u64, Vec<u8>), StoreError>> = match item {
                Err(e) => vec![Err(e)],
                Ok(block) => block
                    .iter()
                    .filter(|(p, _)| *p > after)
                    .map(|(p, b)| Ok((p, b.to_vec())))
                    .collect(),
            };
            raw
        })
    }

    /// Counts and sizes for `casetrail stats`.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let head = self.head();
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        let (mut first, mut last) = (None, None);
        let (mut bytes, mut stored_bytes) = (0u64, 0u64);
        for item in self.trees.raw_blocks(1) {
            let (first_position, value) = item?;
            stored_bytes += value.len() as u64;
            let block = Block::decode(first_position, &value)?;
            for (position, raw) in block.iter() {
                let e = Trees::decode(position, raw)?;
                *by_type.entry(e.event.event_type().to_string()).or_default() += 1;
                first.get_or_insert(e.recorded_at);
                last = Some(e.recorded_at);
                bytes += raw.len() as u64;
            }
        }
        let keys = self.stream_keys("")?;
        Ok(Stats {
            size: head.size,
            root: head.root.to_string(),
            streams: keys.len() as u64,
            dossiers: keys.iter().filter(|k| !k.contains('/')).count() as u64,
            events_by_type: by_type,
            event_bytes: bytes,
            block_bytes: stored_bytes,
            index_bytes: self.trees.index.lsm.live_bytes()?,
            disk_bytes: self.trees.db.size_on_disk()?,
            first_recorded_at: first,
            last_recorded_at: last,
        })
    }

    /// Rebuilds every derived tree (ids, heads, streams) and the audit hashes from the blocks alone. Needs the
    /// writer idle: call it on a log opened for inspection that nobody else uses.
    pub fn rebuild_indexes(&self, mut progress: impl FnMut(u64)) -> Result<Head, StoreError> {
        let t = &self.trees;
        t.meta().insert(REBUILDING, b"1")?;
        t.db.flush()?;
        t.index.lsm.clear()?;
        // The audit data: recomputed from the events' bytes.
        let size = t.write_audit_data(|n| progress(n / 2))?;
        let mut records = index::record_cache();
        index::catch_up(
            &t.index,
            SledLog::events_of(t, 0),
            index::FLUSH_EVENTS * 4,
            |delta| delta.write(&t.index, &mut records),
            |n| progress(size / 2 + n / 2),
        )?;
        *self.tail.write().expect("tail lock") = Default::default();
        t.meta().remove(REBUILDING)?;
        t.db.flush()?;
        progress(size);
        Ok(Head {
            size,
            root: t.root(size)?,
        })
    }

    /// Re-hashes every stored event, recomputes the root, checks every stream against its rules and every index
    /// against the events. Names the first bad position, inside a block too.
    pub fn verify(&self, mut progress: impl FnMut(u64)) -> Result<VerifyReport, StoreError> {
        let t = &self.trees;
        let mut problems: Vec<(u64, String)> = Vec::new();
        let mut size = 0u64;
        let mut damaged = false;
        let mut ids_found_in_trees = 0u64;
        let mut parents: HashMap<domain::AgencyCode, Option<domain::AgencyCode>> = HashMap::new();
        // Every stream folded from its events: its head and its positions by version.
        let mut streams: HashMap<String, (StreamHead, Vec<u64>)> = HashMap::new();
        let mut blocks = t.raw_blocks(1);
        let mut growth = Growth::new(0, Default::default());
        loop {
            let (first, value) = match blocks.next() {
                None => break,
                Some(Ok(found)) => found,
                // Damage below the log tree (a changed byte in the database file itself): sled's own checksum
                // refuses the page. Name the first position not read, and stop: nothing after it can be trusted.
                Some(Err(e)) => {
                    problems.push((
                        size + 1,
                        format!("unreadable from here on: the database file is damaged ({e})"),
                    ));
                    damaged = true;
                    break;
                }
            };
            let block = match Block::decode_unchecked(first, &value) {
                Ok(b) => b,
                Err(e) => {
                    problems.push((first.min(size + 1), format!("{e}")));
                    continue;
                }
            };
            let mut named_in_block = false;
            for (at, bytes) in block.iter() {
                let stored = match StoredEvent::from_canonical_bytes(bytes) {
                    Ok(s) => s,
                    Err(e) => {
                        problems.push((at, format!("does not decode: {e}")));
                        named_in_block = true;
                        size = size.max(at);
                        continue;
                    }
                };
                let position = stored.position;
                if position != size + 1 {
                    problems.push((
                        size + 1,
                        if position > size + 1 {
                            format!("missing: the next event stored is at position {position}")
                        } else {
                            format!("out of order: the event of position {position} is stored after position {size}")
                        },
                    ));
                    named_in_block = true;
                }
                if position != at && !named_in_block {
                    problems.push((
                        at.min(position),
                        format!(
                            "the block from {first} holds the event of position {position} at {at}"
                        ),
                    ));
                    named_in_block = true;
                }
                if position <= size {
                    continue;
                }
                size = position;
                if position % 100_000 == 0 {
                    progress(position);
                }
                // The audit data: the leaf's hash against its stored prefix; at the end of each tile, the hashes
                // above it against the stored ones. Those read only earlier upper hashes, checked already, so by
                // induction every stored hash is checked against the bytes.
                let leaf = record_hash(bytes);
                match crate::merkle::read_prefix(&t.log, position - 1) {
                    Ok(Some(p)) if p[..] == leaf.0[..crate::merkle::PREFIX_BYTES] => {}
                    _ => {
                        problems.push((position, "its audit hash does not match its bytes".into()));
                        named_in_block = true;
                    }
                }
                if let Err(e) = growth.push(position - 1, leaf, &t.log) {
                    problems.push((position, format!("audit hashes unreadable: {e}")));
                }
                if !growth.upper.is_empty() {
                    for (i, h) in growth.upper.iter().enumerate() {
                        let index = growth.upper_from + i as u64;
                        if crate::merkle::read_stored(&t.log, crate::merkle::UPPER, index).ok()
                            != Some(*h)
                        {
                            problems.push((
                                position,
                                format!(
                                    "the audit hash over the tile ending here (index {index} above the tiles) does not match the events' bytes"
                                ),
                            ));
                            break;
                        }
                    }
                    growth = Growth::new(position, std::mem::take(&mut growth.frontier));
                }
                // The agency tree, as it stood after each registration: a cycle is named where it was closed.
                if let (EventData::AgencyRegistered(a), Some(agency)) =
                    (&stored.event.data, &stored.event.agency)
                {
                    if let Some(parent) = &a.parent {
                        let tree = domain::stream::check_agency_tree(agency, parent, |code| {
                            Ok::<_, std::convert::Infallible>(parents.get(code).cloned().flatten())
                        });
                        if let Ok(Err(cycle)) = tree {
                            problems.push((position, format!("breaks the agency tree: {cycle}")));
                        }
                    }
                    parents.insert(agency.clone(), a.parent.clone());
                }
                // The stream's rules, folded in order.
                let key = stored.event.stream().key();
                let (head, positions) = streams.entry(key.clone()).or_default();
                if stored.version != head.version + 1 {
                    problems.push((
                        position,
                        format!("version {} of {key} out of sequence", stored.version),
                    ));
                }
                let ctx = Context {
                    now: stored.recorded_at,
                    clock_skew: chrono::Duration::days(36_500),
                };
                match decide(head, &stored.event, None, &ctx) {
                    Ok(next) => *head = next,
                    Err(r) => {
                        problems.push((position, format!("breaks a rule of its stream: {r}")));
                        domain::apply_in_place(head, &stored.event);
                    }
                }
                positions.push(position);
                // The id index (trees, or the tail for what they lag behind).
                let in_trees = t.index.id(stored.event.id).ok().flatten();
                if in_trees == Some(position) {
                    ids_found_in_trees += 1;
                }
                match index::id_position(&t.index, &self.tail, stored.event.id) {
                    Ok(Some(p)) if p == position => {}
                    other => problems.push((
                        position,
                        format!("the id index points elsewhere ({:?})", other.ok().flatten()),
                    )),
                }
            }
            if block.checksum_failed && !named_in_block {
                problems.push((first, "the block from here fails its checksum".into()));
            }
        }
        // Whole-tree counts mean nothing when the events could not all be read.
        if !damaged {
            if let Some(wrong) = t.audit_counts(size)? {
                problems.push((size, wrong));
            }
            let ids_in_trees = t.index.count(index::ID)?;
            if ids_in_trees != ids_found_in_trees {
                problems.push((
                    size,
                    format!(
                        "the id index has {ids_in_trees} entries, of which {ids_found_in_trees} name their event"
                    ),
                ));
            }
            // Every stream: its indexed head and positions are what its events fold to.
            for (key, (head, positions)) in &streams {
                let indexed_head = index::stream_head(&t.index, &self.tail, key).ok().flatten();
                let indexed = index::stream_positions(&t.index, &self.tail, key, size);
                let last = *positions.last().expect("a stream has an event");
                match indexed {
                    Ok(p) if p == *positions => {}
                    Ok(p) => {
                        let differs = positions
                            .iter()
                            .zip(p.iter().chain(std::iter::repeat(&0)))
                            .find(|(a, b)| a != b)
                            .map_or(last, |(a, _)| *a);
                        problems.push((
                            differs,
                            format!("the stream index of {key} points elsewhere"),
                        ));
                        continue;
                    }
                    Err(e) => {
                        problems.push((last, format!("the stream index of {key}: {e}")));
                        continue;
                    }
                }
                if indexed_head.as_ref() != Some(head) {
                    problems.push((
                        last,
                        format!("the stored head of {key} differs from its events"),
                    ));
                }
            }
            let indexed_streams = self.stream_keys("")?.len();
            if indexed_streams != streams.len() {
                problems.push((
                    size,
                    format!(
                        "{indexed_streams} stream heads for {} streams in the events",
                        streams.len()
                    ),
                ));
            }
        }
        let root = if problems.is_empty() {
            Some(t.root(size)?)
        } else {
            None
        };
        problems.sort_by_key(|(p, _)| *p);
        progress(size);
        Ok(VerifyReport {
            size,
            indexed_through: t.index.watermark().unwrap_or(0).min(size),
            streams: streams.len() as u64,
            root: root.map(|r| r.to_string()),
            problems,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub issued_at: DateTime<Utc>,
    pub note: String,
}

fn decode_checkpoint(bytes: &[u8]) -> Result<StoredCheckpoint, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Format(format!("a stored checkpoint: {e}")))
}

/// What `verify` found.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub size: u64,
    /// Through which position the index trees on disk were complete (the rest was indexed in memory to check).
    pub indexed_through: u64,
    pub streams: u64,
    /// The recomputed root, when everything checked out.
    pub root: Option<String>,
    /// (position, what is wrong), by position; empty when the log is sound.
    pub problems: Vec<(u64, String)>,
}

/// What `stats` shows.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub size: u64,
    pub root: String,
    pub streams: u64,
    pub dossiers: u64,
    pub events_by_type: BTreeMap<String, u64>,
    /// The events' canonical bytes.
    pub event_bytes: u64,
    /// The blocks holding them, compressed.
    pub block_bytes: u64,
    /// The index's runs and filters (keys and values as stored; sled's own overhead is not counted).
    pub index_bytes: u64,
    pub disk_bytes: u64,
    pub first_recorded_at: Option<DateTime<Utc>>,
    pub last_recorded_at: Option<DateTime<Utc>>,
}

impl Drop for SledLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl EventLog for SledLog {
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl std::future::Future<Output = Result<AppendOutcome, AppendError>> + Send {
        let sender = self.sender();
        async move {
            let sender = sender?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(Job { request, reply })
                .await
                .map_err(|_| AppendError::Unavailable("the log writer has stopped".into()))?;
            answer
                .await
                .map_err(|_| AppendError::Unavailable("the log writer has stopped".into()))?
        }
    }

    fn append_blocking(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let sender = self.sender()?;
        let (reply, answer) = oneshot::channel();
        sender
            .blocking_send(Job { request, reply })
            .map_err(|_| AppendError::Unavailable("the log writer has stopped".into()))?;
        answer
            .blocking_recv()
            .map_err(|_| AppendError::Unavailable("the log writer has stopped".into()))?
    }

    fn head(&self) -> Head {
        *self.head.borrow()
    }

    fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        let head = self.head();
        if size > head.size {
            return Err(StoreError::Tree(format!(
                "size {size} is past the log's size {}",
                head.size
            )));
        }
        self.trees.root(size)
    }

    fn prove_inclusion(&self, position: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let head = self.head().size;
        if size > head || position == 0 || position > size {
            return Err(StoreError::OutOfRange(format!(
                "no event at position {position} in a tree of size {size} (the log has {head})"
            )));
        }
        self.trees
            .with_hashes(|h| tlog_tiles::prove_record(size, position - 1, h))
            .map_err(|e| StoreError::Tree(e.to_string()))
    }

    fn prove_consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        let head = self.head().size;
        if from > to || to > head {
            return Err(StoreError::OutOfRange(format!(
                "no consistency proof from size {from} to size {to} (the log has {head})"
            )));
        }
        if from == 0 {
            // Every tree extends the empty tree: nothing to prove.
            return Ok(Vec::new());
        }
        self.trees
            .with_hashes(|h| tlog_tiles::prove_tree(to, from, h))
            .map_err(|e| StoreError::Tree(e.to_string()))
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
}

/// For benchmarks: the engine's own ceiling on this machine. Writes `records` under big-endian position keys
/// into a bare sled tree, `group` per batch, each batch flushed and fsynced as the writer does, with no index,
/// no decision and no audit tree. Returns records per second.
pub fn bare_sled_appends_per_sec(
    dir: &Path,
    records: &[Vec<u8>],
    group: usize,
) -> Result<f64, StoreError> {
    let config = Config::new(dir);
    let db = open_db(&config)?;
    let tree = db.open_tree("events")?;
    let file = std::fs::File::open(dir.join("db"))?;
    let started = std::time::Instant::now();
    for (g, chunk) in records.chunks(group.max(1)).enumerate() {
        let mut batch = sled::Batch::default();
        for (i, r) in chunk.iter().enumerate() {
            batch.insert(&((g * group + i + 1) as u64).to_be_bytes(), r.as_slice());
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        file.sync_data()?;
    }
    Ok(records.len() as f64 / started.elapsed().as_secs_f64())
}
