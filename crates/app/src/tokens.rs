//! Bearer tokens: making one (the only place a credential with a fresh token is built), and what is stored of it.

use crate::Error;
use base64::Engine;
use chrono::{DateTime, Utc};
use domain::{AgencyCode, Credential, Role};
use serde::Serialize;
use sha2::{Digest, Sha256};
use store::Store;

/// A new random token: `ct_` and 32 random bytes in URL-safe base64.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "ct_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What is stored of a token: its SHA-256, in hex. Tokens carry 256 random bits, so a plain hash suffices (no
/// password-style stretching is needed against guessing).
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenCreated {
    pub name: String,
    pub role: Role,
    pub agency: Option<AgencyCode>,
    /// Shown once; only its hash is stored.
    pub token: String,
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub agency: Option<AgencyCode>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<Credential> for TokenInfo {
    fn from(c: Credential) -> TokenInfo {
        TokenInfo {
            name: c.name,
            role: c.role,
            agency: c.agency,
            created_at: c.created_at,
            revoked_at: c.revoked_at,
        }
    }
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// A token just made: the credential as stored, and the token itself, which is shown this once.
pub struct Issued {
    pub credential: Credential,
    pub token: String,
}

impl From<Issued> for TokenCreated {
    fn from(i: Issued) -> TokenCreated {
        TokenCreated {
            name: i.credential.name,
            role: i.credential.role,
            agency: i.credential.agency,
            token: i.token,
        }
    }
}

/// Makes a token for `name` with `role` (and, for ingest, the agency whose subtree it writes), checks it, and
/// stores its credential durably. A name or scope that fails its check is a validation error on that field.
pub fn issue(
    log: &dyn Store,
    name: String,
    role: Role,
    agency: Option<AgencyCode>,
    now: DateTime<Utc>,
) -> Result<Issued, Error> {
    domain::event::check_source(&name).map_err(|e| Error::field("name", format!("name {e}")))?;
    let token = new_token();
    let credential = Credential {
        name,
        role,
        agency,
        token_sha256: token_sha256(&token),
        created_at: now,
        revoked_at: None,
    };
    credential
        .check()
        .map_err(|message| Error::field("agency", message))?;
    log.add_credential(&credential)?;
    Ok(Issued { credential, token })
}
