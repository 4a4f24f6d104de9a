//! Every error the API answers with, as `application/problem+json` (RFC 9457) with a stable `code`. One table,
//! one exhaustive match: `ApiError::status_and_code`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use domain::{Rejection, ValidationError};
use serde::Serialize;
use serde_json::json;
use store::{AppendError, EventRefusal, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
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
    Http { status: StatusCode, detail: String },
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

/// One refused event, as the API shows it.
#[derive(Serialize)]
struct RefusedEvent {
    index: usize,
    id: String,
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
}

impl ApiError {
    /// The table: every variant's status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::BadParameter { .. } => (StatusCode::BAD_REQUEST, "bad_parameter"),
            ApiError::RouteNotFound(_) => (StatusCode::NOT_FOUND, "route_not_found"),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ApiError::Http { status, .. } => (*status, http_code(*status)),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(code, _) => (StatusCode::NOT_FOUND, code),
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::Refused(r)
                if r.iter()
                    .all(|r| r.refusal == Refusal::Rule(Rejection::DossierNotFound)) =>
            {
                (StatusCode::NOT_FOUND, "dossier_not_found")
            }
            ApiError::Refused(r) => (StatusCode::CONFLICT, r[0].refusal.code()),
            ApiError::CredentialExists(_) => (StatusCode::CONFLICT, "credential_exists"),
            ApiError::LastAdmin(_) => (StatusCode::CONFLICT, "last_admin"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::TooManySubscribers(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "too_many_subscribers")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl ApiError {
    pub fn bad_parameter(
        name: impl Into<std::borrow::Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> ApiError {
        ApiError::BadParameter {
            name: name.into(),
            detail: detail.into(),
        }
    }
}

/// The stable code of a status the HTTP layer answered with by itself (`Http`).
fn http_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
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

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> ApiError {
        match e {
            AppendError::Refused(r) => ApiError::Refused(r),
            AppendError::BatchSize(n) => ApiError::PayloadTooLarge(format!(
                "a batch carries 1 to {} events, not {n}",
                domain::parse::BATCH_EVENTS_MAX
            )),
            AppendError::Unavailable(why) => ApiError::Unavailable(why),
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> ApiError {
        match e {
            store::StoreError::CredentialExists(name) => ApiError::CredentialExists(name),
            // The storage refusing (a full disk, an IO error that sled now repeats) is not a bug of ours: the
            // service is unavailable until an operator acts. Damage and mismatched indexes are bugs or tampering.
            e @ (store::StoreError::Sled(_)
            | store::StoreError::Io(_)
            | store::StoreError::Locked(_)) => {
                ApiError::Unavailable(format!("the store cannot serve this now: {e}"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_and_code().0;
        let body = self.problem();
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::TooManySubscribers(_) = self {
            response.insert_header((actix_web::http::header::RETRY_AFTER, "5"));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response.insert_header((actix_web::http::header::ALLOW, *allow));
        }
        response.body(body.to_string())
    }
}

impl ApiError {
    /// The problem document (RFC 9457) this error answers with.
    pub fn problem(&self) -> serde_json::Value {
        let (status, code) = self.status_and_code();
        let detail = match self {
            ApiError::Internal(chain) => {
                tracing::error!(error = %chain, "internal error");
                "internal error; the server log has the details".to_string()
            }
            other => other.to_string(),
        };
        let mut body = json!({
            "type": format!("/problems/{code}"),
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
        });
        match self {
            ApiError::Validation(errors) => body["errors"] = json!(errors),
            ApiError::Refused(refusals) => {
                let errors: Vec<RefusedEvent> = refusals
                    .iter()
                    .map(|r| RefusedEvent {
                        index: r.index,
                        id: r.id.to_string(),
                        code: r.refusal.code(),
                        message: r.refusal.to_string(),
                        current_version: match &r.refusal {
                            Refusal::Rule(Rejection::VersionConflict { current, .. }) => {
                                Some(*current)
                            }
                            _ => None,
                        },
                        position: match &r.refusal {
                            Refusal::IdReused { position } => Some(*position),
                            _ => None,
                        },
                    })
                    .collect();
                body["errors"] = json!(errors);
            }
            ApiError::BadParameter { name, .. } => body["parameter"] = json!(name),
            _ => {}
        }
        body
    }
}
