//! Opening a log: the directory and its format, catching the indexes up, starting the writer and the indexer;
//! and the two ways an older directory becomes this format.

use super::{
    Config, SledLog, FORMAT, FORMAT_1, FORMAT_2_DENSE, QUEUE_REQUESTS_MAX, REBUILDING, ZSTD_LEVEL,
};
use crate::metrics::WriterMetrics;
use crate::trees::Trees;

use crate::block::Block;
use crate::index::{self, Indexer, SharedTail};
use crate::writer::Writer;
use crate::{Head, StoreError};
use chrono::{DateTime, Utc};
use domain::StoredEvent;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tlog_tiles::{stored_hash_count, tree_hash};
use tokio::sync::{mpsc, watch};

/// An upgrade stopped between its two renames leaves no log at `path`, the old log beside it as `.format1` and the
/// new one as `.upgrading`: making a fresh empty log there would hide both, so every open names it instead.
pub fn upgrade_stopped_halfway(path: &Path) -> Option<StoreError> {
    if path.join("db").exists() {
        return None;
    }
    let name = path.file_name()?.to_string_lossy().into_owned();
    let beside = |suffix: &str| path.with_file_name(format!("{name}.{suffix}"));
    (beside("format1").join("db").exists() && beside("upgrading").join("db").exists()).then(|| {
        StoreError::Format(format!(
            "an upgrade of {} stopped halfway; run `casetrail --data {} upgrade` to finish it",
            path.display(),
            path.display()
        ))
    })
}

pub(crate) fn open_db(config: &Config) -> Result<sled::Db, StoreError> {
    if let Some(halfway) = upgrade_stopped_halfway(&config.path) {
        return Err(halfway);
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
                let caught_up = index::index_from_log(
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
            trees.refuse_interrupted_rebuild()?;
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
                index::index_from_log(
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
            metrics: metrics.clone(),
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
                    tile: trees.leaf_hashes(size - size % crate::merkle::TILE, size)?,
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
            stalled: Default::default(),
            stall: config.stall,
        })
    }

    /// Decoded events after position `after`, in order (no cap at the head: for open and maintenance).
    pub(super) fn events_of(
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
        super::sync(&self.trees, &self.dir)
    }

    /// Converts a log in format 2's first layout (every audit hash stored under `h` keys) in place: writes the
    /// sparse audit data from the events, checks that it gives the root the dense hashes gave, sets the format
    /// marker, then removes the dense hashes; each step fsynced before the next. Returns `None` for a directory
    /// not in that layout, else (size, root). Stopped anywhere, it can be run again: before the marker is set the
    /// directory is still in the first layout (the new runs are written again), after it the next open removes
    /// what is left of the old.
    ///
    /// Dense hashes that are incomplete (the first layout's `rebuild-indexes` was interrupted, or its open refused
    /// them after a crash) cannot be compared with: the events are the truth, so the conversion goes on, and an
    /// interrupted rebuild's flag stays set, so that the next open asks for `rebuild-indexes` as before.
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
        let complete = crate::merkle::packed_end(&trees.log, crate::merkle::DENSE, 32)?
            == stored_hash_count(size)
            && meta.get(REBUILDING)?.is_none();
        let old = match complete {
            true => Some(tree_hash(size, &dense).map_err(|e| StoreError::Tree(e.to_string()))?),
            false => None,
        };
        let mut syncer = crate::durable::Syncer::open(&config.path)?;
        let mut sync = || syncer.flush_and_sync(|| trees.db.flush().map(|_| ()));
        trees.write_audit_data(progress)?;
        sync()?;
        let new = trees.root(size)?;
        if let Some(old) = old.filter(|old| *old != new) {
            return Err(StoreError::Tree(format!(
                "the events give root {new}, the stored hashes {old}; the directory is left in its first layout"
            )));
        }
        meta.insert("format", FORMAT)?;
        sync()?;
        trees.remove_runs(crate::merkle::DENSE)?;
        sync()?;
        Ok(Some(Head { size, root: new }))
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
