//! Reading a data directory of format 1, for `casetrail upgrade` and nothing else.
//!
//! Format 1 kept one sled key per event (`events`: position → canonical bytes) and wrote its indexes in the same
//! transaction; its `hashes` tree held the audit hashes under bare 8-byte keys. Credentials and checkpoints were
//! kept exactly as format 2 keeps them, so they are copied as they are.

use crate::{Hash, StoreError};
use std::path::Path;
use tlog_tiles::{tree_hash, HashReader};

/// A format-1 database, open for reading.
pub struct Format1 {
    db: sled::Db,
    events: sled::Tree,
    hashes: sled::Tree,
}

impl Format1 {
    /// Opens the directory if it holds format 1; `Ok(None)` if it holds anything else.
    pub fn open(dir: &Path) -> Result<Option<Format1>, StoreError> {
        let config = crate::Config::new(dir);
        let db = crate::sled_log::open_db(&config)?;
        let meta = db.open_tree("meta")?;
        if meta.get("format")?.as_deref() != Some(crate::sled_log::FORMAT_1) {
            return Ok(None);
        }
        Ok(Some(Format1 {
            events: db.open_tree("events")?,
            hashes: db.open_tree("hashes")?,
            db,
        }))
    }

    /// How many events the log holds (its last position).
    pub fn size(&self) -> Result<u64, StoreError> {
        Ok(match self.events.last()? {
            None => 0,
            Some((k, _)) => crate::index::decode_u64(&k)
                .ok_or_else(|| StoreError::Format("a format-1 event key is not 8 bytes".into()))?,
        })
    }

    /// The audit root of the first `size` events, from the format-1 hashes.
    pub fn root(&self, size: u64) -> Result<Hash, StoreError> {
        tree_hash(size, &BareHashes(&self.hashes)).map_err(|e| StoreError::Tree(e.to_string()))
    }

    /// Every event's canonical bytes, in position order.
    pub fn events(&self) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> + '_ {
        self.events.iter().map(|item| {
            let (k, v) = item?;
            let position = crate::index::decode_u64(&k)
                .ok_or_else(|| StoreError::Format("a format-1 event key is not 8 bytes".into()))?;
            Ok((position, v))
        })
    }

    /// The trees kept as they are across formats: credentials, their token hashes, signed checkpoints.
    pub(crate) fn kept_trees(&self) -> Result<Vec<(&'static str, sled::Tree)>, StoreError> {
        ["credentials", "credential_hashes", "checkpoints"]
            .into_iter()
            .map(|name| Ok((name, self.db.open_tree(name)?)))
            .collect()
    }
}

/// Format 1's hashes tree: runs of 32-byte hashes under the bare index of the first.
struct BareHashes<'a>(&'a sled::Tree);

impl HashReader for BareHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                let (key, run) = self
                    .0
                    .range(..=i.to_be_bytes())
                    .next_back()
                    .transpose()
                    .map_err(|e| tlog_tiles::Error::InvalidInput(format!("sled: {e}")))?
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
                let start =
                    crate::index::decode_u64(&key).ok_or(tlog_tiles::Error::MalformedHash)?;
                let at = ((i - start) as usize) * 32;
                run.get(at..at + 32)
                    .map(|b| Hash(b.try_into().expect("32 bytes")))
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}
