//! Who may do what: the roles of `api.md`, and the scope of an `ingest` credential.

use crate::codes::AgencyCode;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A credential's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Appends dossier events and offers procedures for one agency and everything registered below it; reads
    /// the dossiers of that scope.
    Ingest,
    /// Reads indicator tables, the catalogue, the global log, dossier states.
    Analyst,
    /// What an analyst reads, plus dossier trails, the audit tree and proofs.
    Auditor,
    /// Everything, plus agencies, targets and credentials.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Analyst, Role::Auditor, Role::Admin];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a role; expected ingest, analyst, auditor or admin")
            })
    }
}

/// A credential as stored: its name (recorded as `source` on what it writes), role, scope, and the SHA-256 of
/// the secret, never the secret itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub name: String,
    pub role: Role,
    /// For `ingest`: the agency whose subtree it may write. None for the other roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<AgencyCode>,
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Credential {
    /// Checks the credential's own consistency: a valid source name; an agency exactly for `ingest`.
    pub fn check(&self) -> Result<(), String> {
        crate::event::check_source(&self.name).map_err(|e| format!("name {e}"))?;
        match (self.role, &self.agency) {
            (Role::Ingest, None) => Err("an ingest credential needs an agency (--agency)".into()),
            (Role::Ingest, Some(_)) | (_, None) => Ok(()),
            (role, Some(_)) => Err(format!(
                "only ingest credentials have an agency, not {role}"
            )),
        }
    }
}
