//! Bearer tokens: how a request says who it is, and the checks of what it may do.

use crate::errors::{ApiError, Error};
use crate::State;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use domain::{Credential, Role};
use std::future::{ready, Ready};

pub use app::tokens::{new_token, token_sha256};

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
        .ok_or(Error::Unauthorized)?;
    let state = req
        .app_data::<web::Data<State>>()
        .expect("the app has its state");
    match state.credential(&token_sha256(token)) {
        Some(credential) => Ok(Caller(Some(credential))),
        None => Err(Error::Unauthorized.into()),
    }
}

impl Caller {
    /// The credential, if its role is one of `roles`: 401 without one, 403 with another role.
    pub fn require(&self, roles: &[Role]) -> Result<&Credential, ApiError> {
        let credential = self.0.as_ref().ok_or(Error::Unauthorized)?;
        if roles.contains(&credential.role) {
            Ok(credential)
        } else {
            Err(Error::Forbidden(format!("the {} role may not do this", credential.role)).into())
        }
    }
}
