//! The audit tree over the log: an RFC 6962 Merkle tree whose leaves are the stored events' canonical bytes,
//! kept as `tlog_tiles` stored hashes (dense indexes, written in the same atomic group as the events).

use tlog_tiles::HashReader;
pub use tlog_tiles::{record_hash, Hash};

/// Stored hashes in a sled tree, with the hashes of a group not yet written on top.
///
/// sled 0.34 pays about the same for every key it writes, whatever its size, so the hashes a group adds (about
/// two per event) are written as one value: key = the stored-hash index of the first, value = the hashes
/// concatenated, 32 bytes each.
pub(crate) struct Hashes<'a> {
    pub tree: &'a sled::Tree,
    /// Index of `pending[0]`.
    pub pending_from: u64,
    pub pending: &'a [Hash],
}

impl HashReader for Hashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                if i >= self.pending_from {
                    self.pending
                        .get((i - self.pending_from) as usize)
                        .copied()
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                } else {
                    read_stored(self.tree, i)
                }
            })
            .collect()
    }
}

/// Reads one stored hash from the packed runs of the hashes tree.
pub(crate) fn read_stored(tree: &sled::Tree, index: u64) -> Result<Hash, tlog_tiles::Error> {
    let (key, run) = tree
        .range(..=index.to_be_bytes())
        .next_back()
        .transpose()
        .map_err(|e| tlog_tiles::Error::InvalidInput(format!("sled: {e}")))?
        .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
    let start = u64::from_be_bytes(
        key.as_ref()
            .try_into()
            .map_err(|_| tlog_tiles::Error::MalformedHash)?,
    );
    let offset = ((index - start) as usize)
        .checked_mul(32)
        .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
    let bytes = run
        .get(offset..offset + 32)
        .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
    Ok(Hash(bytes.try_into().expect("32 bytes")))
}

/// The stored-hash index one past the last stored hash.
pub(crate) fn stored_end(tree: &sled::Tree) -> Result<u64, sled::Error> {
    Ok(match tree.last()? {
        None => 0,
        Some((key, run)) => {
            u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0xff; 8]))
                + (run.len() / 32) as u64
        }
    })
}

/// Packs hashes into one run value.
pub(crate) fn pack(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

pub(crate) fn serialize_hash<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(h)
}

/// Stored hashes in memory: an independent tree for tests and for checking a log from outside.
#[derive(Default)]
pub struct MemoryHashes(pub Vec<Hash>);

impl MemoryHashes {
    /// Adds the leaf for record `n` (0-based), which must be the next one.
    pub fn push(&mut self, n: u64, data: &[u8]) {
        let more = tlog_tiles::stored_hashes(n, data, self).expect("in-memory hashes are complete");
        self.0.extend(more);
    }

    pub fn root(&self, size: u64) -> Hash {
        tlog_tiles::tree_hash(size, self).expect("in-memory hashes are complete")
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}
