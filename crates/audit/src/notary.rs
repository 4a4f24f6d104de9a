//! Issuing signed checkpoints of a log, and the bundles that lead to them.

use crate::bundle::Bundle;
use crate::key::SigningKey;
use chrono::{DateTime, Utc};
use store::{EventLog, SledLog, StoreError, StoredCheckpoint};

/// Signs checkpoints of one log with its key and stores them in the log's `checkpoints` tree.
pub struct Notary {
    key: SigningKey,
}

impl Notary {
    pub fn new(key: SigningKey) -> Notary {
        Notary { key }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// A signed checkpoint of the log's head: the latest stored one if it is of the head's size already,
    /// otherwise a new one, signed and stored durably before it is returned.
    ///
    /// It runs beside the writer, never in it: it reads the committed head and the stored hashes, and writes only
    /// the `checkpoints` tree.
    pub fn checkpoint_head(
        &self,
        log: &SledLog,
        now: DateTime<Utc>,
    ) -> Result<StoredCheckpoint, StoreError> {
        let head = log.head();
        if let Some(latest) = log.latest_checkpoint()? {
            if latest.size == head.size {
                return Ok(latest);
            }
        }
        // Pair assertion: the root the writer published is the root of the stored hashes at that size.
        let root = log.root_at(head.size)?;
        if root != head.root {
            return Err(StoreError::Tree(format!(
                "the head's root at size {} is not the stored tree's root",
                head.size
            )));
        }
        log.add_checkpoint(&StoredCheckpoint {
            size: head.size,
            issued_at: now,
            note: self.key.sign_checkpoint(head.size, root),
        })
    }

    /// A stored checkpoint of at least `size` events: the latest one if it is large enough, else a new one of the
    /// head (which must have `size` events).
    pub fn covering(
        &self,
        log: &SledLog,
        size: u64,
        now: DateTime<Utc>,
    ) -> Result<StoredCheckpoint, StoreError> {
        if let Some(latest) = log.latest_checkpoint()? {
            if latest.size >= size {
                return Ok(latest);
            }
        }
        let head = log.head().size;
        if size > head {
            return Err(StoreError::OutOfRange(format!(
                "size {size} is past the log's size {head}"
            )));
        }
        self.checkpoint_head(log, now)
    }

    /// The bundle of a dossier against a checkpoint that covers all of its events (issued now if the latest does
    /// not). `None` when the dossier has no events.
    pub fn bundle(
        &self,
        log: &SledLog,
        dossier: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Bundle>, StoreError> {
        let Some(last) = log.stream(dossier)?.last().map(|e| e.position) else {
            return Ok(None);
        };
        let checkpoint = self.covering(log, last, now)?;
        Bundle::build(log, dossier, &checkpoint)
    }
}
