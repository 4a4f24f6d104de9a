//! fsync of what sled wrote: its `db` file, and the separate files it writes under `blobs/` for any log record
//! larger than a quarter of a segment (128 KiB: a sled leaf of several large blocks, a large Bloom filter, the
//! audit runs `rebuild-indexes` writes). sled's own flush ends with `sync_file_range` on `db` and never syncs a blob file, so neither
//! survives a power cut by itself (`docs/storage.md`).
//!
//! sled writes a blob file while it reserves the record's place in its log, in the writing thread, and its flush
//! waits for every reservation made before it. So a blob file listed before the flush is complete after it; a file
//! that appears later may still be being written by another thread. Every file is fsynced after the flush, but only
//! those listed before it are marked done: a later one is fsynced again at the next group, until it was listed
//! before a flush too. Blob files are fsynced before `db`, whose records point to them.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Syncs a data directory's files around sled's flush.
pub(crate) struct Syncer {
    db: std::fs::File,
    blobs: PathBuf,
    /// Blob files known complete and fsynced.
    done: HashSet<OsString>,
}

impl Syncer {
    pub fn open(dir: &Path) -> std::io::Result<Syncer> {
        Ok(Syncer {
            db: std::fs::File::open(dir.join("db"))?,
            blobs: dir.join("blobs"),
            done: HashSet::new(),
        })
    }

    fn listed(&self) -> std::io::Result<Vec<OsString>> {
        match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries
                .map(|e| e.map(|e| e.file_name()))
                .filter(|n| n.as_ref().map_or(true, |n| !self.done.contains(n)))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// sled's flush (`flush`), then the fsyncs that make what it wrote durable.
    pub fn flush_and_sync(
        &mut self,
        flush: impl FnOnce() -> Result<(), sled::Error>,
    ) -> Result<(), crate::StoreError> {
        let before: HashSet<OsString> = self.listed()?.into_iter().collect();
        flush()?;
        let after = self.listed()?;
        // sled removes blobs as their pages are rewritten: a file gone meanwhile needs nothing.
        self.done
            .retain(|n| self.blobs.join(n).exists() || before.contains(n));
        let mut synced_any = false;
        for name in after {
            match std::fs::File::open(self.blobs.join(&name)) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
            synced_any = true;
            if before.contains(&name) {
                self.done.insert(name);
            }
        }
        if synced_any {
            std::fs::File::open(&self.blobs)?.sync_all()?;
        }
        self.db.sync_data()?;
        Ok(())
    }
}
