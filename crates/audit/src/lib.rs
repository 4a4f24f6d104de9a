//! casetrail's audit: what lets an auditor trust a dossier's trail without trusting the server that shows it.
//!
//! - [`SigningKey`]: the log's Ed25519 key (C2SP signed-note encoding) and its verifier key.
//! - [`Notary`]: signs checkpoints (C2SP `tlog-checkpoint`: origin, size, root) of a log and stores them; builds
//!   [`Bundle`]s of a dossier's events with an inclusion proof each.
//! - [`verify_bundle`], [`verify_consistency`], [`open_checkpoint`]: the offline checks, which need only a
//!   verifier key and the files, never a data directory.
//!
//! The tree itself (RFC 6962 over the stored events' canonical bytes) and its proofs live in `store`; this crate
//! signs what the store proves.

mod bundle;
mod key;
mod notary;
mod verify;

pub use bundle::{Bundle, BundleEvent, BUNDLE_FORMAT};
pub use key::{KeyError, SigningKey, VerifierKey};
pub use notary::{check_stored_checkpoints, Notary};
pub use verify::{
    open_checkpoint, read_checkpoint_document, verify_bundle, verify_consistency,
    CheckpointDocument, ConsistencyProof, SignedCheckpoint, VerifiedBundle, VerifyError,
};

#[cfg(test)]
mod tests;
