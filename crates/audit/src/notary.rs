//! Issuing signed checkpoints of a log, and the bundles that lead to them.

use crate::bundle::Bundle;
use crate::key::SigningKey;
use chrono::{DateTime, Utc};
use store::{Store, StoreError, StoredCheckpoint};

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
        log: &dyn Store,
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
        log: &dyn Store,
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
        log: &dyn Store,
        dossier: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Bundle>, StoreError> {
        // The dossier's events are read once: the checkpoint must cover the last of them, and they are what the
        // bundle proves.
        let stream = log.stream(dossier)?;
        let Some(last) = stream.last().map(|e| e.position) else {
            return Ok(None);
        };
        let checkpoint = self.covering(log, last, now)?;
        Bundle::of_events(log, dossier, stream, &checkpoint)
    }
}

/// Re-checks every checkpoint stored in `log`: its note reads as a checkpoint of its stored size, its signature
/// checks with `key` (when given), and its root is the log's root at that size. Returns how many were checked and
/// what is wrong with which (by size). A log rewritten after a checkpoint was signed fails here, unless the
/// rewriter re-signed the checkpoints too (which only comparing with checkpoints kept elsewhere can catch).
pub fn check_stored_checkpoints(
    log: &dyn Store,
    key: Option<&crate::VerifierKey>,
) -> Result<(u64, Vec<(u64, String)>), StoreError> {
    let mut problems = Vec::new();
    let mut checked = 0u64;
    let head = log.head().size;
    let mut after = None;
    loop {
        let page = log.checkpoints(after, 1_000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.size);
        for c in page {
            checked += 1;
            let opened = match key {
                Some(key) => crate::open_checkpoint(&c.note, key).map_err(|e| e.0),
                None => unsigned(&c.note),
            };
            let problem = match opened {
                Err(why) => Some(why),
                Ok(cp) if cp.size != c.size => {
                    Some(format!("it is stored at size {} but signs size {}", c.size, cp.size))
                }
                Ok(cp) if cp.size > head => Some(format!("the log has only {head} events")),
                Ok(cp) if log.root_at(cp.size)? != cp.root => Some(
                    "the log's root at its size is not the root it signed: the log was rewritten after it was signed"
                        .into(),
                ),
                Ok(_) => None,
            };
            if let Some(why) = problem {
                problems.push((
                    c.size,
                    format!(
                        "checkpoint of size {} issued {}: {why}",
                        c.size, c.issued_at
                    ),
                ));
            }
        }
    }
    Ok((checked, problems))
}

/// Reads a signed note's checkpoint without checking its signature.
fn unsigned(note: &str) -> Result<crate::SignedCheckpoint, String> {
    let note = signed_note::Note::from_bytes(note.as_bytes()).map_err(|e| e.to_string())?;
    let c = tlog_tiles::Checkpoint::from_bytes(note.text()).map_err(|e| e.to_string())?;
    Ok(crate::SignedCheckpoint {
        origin: c.origin().to_owned(),
        size: c.size(),
        root: *c.hash(),
    })
}
