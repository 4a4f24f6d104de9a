//! A dossier bundle: everything an auditor needs to check a dossier's trail offline, in one JSON file.

use serde::{Deserialize, Serialize};
use store::{EventLog, StoreError, StoredCheckpoint};

/// The format name every bundle carries, so that a later format is never misread as this one.
pub const BUNDLE_FORMAT: &str = "casetrail-bundle-v1";

/// A dossier's stored events, each with its inclusion proof against one signed checkpoint, and that checkpoint.
///
/// Unknown fields are refused, and every field is either checked against what is signed or hashed (positions,
/// leaf hashes, the dossier) or is itself signed or hashed: nothing in a bundle is taken on trust.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The dossier code: the stream every event belongs to.
    pub dossier: String,
    /// The signed checkpoint (C2SP signed note over a tlog checkpoint) the proofs lead to.
    pub checkpoint: String,
    /// The dossier's events in log order: versions 1..n.
    pub events: Vec<BundleEvent>,
}

/// One event of a bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEvent {
    /// The event's position in the log (its leaf is number `position - 1`).
    pub position: u64,
    /// SHA-256 of `0x00 ‖ canonical` (RFC 6962 leaf hash), base64.
    pub leaf_hash: String,
    /// The stored envelope's canonical bytes, exactly as hashed into the tree, as a JSON string.
    pub canonical: String,
    /// The inclusion proof (audit path) from the leaf to the checkpoint's root, base64 hashes.
    pub proof: Vec<String>,
}

impl Bundle {
    /// The bundle of `dossier`'s events stored within `checkpoint`'s tree. `None` when the dossier has no events
    /// there.
    pub fn build(
        log: &(impl EventLog + ?Sized),
        dossier: &str,
        checkpoint: &StoredCheckpoint,
    ) -> Result<Option<Bundle>, StoreError> {
        Bundle::of_events(log, dossier, log.stream(dossier)?, checkpoint)
    }

    /// The bundle of `stream`, the dossier's events as already read from `log`.
    pub(crate) fn of_events(
        log: &(impl EventLog + ?Sized),
        dossier: &str,
        stream: Vec<domain::StoredEvent>,
        checkpoint: &StoredCheckpoint,
    ) -> Result<Option<Bundle>, StoreError> {
        let mut events = Vec::new();
        for e in stream {
            if e.position > checkpoint.size {
                break;
            }
            let bytes = e.canonical_bytes();
            let proof = log.prove_inclusion(e.position, checkpoint.size)?;
            events.push(BundleEvent {
                position: e.position,
                leaf_hash: store::record_hash(&bytes).to_string(),
                canonical: String::from_utf8(bytes).expect("canonical bytes are JSON text"),
                proof: proof.iter().map(ToString::to_string).collect(),
            });
        }
        if events.is_empty() {
            return Ok(None);
        }
        Ok(Some(Bundle {
            format: BUNDLE_FORMAT.to_owned(),
            dossier: dossier.to_owned(),
            checkpoint: checkpoint.note.clone(),
            events,
        }))
    }
}
