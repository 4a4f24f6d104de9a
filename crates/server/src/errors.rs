//! Every error the API answers with, as `application/problem+json` (RFC 9457) with a stable `code`. The table of
//! codes and statuses is the app's (`app::Error::status_and_code`); this module renders it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
pub use app::Error;
use domain::Rejection;
use serde::Serialize;
use serde_json::json;
use store::{AppendError, Refusal};

/// An [`Error`] as an HTTP answer. Handlers return it; `?` makes one of an app, store or append error.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError(e)
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> ApiError {
        ApiError(e.into())
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> ApiError {
        ApiError(e.into())
    }
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
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status_and_code().0)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        let body = self.problem();
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Error::TooManySubscribers(_) = self.0 {
            response.insert_header((actix_web::http::header::RETRY_AFTER, "5"));
        }
        if let Error::MethodNotAllowed { allow, .. } = self.0 {
            response.insert_header((actix_web::http::header::ALLOW, allow));
        }
        response.body(body.to_string())
    }
}

impl ApiError {
    /// The problem document (RFC 9457) this error answers with.
    pub fn problem(&self) -> serde_json::Value {
        let (status, code) = (self.status(), self.0.status_and_code().1);
        let detail = match &self.0 {
            Error::Internal(chain) => {
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
        match &self.0 {
            Error::Validation(errors)
            | Error::Sync {
                problems: errors, ..
            } => body["errors"] = json!(errors),
            Error::Refused(refusals) => {
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
            Error::BadParameter { name, .. } => body["parameter"] = json!(name),
            _ => {}
        }
        body
    }
}
