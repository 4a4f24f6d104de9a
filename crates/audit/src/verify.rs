//! Checks an auditor runs with nothing but a verifier key: a signed checkpoint, a dossier bundle, and the
//! consistency of two checkpoints. None of them reads a data directory or trusts the server that made the files.

use crate::bundle::{Bundle, BUNDLE_FORMAT};
use crate::key::VerifierKey;
use domain::StoredEvent;
use serde_json::Value;
use signed_note::{Note, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

/// Why a check failed, in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VerifyError(pub String);

fn fail<T>(why: impl Into<String>) -> Result<T, VerifyError> {
    Err(VerifyError(why.into()))
}

/// A checkpoint whose signature checked: the tree of `size` events of the log `origin` has root `root`.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Checks a signed note's signature with `key`, then reads it as a C2SP checkpoint of the key's log.
pub fn open_checkpoint(note: &str, key: &VerifierKey) -> Result<SignedCheckpoint, VerifyError> {
    let note = Note::from_bytes(note.as_bytes())
        .map_err(|e| VerifyError(format!("the checkpoint is not a signed note: {e}")))?;
    let known = VerifierList::new(vec![Box::new(key.verifier.clone())]);
    note.verify(&known).map_err(|e| match e {
        signed_note::NoteError::UnverifiedNote => VerifyError(format!(
            "the checkpoint is not signed by the key {}",
            key.name()
        )),
        e => VerifyError(format!("the checkpoint's signature is not valid: {e}")),
    })?;
    let checkpoint = Checkpoint::from_bytes(note.text())
        .map_err(|_| VerifyError("the signed text is not a tlog checkpoint".into()))?;
    if checkpoint.origin() != key.name() {
        return fail(format!(
            "the checkpoint is of the log {:?}, not {:?}",
            checkpoint.origin(),
            key.name()
        ));
    }
    Ok(SignedCheckpoint {
        origin: checkpoint.origin().to_owned(),
        size: checkpoint.size(),
        root: *checkpoint.hash(),
    })
}

/// What a bundle proved: these events, versions 1..n of the dossier, are in the log that the checkpoint commits
/// to, exactly as they were stored.
#[derive(Debug)]
pub struct VerifiedBundle {
    pub dossier: String,
    pub events: Vec<StoredEvent>,
    pub checkpoint: SignedCheckpoint,
}

fn parse_hashes(hashes: &[String], what: &str) -> Result<Vec<Hash>, VerifyError> {
    hashes
        .iter()
        .map(|h| {
            Hash::parse_hash(h)
                .map_err(|_| VerifyError(format!("{what}: {h:?} is not a base64 SHA-256 hash")))
        })
        .collect()
}

/// Checks a bundle (`GET /v1/dossiers/{dossier}/bundle`, `casetrail audit bundle`): the checkpoint's signature,
/// every event's bytes against its leaf hash and its inclusion proof against the checkpoint's root, and that the
/// events are the dossier's versions 1..n in log order.
pub fn verify_bundle(bytes: &[u8], key: &VerifierKey) -> Result<VerifiedBundle, VerifyError> {
    let bundle: Bundle = serde_json::from_slice(bytes)
        .map_err(|e| VerifyError(format!("not a casetrail bundle: {e}")))?;
    if bundle.format != BUNDLE_FORMAT {
        return fail(format!(
            "unknown bundle format {:?} (this verifier reads {BUNDLE_FORMAT:?})",
            bundle.format
        ));
    }
    let checkpoint = open_checkpoint(&bundle.checkpoint, key)?;
    if bundle.events.is_empty() {
        return fail("the bundle holds no events");
    }
    let mut events = Vec::with_capacity(bundle.events.len());
    let mut last_position = 0;
    for (i, entry) in bundle.events.iter().enumerate() {
        let p = entry.position;
        let bytes = entry.canonical.as_bytes();
        let leaf = tlog_tiles::record_hash(bytes);
        if leaf.to_string() != entry.leaf_hash {
            return fail(format!(
                "event at position {p}: its leaf hash is not the hash of its bytes"
            ));
        }
        if p == 0 || p > checkpoint.size {
            return fail(format!(
                "event at position {p}: not in the checkpoint's tree of {} events",
                checkpoint.size
            ));
        }
        let proof = parse_hashes(&entry.proof, &format!("event at position {p}"))?;
        if tlog_tiles::check_record(&proof, checkpoint.size, checkpoint.root, p - 1, leaf).is_err()
        {
            return fail(format!(
                "event at position {p}: its inclusion proof does not lead to the checkpoint's root"
            ));
        }
        let stored = StoredEvent::from_canonical_bytes(bytes)
            .map_err(|e| VerifyError(format!("event at position {p} does not decode: {e}")))?;
        if stored.position != p {
            return fail(format!(
                "event at position {p} says it is at position {}",
                stored.position
            ));
        }
        let stream = stored.event.stream().key();
        if stream != bundle.dossier {
            return fail(format!(
                "event at position {p} belongs to {stream}, not to {}",
                bundle.dossier
            ));
        }
        if p <= last_position {
            return fail(format!(
                "event at position {p} comes after position {last_position}: not in log order"
            ));
        }
        let want = i as u64 + 1;
        if stored.version != want {
            return fail(format!(
                "the trail has a gap: version {want} of {} is missing (position {p} holds version {})",
                bundle.dossier, stored.version
            ));
        }
        last_position = p;
        events.push(stored);
    }
    Ok(VerifiedBundle {
        dossier: bundle.dossier,
        events,
        checkpoint,
    })
}

/// A consistency proof between two tree sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<Hash>,
}

/// A file an auditor keeps or was given: a signed checkpoint, alone (the note's text) or inside a JSON answer of
/// the API (`/v1/audit/head`, `/v1/audit/consistency`, a bundle), which may also carry a consistency proof.
#[derive(Debug)]
pub struct CheckpointDocument {
    pub note: String,
    pub proof: Option<ConsistencyProof>,
}

/// Reads a [`CheckpointDocument`].
pub fn read_checkpoint_document(bytes: &[u8]) -> Result<CheckpointDocument, VerifyError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| VerifyError("the file is not UTF-8 text".into()))?;
    if !text.trim_start().starts_with('{') {
        return Ok(CheckpointDocument {
            note: text.to_owned(),
            proof: None,
        });
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| VerifyError(format!("not JSON: {e}")))?;
    let note = match &value["checkpoint"] {
        Value::String(note) => note.clone(),
        Value::Object(c) => match c.get("note") {
            Some(Value::String(note)) => note.clone(),
            _ => return fail("its \"checkpoint\" has no \"note\""),
        },
        Value::Null => return fail("the JSON document carries no signed \"checkpoint\""),
        _ => return fail("its \"checkpoint\" is neither a note nor an object"),
    };
    let proof = match (&value["from"], &value["to"], &value["proof"]) {
        (Value::Number(from), Value::Number(to), Value::Array(hashes)) => {
            let hashes: Vec<String> = hashes
                .iter()
                .map(|h| h.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| VerifyError("its \"proof\" must be a list of hashes".into()))?;
            Some(ConsistencyProof {
                from: from
                    .as_u64()
                    .ok_or_else(|| VerifyError("bad \"from\"".into()))?,
                to: to
                    .as_u64()
                    .ok_or_else(|| VerifyError("bad \"to\"".into()))?,
                proof: parse_hashes(&hashes, "the consistency proof")?,
            })
        }
        _ => None,
    };
    Ok(CheckpointDocument { note, proof })
}

/// Checks that `new` extends `old`: same log, not smaller, and (when they differ in size) a consistency proof
/// from `old.size` to `new.size` leading from one root to the other. Equal sizes must have equal roots.
pub fn verify_consistency(
    old: &SignedCheckpoint,
    new: &SignedCheckpoint,
    proof: Option<&ConsistencyProof>,
) -> Result<(), VerifyError> {
    if old.origin != new.origin {
        return fail(format!(
            "the checkpoints are of two logs, {:?} and {:?}",
            old.origin, new.origin
        ));
    }
    if old.size > new.size {
        return fail(format!(
            "the older checkpoint (size {}) is larger than the newer (size {}): give them oldest first",
            old.size, new.size
        ));
    }
    if old.size == new.size {
        if old.root != new.root {
            return fail(format!(
                "two different trees of size {}: the log was rewritten (its history forked)",
                old.size
            ));
        }
        return Ok(());
    }
    if old.size == 0 {
        if old.root != tlog_tiles::EMPTY_HASH {
            return fail("a tree of size 0 with a root that is not the empty tree's");
        }
        return Ok(());
    }
    let Some(proof) = proof else {
        return fail(format!(
            "no consistency proof from size {} to size {}: ask GET /v1/audit/consistency?from={}&to={}",
            old.size, new.size, old.size, new.size
        ));
    };
    if (proof.from, proof.to) != (old.size, new.size) {
        return fail(format!(
            "the proof is from size {} to size {}, but the checkpoints are of sizes {} and {}",
            proof.from, proof.to, old.size, new.size
        ));
    }
    tlog_tiles::check_tree(&proof.proof, new.size, new.root, old.size, old.root).map_err(|_| {
        VerifyError(format!(
            "the tree of size {} does not extend the tree of size {}: the log was rewritten",
            new.size, old.size
        ))
    })
}
