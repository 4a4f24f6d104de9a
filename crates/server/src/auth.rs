//! Bearer tokens: how a request says who it is, and the checks of what it may do.

use crate::errors::ApiError;
use crate::State;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;
use domain::{AgencyCode, Credential, Role};
use sha2::{Digest, Sha256};
use std::future::{ready, Ready};

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

/// The caller of a request: a live credential, or nobody (no `Authorization` header).
pub struct Caller(pub Option<Credential>);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(identify(req))
    }
}

fn identify(req: &HttpRequest) -> Result<Caller, ApiError> {
    let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(Caller(None));
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let state = req
        .app_data::<web::Data<State>>()
        .expect("the app has its state");
    match state.credential(&token_sha256(token)) {
        Some(credential) => Ok(Caller(Some(credential))),
        None => Err(ApiError::Unauthorized),
    }
}

impl Caller {
    /// The credential, if its role is one of `roles`: 401 without one, 403 with another role.
    pub fn require(&self, roles: &[Role]) -> Result<&Credential, ApiError> {
        let credential = self.0.as_ref().ok_or(ApiError::Unauthorized)?;
        if roles.contains(&credential.role) {
            Ok(credential)
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this",
                credential.role
            )))
        }
    }
}

/// Whether an `ingest` credential covers `agency` (the agency itself or one registered below it).
pub fn covers(state: &State, credential: &Credential, agency: &AgencyCode) -> bool {
    match (&credential.role, &credential.agency) {
        (Role::Ingest, Some(scope)) => state
            .catalogue
            .read()
            .expect("catalogue lock")
            .in_scope(scope, agency),
        (Role::Ingest, None) => false,
        _ => true,
    }
}
