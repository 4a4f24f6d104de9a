//! Bearer tokens: how a request says who it is, and the checks of what it may do.

use crate::errors::{ApiError, Error};
use crate::State;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use domain::{Credential, Role};
use std::future::Future;
use std::future::{ready, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

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

/// The SHA-256 of the request's bearer token: `None` without an `Authorization` header, an error when the header
/// is not a bearer token.
fn bearer_sha256(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(header) = headers.get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
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
    Ok(Some(token_sha256(token)))
}

fn identify(req: &HttpRequest) -> Result<Caller, ApiError> {
    let sha256 = match req.extensions().get::<Bearer>() {
        Some(Bearer(sha256)) => Some(sha256.clone()),
        None => bearer_sha256(req.headers())?,
    };
    let Some(sha256) = sha256 else {
        return Ok(Caller(None));
    };
    let state = req
        .app_data::<web::Data<State>>()
        .expect("the app has its state");
    match state.credential(&sha256) {
        Some(credential) => Ok(Caller(Some(credential))),
        None => Err(Error::Unauthorized.into()),
    }
}

/// The request's bearer token, hashed once by [`revocable`] for the `Caller` extractor.
#[derive(Clone)]
struct Bearer(String);

/// The middleware that makes a revocation reach what is already under way: every answer a token authorised
/// stops when the token is revoked. A read (GET, HEAD) whose token was revoked while it was being answered gets
/// 401 instead of its answer; a streamed body (the NDJSON export, the live stream, anything sent in chunks) is cut
/// at once, as an error, never a clean end that a client could take for the whole answer. Writes keep their
/// answer: they were authorised when they were decided, and a 2xx means the events are on disk.
///
/// The bound: `App::revoke_token` wakes every such answer before the revocation itself is answered, and a cut
/// body sends nothing more, so no byte produced after the `DELETE /v1/tokens/{name}` answer reaches the client
/// (only what was already in the socket's buffers).
pub async fn revocable(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let sha256 = match bearer_sha256(req.headers()) {
        Ok(Some(sha256)) => sha256,
        // No token, or one the extractor will refuse: nothing to revoke.
        _ => return Ok(next.call(req).await?.map_into_boxed_body()),
    };
    let state = req
        .app_data::<web::Data<State>>()
        .cloned()
        .expect("the app has its state");
    req.extensions_mut().insert(Bearer(sha256.clone()));
    if state.credential(&sha256).is_none() {
        // Not live now: the extractor refuses it where a token is needed, and nothing it opens can be revoked.
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    let revoked = Box::pin(state.app.revoked(sha256.clone()));
    let response = next.call(req).await?.map_into_boxed_body();
    if read && state.credential(&sha256).is_none() && response.status().is_success() {
        let (request, _) = response.into_parts();
        return Ok(ServiceResponse::new(
            request,
            ApiError(Error::Unauthorized).error_response(),
        ));
    }
    if !matches!(response.response().body().size(), BodySize::Stream) {
        return Ok(response);
    }
    Ok(response.map_body(|_, inner| BoxBody::new(Revocable { inner, revoked })))
}

/// A streamed body that ends, as an error, once its token is revoked.
struct Revocable {
    inner: BoxBody,
    revoked: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl MessageBody for Revocable {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        if self.revoked.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(
                "the token this answer was authorised by has been revoked".into(),
            )));
        }
        Pin::new(&mut self.inner).poll_next(cx)
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
