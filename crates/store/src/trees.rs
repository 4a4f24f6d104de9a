//! The open sled trees of a log, and the reads every part of the store shares: blocks by position, events, and
//! the audit tree's hashes (stored above the tiles, computed below them from the events).

use crate::block::Block;
use crate::index::{self, IndexTrees};
use crate::merkle::Hashes;
use crate::StoreError;
use domain::StoredEvent;
use std::sync::Arc;
use tlog_tiles::{record_hash, stored_hash_count, tree_hash, Hash};

/// The key prefix of blocks in the `log` tree.
pub(crate) const BLOCK: u8 = b'b';

/// The key of the block whose first event is at `first`.
pub(crate) fn block_key(first: u64) -> [u8; 9] {
    crate::merkle::key(BLOCK, first)
}

pub(crate) fn block_first(key: &[u8]) -> Result<u64, StoreError> {
    key.get(1..)
        .and_then(index::decode_u64)
        .ok_or_else(|| StoreError::Damaged(format!("a block key of {} bytes", key.len())))
}

/// The event count a block's header states, without decompressing it.
pub(crate) fn block_count(first: u64, value: &[u8]) -> Result<u64, StoreError> {
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
    pub(crate) fn open(db: sled::Db, read_only: bool) -> Result<Trees, StoreError> {
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

    pub(crate) fn meta(&self) -> &sled::Tree {
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
        self.at(positions, Trees::decode)
    }

    /// The stored bytes at each of `positions`, undecoded.
    pub fn raw_at(&self, positions: &[u64]) -> Result<Vec<crate::RawEvent>, StoreError> {
        self.at(positions, |position, bytes| {
            Ok(crate::RawEvent {
                position,
                bytes: bytes.to_vec(),
            })
        })
    }

    /// `read` of the stored bytes at each of `positions`, reading each block once for a run of positions in it.
    fn at<T>(
        &self,
        positions: &[u64],
        read: impl Fn(u64, &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
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
            out.push(read(p, bytes)?);
        }
        Ok(out)
    }

    pub(crate) fn last_position(&self) -> Result<u64, StoreError> {
        match block_entry(&self.log, u64::MAX)? {
            None => Ok(0),
            Some((first, value)) => Ok(first + block_count(first, &value)? - 1),
        }
    }

    /// The leaf hashes of leaves `from..to` (0-based: positions `from + 1..=to`), as many as are stored.
    pub fn leaf_hashes(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        let mut out = Vec::with_capacity((to - from) as usize);
        let mut next = from + 1;
        while next <= to {
            let Some(block) = self.block_at(next)? else {
                break;
            };
            for (_, bytes) in block.iter().filter(|(p, _)| (next..=to).contains(p)) {
                out.push(record_hash(bytes));
            }
            next = block.last() + 1;
        }
        Ok(out)
    }

    /// Runs `f` with a reader of every hash of the committed audit tree; a storage error met on the way is
    /// reported as itself, not as a tree error.
    pub(crate) fn with_hashes<T>(
        &self,
        f: impl FnOnce(&Hashes) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T, StoreError> {
        let source = |from, to| self.leaf_hashes(from, to);
        let hashes = Hashes::committed(&self.log, &source);
        f(&hashes).map_err(|e| hashes.explain(e))
    }

    pub(crate) fn root(&self, size: u64) -> Result<Hash, StoreError> {
        self.with_hashes(|h| tree_hash(size, h))
    }

    /// Removes every run under `prefix` from the `log` tree.
    pub(crate) fn remove_runs(&self, prefix: u8) -> Result<(), StoreError> {
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
    pub(crate) fn write_audit_data(
        &self,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, StoreError> {
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
                growth.push(size, record_hash(bytes), &self.log)?;
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
    pub(crate) fn audit_counts(&self, size: u64) -> Result<Option<String>, StoreError> {
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
