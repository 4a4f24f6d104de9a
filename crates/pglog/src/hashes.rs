//! The audit tree on PostgreSQL: the upper tree's hashes (level 8 and above, about 0.25 bytes per event) are kept
//! by every node in memory, read once at open and extended as the log grows; a hash below level 8 is computed
//! from the events of its tile (one range read of at most 256 rows). Roots and proofs are then the sled log's,
//! computed by the same `store::merkle` code.

use crate::{db, PgLog};
use std::sync::RwLock;
use store::merkle::{Hashes, InMemory, TILE};
use store::{Hash, StoreError};

/// Every stored upper hash from index 0, as far as this node has read or written them. They never change once
/// stored, so any part of the node may extend the copy and every reader may trust it.
pub struct UpperCache(RwLock<Vec<Hash>>);

impl UpperCache {
    pub fn new(hashes: Vec<Hash>) -> UpperCache {
        UpperCache(RwLock::new(hashes))
    }

    pub fn len(&self) -> u64 {
        self.0.read().expect("upper lock").len() as u64
    }

    /// Adds the run of hashes that starts at index `from` (what a group stored, or what was read); a run this
    /// copy has already is skipped, one past its end cannot be added (it would leave a gap) and is dropped.
    pub fn extend(&self, from: u64, hashes: &[Hash]) {
        let mut all = self.0.write().expect("upper lock");
        let len = all.len() as u64;
        if from <= len && from + hashes.len() as u64 > len {
            all.extend_from_slice(&hashes[(len - from) as usize..]);
        }
    }

    /// Runs `f` with the hashes, to read.
    pub fn with<T>(&self, f: impl FnOnce(&InMemory) -> T) -> T {
        f(&InMemory(&self.0.read().expect("upper lock")))
    }
}

/// Reads the stored upper runs from index `from` on: (first index, hashes) in order.
pub async fn read_runs(
    client: &impl tokio_postgres::GenericClient,
    from: u64,
) -> Result<Vec<(u64, Vec<Hash>)>, StoreError> {
    // The run holding index `from` may start before it.
    let rows = client
        .query(
            "SELECT first_index, hashes FROM audit_upper WHERE first_index >= \
             coalesce((SELECT max(first_index) FROM audit_upper WHERE first_index <= $1), 0) ORDER BY first_index",
            &[&(from as i64)],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let bytes: Vec<u8> = r.get(1);
            let hashes = bytes
                .chunks(32)
                .map(crate::hash_of)
                .collect::<Result<Vec<_>, _>>()?;
            Ok((r.get::<_, i64>(0) as u64, hashes))
        })
        .collect()
}

/// The leaf hashes of leaves `from..to` (0-based: positions `from + 1 ..= to`), read from the events.
pub async fn leaf_hashes(
    client: &tokio_postgres::Client,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, StoreError> {
    let rows = client
        .query(
            "SELECT bytes FROM events WHERE position > $1 AND position <= $2 ORDER BY position",
            &[&(from as i64), &(to as i64)],
        )
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|r| tlog_tiles::record_hash(r.get::<_, &[u8]>(0)))
        .collect())
}

impl PgLog {
    /// Makes sure the node's copy of the upper hashes covers a tree of `size` leaves.
    fn upper_through(&self, size: u64) -> Result<(), StoreError> {
        let needed = tlog_tiles::stored_hash_count(size / TILE);
        let have = self.shared.upper.len();
        if have >= needed {
            return Ok(());
        }
        let runs = self.read(move |c| async move { read_runs(&**c, have).await })?;
        for (first, hashes) in runs {
            self.shared.upper.extend(first, &hashes);
        }
        if self.shared.upper.len() < needed {
            return Err(StoreError::IndexMismatch(format!(
                "the audit tree's stored hashes stop at {} of the {needed} a tree of {size} events has",
                self.shared.upper.len()
            )));
        }
        Ok(())
    }

    /// Runs a tree computation over every hash of the tree of the first `size` events.
    pub(crate) fn with_hashes<T>(
        &self,
        size: u64,
        f: impl FnOnce(&Hashes) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T, StoreError> {
        self.upper_through(size)?;
        let source = |from: u64, to: u64| {
            let to = to.min(size);
            self.read(move |c| async move { leaf_hashes(&c, from, to).await })
        };
        self.shared.upper.with(|upper| {
            let hashes = Hashes::committed(upper, &source);
            f(&hashes).map_err(|e| hashes.explain(e))
        })
    }
}
