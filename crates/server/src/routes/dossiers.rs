//! A dossier's state and its trail.

use crate::auth::Caller;
use crate::errors::{ApiError, Error};
use crate::extract::resource;
use crate::openapi::*;
use crate::State;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use domain::{DossierCode, Role};
use serde_json::{json, Value};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/dossiers/{dossier}", "GET").route(web::get().to(dossier)))
        .service(resource("/v1/dossiers/{dossier}/events", "GET").route(web::get().to(trail)));
}

const TRAIL_READERS: &[Role] = &[Role::Ingest, Role::Auditor, Role::Admin];
const DOSSIER_READERS: &[Role] = &[Role::Ingest, Role::Analyst, Role::Auditor, Role::Admin];

/// The dossier code of a path.
fn dossier_code(code: &str) -> Result<DossierCode, Error> {
    DossierCode::parse(code).map_err(|detail| Error::bad_parameter("dossier", detail))
}

#[utoipa::path(get, path = "/v1/dossiers/{dossier}", tag = "dossiers",
    params(("dossier" = DossierCode, Path, description = "The dossier code")),
    responses(
        (status = 200, description = "The dossier's current state", body = DossierView),
        (status = 400, description = "Not a dossier code", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dossier", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn dossier(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let credential = caller.require(DOSSIER_READERS)?.clone();
    let code = dossier_code(&path)?;
    let (d, version) =
        crate::off_workers(&state, move |s| s.visible_dossier(&credential, &code)).await?;
    Ok(HttpResponse::Ok().json(DossierView {
        status: d.status(),
        // Judged now, or at the dossier's latest event if that is later (a business time may run a few minutes
        // ahead of the server clock): the indicators' judging instant is likewise never before an event's time.
        on_time: d.timeliness(Utc::now().max(d.last_occurred_at.with_timezone(&Utc))),
        state: d,
        version,
    }))
}

#[utoipa::path(get, path = "/v1/dossiers/{dossier}/events", tag = "dossiers",
    params(("dossier" = DossierCode, Path, description = "The dossier code")),
    responses(
        (status = 200, description = "Every stored event of the dossier, in order, with its leaf hash", body = Trail),
        (status = 400, description = "Not a dossier code", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dossier", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn trail(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let credential = caller.require(TRAIL_READERS)?.clone();
    let code = dossier_code(&path)?;
    let (d, events) = crate::off_workers(&state, move |s| s.trail(&credential, &code)).await?;
    let with_leaves: Vec<Value> = events
        .iter()
        .map(|e| {
            let bytes = e.canonical_bytes();
            let mut v: Value = serde_json::from_slice(&bytes).expect("canonical bytes are JSON");
            v["leaf_hash"] = json!(store::record_hash(&bytes).to_string());
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "dossier": d.dossier, "events": with_leaves })))
}
