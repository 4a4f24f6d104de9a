//! What an operator runs on a log opened for inspection: stats, and rebuilding the derived data (verifying it is
//! in `verify.rs`).

use super::{SledLog, REBUILDING};
use crate::trees::Trees;

use crate::block::Block;
use crate::index;
use crate::{EventLog, Head, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

impl SledLog {
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
            stored_as: "compressed blocks",
            stored_bytes,
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
        index::index_from_log(
            &t.index,
            SledLog::events_of(t, 0),
            index::FLUSH_EVENTS * 4,
            |delta| delta.write(&t.index, &mut records),
            |n| progress(size / 2 + n / 2),
        )?;
        *self.tail.write().expect("tail lock") = Default::default();
        // What was rebuilt is durable (sled's blob files too) before the flag that asks for a rebuild goes.
        let mut syncer = crate::durable::Syncer::open(&self.dir)?;
        syncer.flush_and_sync(|| t.db.flush().map(|_| ()))?;
        t.meta().remove(REBUILDING)?;
        syncer.flush_and_sync(|| t.db.flush().map(|_| ()))?;
        progress(size);
        Ok(Head {
            size,
            root: t.root(size)?,
        })
    }
}

impl Trees {
    /// A rebuild stopped half way leaves the indexes and audit hashes partly written, with its flag set: every
    /// ordinary open and `verify` name it, rather than a mismatch at every position, and ask for the rebuild again.
    pub(super) fn refuse_interrupted_rebuild(&self) -> Result<(), StoreError> {
        match self.meta().get(REBUILDING)? {
            Some(_) => Err(StoreError::IndexMismatch(
                "an index rebuild was interrupted".into(),
            )),
            None => Ok(()),
        }
    }
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
    /// What holds the events as stored, in `stored_bytes`: sled's compressed blocks, or PostgreSQL's `events`
    /// table (its TOAST included, its indexes not).
    pub stored_as: &'static str,
    pub stored_bytes: u64,
    /// The index's runs and filters (keys and values as stored; sled's own overhead is not counted).
    pub index_bytes: u64,
    pub disk_bytes: u64,
    pub first_recorded_at: Option<DateTime<Utc>>,
    pub last_recorded_at: Option<DateTime<Utc>>,
}
