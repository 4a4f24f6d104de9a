//! What an auditor asks: the verifier key, the tree head, stored checkpoints, inclusion and consistency proofs,
//! and dossier bundles. Every proof is of the committed log, read beside the writer; a checkpoint issued on demand
//! (when no stored one covers what was asked) is signed and stored by the caller's thread, never the writer.
//!
//! The answer types are the ones the HTTP API documents (with the `openapi` feature, they describe themselves).

use crate::{App, Error};
use chrono::Utc;
use domain::DossierCode;
use serde::Serialize;
use store::StoredCheckpoint;

/// The key checkpoints are signed with.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditKey {
    /// The log's name: the first line of every checkpoint, and the key's name.
    pub origin: String,
    /// `<origin>+<key id>+<public key>` (C2SP signed-note verifier key): give it to `--key`.
    pub verifier_key: String,
    /// The key id, 8 hex digits, as it appears in each signature.
    pub key_id: String,
    pub algorithm: String,
}

/// A signed checkpoint as stored.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointView {
    /// The number of events the checkpoint commits to.
    pub size: u64,
    /// When the server signed it (not itself signed).
    pub issued_at: chrono::DateTime<chrono::Utc>,
    /// The C2SP signed note: `<origin>\n<size>\n<root, base64>\n\n— <origin> <signature>\n`.
    pub note: String,
}

impl From<StoredCheckpoint> for CheckpointView {
    fn from(c: StoredCheckpoint) -> CheckpointView {
        CheckpointView {
            size: c.size,
            issued_at: c.issued_at,
            note: c.note,
        }
    }
}

/// The audit tree's head.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditHead {
    /// Events committed now.
    pub size: u64,
    /// The RFC 6962 root of those events, base64.
    pub root: String,
    /// The latest signed checkpoint (its size may trail `size`), or null before the first.
    pub checkpoint: Option<CheckpointView>,
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointList {
    pub checkpoints: Vec<CheckpointView>,
    /// The cursor for the next page (`after=`), or null.
    pub next_after: Option<u64>,
}

/// An inclusion proof: the event at `position` is leaf `leaf_index` of the tree of `size` events.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InclusionAnswer {
    pub position: u64,
    pub size: u64,
    pub leaf_index: u64,
    /// SHA-256(0x00 ‖ the stored canonical bytes), base64.
    pub leaf_hash: String,
    /// The root of the tree of `size` events, base64.
    pub root: String,
    /// The audit path, leaf to root, base64 hashes.
    pub proof: Vec<String>,
    /// The signed checkpoint of `size` events, if one was issued (always, when `size` was not given).
    pub checkpoint: Option<CheckpointView>,
}

/// A consistency proof: the tree of `to` events extends the tree of `from` events.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyAnswer {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    /// RFC 6962 consistency proof, base64 hashes (empty when `from` is 0 or equals `to`).
    pub proof: Vec<String>,
    /// The signed checkpoint of `to` events, if one was issued (always, when `to` was not given).
    pub checkpoint: Option<CheckpointView>,
}

/// The most checkpoints one page holds.
pub const CHECKPOINTS_PAGE_MAX: usize = 1_000;

/// A size or position parameter, if given, within `lo..=hi` (`bounds` says what those are, for the message).
fn tree_param(
    name: &'static str,
    value: Option<u64>,
    (lo, hi): (u64, u64),
    bounds: &str,
) -> Result<Option<u64>, Error> {
    match value {
        Some(v) if v < lo || v > hi => Err(Error::bad_parameter(
            name,
            format!("{name} must be {bounds}"),
        )),
        other => Ok(other),
    }
}

fn hashes(proof: Vec<store::Hash>) -> Vec<String> {
    proof.iter().map(ToString::to_string).collect()
}

impl App {
    pub fn audit_key(&self) -> AuditKey {
        let key = self.notary.key();
        AuditKey {
            origin: key.origin().to_owned(),
            verifier_key: key.verifier_key().to_owned(),
            key_id: format!("{:08x}", key.key_id()),
            algorithm: "Ed25519".into(),
        }
    }

    /// The committed size and root, and the latest signed checkpoint.
    pub fn audit_head(&self) -> Result<AuditHead, Error> {
        let head = self.log.head();
        Ok(AuditHead {
            size: head.size,
            root: head.root.to_string(),
            checkpoint: self.log.latest_checkpoint()?.map(Into::into),
        })
    }

    /// Stored checkpoints of sizes above `after`, by size: 1 to `CHECKPOINTS_PAGE_MAX` (default 100).
    pub fn checkpoints(
        &self,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<CheckpointList, Error> {
        let limit = crate::reading::page_limit(limit, CHECKPOINTS_PAGE_MAX)?;
        let page = self.log.checkpoints(after, limit + 1)?;
        let more = page.len() > limit;
        let page: Vec<CheckpointView> = page.into_iter().take(limit).map(Into::into).collect();
        let next_after = if more {
            page.last().map(|c| c.size)
        } else {
            None
        };
        Ok(CheckpointList {
            checkpoints: page,
            next_after,
        })
    }

    /// A checkpoint of the head, signed and stored now, and whether it is new (false: the latest stored one is of
    /// the head's size already, and is the answer).
    pub fn issue_checkpoint(&self) -> Result<(bool, CheckpointView), Error> {
        let before = self.log.latest_checkpoint()?.map(|c| c.size);
        let c = self.notary.checkpoint_head(&*self.log, Utc::now())?;
        Ok((before != Some(c.size), c.into()))
    }

    /// The tree size a proof is against: the one asked for, with its checkpoint if one was signed there, or else
    /// the size of `default`'s checkpoint.
    fn tree_size(
        &self,
        asked: Option<u64>,
        default: impl FnOnce() -> Result<StoredCheckpoint, store::StoreError>,
    ) -> Result<(u64, Option<CheckpointView>), Error> {
        Ok(match asked {
            Some(size) => (size, self.log.checkpoint(size)?.map(Into::into)),
            None => {
                let c = default()?;
                (c.size, Some(c.into()))
            }
        })
    }

    /// The inclusion proof of the event at `position` (required), against `size` or, by default, the latest
    /// signed checkpoint that holds it (one is signed now if none does).
    pub fn inclusion(
        &self,
        position: Option<u64>,
        size: Option<u64>,
    ) -> Result<InclusionAnswer, Error> {
        let head = self.head_for(position.max(size))?;
        let bounds = format!("1 to the log's size, {head}");
        let position =
            tree_param("position", position.or(Some(0)), (1, head), &bounds)?.expect("given");
        let bounds = format!("{position} (the position) to {head} (the log's size)");
        let asked = tree_param("size", size, (position, head), &bounds)?;
        let (size, checkpoint) = self.tree_size(asked, || {
            self.notary.covering(&*self.log, position, Utc::now())
        })?;
        let event = self.log.event(position)?.ok_or_else(|| {
            store::StoreError::IndexMismatch(format!("position {position} vanished"))
        })?;
        Ok(InclusionAnswer {
            position,
            size,
            leaf_index: position - 1,
            leaf_hash: store::record_hash(&event.canonical_bytes()).to_string(),
            root: self.log.root_at(size)?.to_string(),
            proof: hashes(self.log.prove_inclusion(position, size)?),
            checkpoint,
        })
    }

    /// The consistency proof from the tree of `from` events (required) to `to`, or by default to the head with a
    /// checkpoint of it (signed now if the latest is older).
    pub fn consistency(
        &self,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<ConsistencyAnswer, Error> {
        let head = self.head_for(from.max(to))?;
        let from = from.ok_or_else(|| Error::bad_parameter("from", "from is required"))?;
        tree_param(
            "from",
            Some(from),
            (0, head),
            &format!("0 to the log's size, {head}"),
        )?;
        let bounds = format!("{from} (from) to {head} (the log's size)");
        let asked = tree_param("to", to, (from, head), &bounds)?;
        let (to, checkpoint) = self.tree_size(asked, || {
            self.notary.checkpoint_head(&*self.log, Utc::now())
        })?;
        Ok(ConsistencyAnswer {
            from,
            to,
            from_root: self.log.root_at(from)?.to_string(),
            to_root: self.log.root_at(to)?.to_string(),
            proof: hashes(self.log.prove_consistency(from, to)?),
            checkpoint,
        })
    }

    /// The dossier's stored events, an inclusion proof for each, and the signed checkpoint they lead to.
    pub fn bundle(&self, code: &DossierCode) -> Result<audit::Bundle, Error> {
        self.notary
            .bundle(&*self.log, code.as_str(), Utc::now())?
            .ok_or_else(|| Error::NotFound("dossier_not_found", format!("no dossier {code}")))
    }
}
