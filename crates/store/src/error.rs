use domain::Rejection;
use std::path::PathBuf;
use uuid::Uuid;

/// Errors of the store itself: opening, reading, maintenance.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the data directory open.
    #[error("the data directory {0} is in use by another process (a running server?); stop it or use --url")]
    Locked(PathBuf),
    /// The directory holds something that is not a casetrail log, or a log of another format.
    #[error("{0}")]
    Format(String),
    /// The directory holds a log in an older format (named), which only `casetrail upgrade` reads.
    #[error("{} holds a log in {}; run `casetrail --data {} upgrade` to rewrite it in format 2", .0.display(), .1, .0.display())]
    NeedsUpgrade(PathBuf, &'static str),
    /// The index or the audit hashes do not agree with the stored events.
    #[error("the indexes do not match the stored events ({0}); run `casetrail rebuild-indexes`")]
    IndexMismatch(String),
    /// Stored bytes that do not decode: damage or tampering.
    #[error("event at position {position} is damaged: {message}")]
    Corrupt { position: u64, message: String },
    /// The database file is damaged below the events (sled's own checks refuse it).
    #[error(
        "the database file is damaged ({0}); restore the data directory from a backup or an export"
    )]
    Damaged(String),
    /// A credential of that name exists already.
    #[error("a credential named {0:?} exists already")]
    CredentialExists(String),
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The database under the log (PostgreSQL) refused or failed a statement.
    #[error("the database: {0}")]
    Database(String),
    /// A size or position past the log's head, or otherwise outside what was asked of.
    #[error("{0}")]
    OutOfRange(String),
    #[error("audit tree: {0}")]
    Tree(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The store refuses writes now: a write failed, or one did not finish within the stall bound (the disk does
    /// not answer), until it is reopened.
    #[error("the log cannot accept writes now: {0}")]
    Unavailable(String),
}

/// Why one event of a batch was refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Refusal {
    /// It breaks a stream rule or the expected version.
    Rule(Rejection),
    /// Its id is already stored with different content.
    IdReused { position: u64 },
    /// It carries stored fields (a restore) that do not match where it would land.
    StoredFields(String),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Rule(r) => r.code(),
            Refusal::IdReused { .. } => "id_reused",
            Refusal::StoredFields(_) => "stored_fields_mismatch",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Rule(r) => r.fmt(f),
            Refusal::IdReused { position } => {
                write!(f, "the id is already used by the event at position {position}, with different content")
            }
            Refusal::StoredFields(why) => f.write_str(why),
        }
    }
}

/// One refused event: its index in the batch, its id, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRefusal {
    pub index: usize,
    pub id: Uuid,
    pub refusal: Refusal,
}

/// Why a batch was not appended. In every case but [`AppendError::OutcomeUnknown`] nothing of the batch was
/// written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum AppendError {
    /// Some events were refused; every refused event is listed.
    #[error("{} event(s) refused; first: event {} ({}): {}", .0.len(), .0[0].index, .0[0].id, .0[0].refusal)]
    Refused(Vec<EventRefusal>),
    /// More events than one batch may carry (`domain::parse::BATCH_EVENTS_MAX`), or none.
    #[error("a batch carries 1 to {max} events, not {0}", max = domain::parse::BATCH_EVENTS_MAX)]
    BatchSize(usize),
    /// The store cannot accept writes now (an IO failure, or shutting down).
    #[error("the log cannot accept writes now: {0}")]
    Unavailable(String),
    /// The batch was sent to be committed and the database stopped answering before it said whether it was: it
    /// may be in the log or not, and it stayed unreachable past the deadline to find out. Retrying with the same
    /// ids is safe: an event already stored is answered with its original receipt.
    #[error("the outcome of the commit is unknown: {0}; retry with the same ids")]
    OutcomeUnknown(String),
}
