//! The v1 routes, a file per resource, each with its own `configure`. Each handler: extract, check the caller,
//! make one `App` call, map the answer. What several share (reading a body, the receipts answer) is here.

pub(crate) mod adapters;
pub(crate) mod audit;
pub(crate) mod dossiers;
pub(crate) mod events;
pub(crate) mod indicators;
pub(crate) mod internal;
pub(crate) mod ops;
pub(crate) mod reference;
pub(crate) mod tokens;

use crate::errors::{ApiError, Error};
use crate::schemas::Receipt;
use crate::State;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::Value;
use store::AppendOutcome;

/// Every v1 resource, in the order they are matched.
pub fn configure(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    events::configure(cfg);
    dossiers::configure(cfg);
    reference::configure(cfg);
    indicators::configure(cfg);
    tokens::configure(cfg);
    audit::configure(cfg);
    adapters::configure(cfg);
    internal::configure(cfg);
}

/// Reads a body up to the limit: a declared length over it is refused before anything is read, and a body
/// that turns out longer is refused as soon as it passes the limit.
pub(super) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let too_large = || {
        Error::PayloadTooLarge(format!(
            "the body is larger than the limit of {limit} bytes"
        ))
    };
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if length > limit {
            return Err(too_large().into());
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Error::Http {
                    status: 408,
                    detail: io.to_string(),
                }
            }
            e => Error::MalformedJson(format!("the body could not be read: {e}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large().into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(super) async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
) -> Result<Value, ApiError> {
    let body = read_body(req, payload, state.settings.body_limit_bytes).await?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::MalformedJson(format!("the body is not JSON: {e}")).into())
}

/// The dossier code of a path.
pub(super) fn dossier_code(code: &str) -> Result<domain::DossierCode, Error> {
    domain::DossierCode::parse(code).map_err(|detail| Error::bad_parameter("dossier", detail))
}

pub(super) fn receipts_response(outcome: AppendOutcome) -> HttpResponse {
    let replayed = outcome.all_replayed();
    let receipts: Vec<Receipt> = outcome.receipts.iter().map(Receipt::from).collect();
    // `api.md`: 201 with the receipts; 200 with the original receipts when every event was already stored.
    if replayed {
        HttpResponse::Ok().json(receipts)
    } else {
        HttpResponse::Created().json(receipts)
    }
}

pub(super) fn body_field<T>(
    body: &Value,
    key: &'static str,
    parse: impl FnOnce(&Value) -> Result<T, String>,
) -> Result<T, ApiError> {
    parse(body.get(key).unwrap_or(&Value::Null))
        .map_err(|message| Error::field(key, message).into())
}

pub(super) fn check_fields(body: &Value, allowed: &[&str]) -> Result<(), ApiError> {
    let Some(map) = body.as_object() else {
        return Err(Error::MalformedJson("the body must be a JSON object".into()).into());
    };
    let unknown: Vec<domain::ValidationError> = map
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| domain::ValidationError {
            index: 0,
            id: None,
            field: k.clone(),
            message: "is not a known field".into(),
        })
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(unknown).into())
    }
}
