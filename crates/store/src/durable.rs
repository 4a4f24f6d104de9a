//! fsync of what sled wrote: its `db` file, and the separate files it writes under `blobs/` for any log record
//! larger than a quarter of a segment (128 KiB: a large group's audit hashes, a leaf of large blocks, a large
//! Bloom filter). sled's own flush ends with `sync_file_range` on `db` and never syncs a blob file, so neither
//! survives a power cut by itself (`docs/storage.md`).

use std::path::{Path, PathBuf};

/// Syncs a data directory's files after sled's flush.
pub(crate) struct Syncer {
    db: std::fs::File,
    blobs: PathBuf,
    /// Blob files are named by the log sequence number of their record, which only grows: every file above this
    /// one was written since the last sync.
    synced_through: Option<u64>,
}

impl Syncer {
    pub fn open(dir: &Path) -> std::io::Result<Syncer> {
        Ok(Syncer {
            db: std::fs::File::open(dir.join("db"))?,
            blobs: dir.join("blobs"),
            synced_through: None,
        })
    }

    /// fsyncs the database file, every blob file written since the last call, and the blobs directory when it
    /// gained one.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.db.sync_data()?;
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut newest = self.synced_through;
        for entry in entries {
            let entry = entry?;
            let Some(lsn) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if self.synced_through.is_some_and(|s| lsn <= s) {
                continue;
            }
            match std::fs::File::open(entry.path()) {
                Ok(f) => f.sync_data()?,
                // sled removes a blob once its page is rewritten: nothing to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            newest = Some(newest.map_or(lsn, |n| n.max(lsn)));
        }
        if newest != self.synced_through {
            std::fs::File::open(&self.blobs)?.sync_all()?;
            self.synced_through = newest;
        }
        Ok(())
    }
}
