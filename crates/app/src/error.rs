//! Every refusal casetrail answers with, whoever asked: one enum, and one table of each variant's stable code and
//! HTTP status (`Error::status_and_code`). The HTTP service renders these as problem documents; the command line
//! prints their messages.

use domain::{Rejection, ValidationError};
use store::{AppendError, EventRefusal, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON, or not the shape of an event or a request.
    #[error("{0}")]
    MalformedJson(String),
    /// A query, path or header parameter is out of its domain, or could not be read at all.
    #[error("{detail}")]
    BadParameter {
        name: std::borrow::Cow<'static, str>,
        detail: String,
    },
    /// No route has this path.
    #[error("no route {0}; /openapi.json lists every route")]
    RouteNotFound(String),
    /// The path exists, but not with this method; `Allow` lists the methods it has.
    #[error("{method} is not a method of {path}; it has {allow}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    /// An error the HTTP layer raised before (or instead of) a handler, made into a problem like every other.
    #[error("{detail}")]
    Http { status: u16, detail: String },
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// A resource that does not exist: its stable code and a message.
    #[error("{1}")]
    NotFound(&'static str, String),
    #[error("{} field(s) failed validation", .0.len())]
    Validation(Vec<ValidationError>),
    /// Events refused by the log's rules; every one named.
    #[error("{} event(s) refused", .0.len())]
    Refused(Vec<EventRefusal>),
    #[error("a credential named {0:?} exists already")]
    CredentialExists(String),
    /// Revoking this token would leave no live admin token: nobody could administer the server over HTTP.
    #[error("{0:?} is the last live admin token; create another admin token first (or, with the server stopped, `casetrail token create --role admin`)")]
    LastAdmin(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// The live stream has as many subscribers as it serves.
    #[error("{0} live subscribers are connected, the most this server serves; try again shortly")]
    TooManySubscribers(usize),
    #[error("internal error")]
    Internal(String),
}

impl Error {
    /// The table: every variant's HTTP status and stable code.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            Error::MalformedJson(_) => (400, "malformed_json"),
            Error::BadParameter { .. } => (400, "bad_parameter"),
            Error::RouteNotFound(_) => (404, "route_not_found"),
            Error::MethodNotAllowed { .. } => (405, "method_not_allowed"),
            Error::Http { status, .. } => (*status, http_code(*status)),
            Error::Unauthorized => (401, "unauthorized"),
            Error::Forbidden(_) => (403, "forbidden"),
            Error::NotFound(code, _) => (404, code),
            Error::Validation(_) => (422, "validation_failed"),
            Error::Refused(r)
                if r.iter()
                    .all(|r| r.refusal == Refusal::Rule(Rejection::DossierNotFound)) =>
            {
                (404, "dossier_not_found")
            }
            Error::Refused(r) => (409, r[0].refusal.code()),
            Error::CredentialExists(_) => (409, "credential_exists"),
            Error::LastAdmin(_) => (409, "last_admin"),
            Error::PayloadTooLarge(_) => (413, "payload_too_large"),
            Error::Unavailable(_) => (503, "unavailable"),
            Error::TooManySubscribers(_) => (503, "too_many_subscribers"),
            Error::Internal(_) => (500, "internal"),
        }
    }

    pub fn bad_parameter(
        name: impl Into<std::borrow::Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Error {
        Error::BadParameter {
            name: name.into(),
            detail: detail.into(),
        }
    }

    /// One field of a request body failed validation.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Validation(vec![ValidationError {
            index: 0,
            id: None,
            field: field.into(),
            message: message.into(),
        }])
    }
}

/// The stable code of a status the HTTP layer answered with by itself (`Http`).
fn http_code(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        404 => "route_not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        417 => "expectation_failed",
        431 => "headers_too_large",
        503 => "unavailable",
        500..=599 => "internal",
        _ => "http_error",
    }
}

impl From<AppendError> for Error {
    fn from(e: AppendError) -> Error {
        match e {
            AppendError::Refused(r) => Error::Refused(r),
            AppendError::BatchSize(n) => Error::PayloadTooLarge(format!(
                "a batch carries 1 to {} events, not {n}",
                domain::parse::BATCH_EVENTS_MAX
            )),
            AppendError::Unavailable(why) => Error::Unavailable(why),
        }
    }
}

impl From<store::StoreError> for Error {
    fn from(e: store::StoreError) -> Error {
        match e {
            store::StoreError::CredentialExists(name) => Error::CredentialExists(name),
            // The storage refusing (a full disk, an IO error that sled now repeats) is not a bug of ours: the
            // service is unavailable until an operator acts. Damage and mismatched indexes are bugs or tampering.
            e @ (store::StoreError::Sled(_)
            | store::StoreError::Io(_)
            | store::StoreError::Locked(_)) => {
                Error::Unavailable(format!("the store cannot serve this now: {e}"))
            }
            other => Error::Internal(other.to_string()),
        }
    }
}
