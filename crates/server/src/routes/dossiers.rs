//! A dossier's state and its trail.

use crate::auth::Caller;
use crate::errors::ApiError;
use crate::extract::resource;
use crate::schemas::*;
use crate::State;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use domain::{DossierCode, Role};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/dossiers/{dossier}", "GET").route(web::get().to(dossier)))
        .service(resource("/v1/dossiers/{dossier}/events", "GET").route(web::get().to(trail)));
}

const TRAIL_READERS: &[Role] = &[Role::Ingest, Role::Auditor, Role::Admin];
const DOSSIER_READERS: &[Role] = &[Role::Ingest, Role::Analyst, Role::Auditor, Role::Admin];

#[utoipa::path(get, path = "/v1/dossiers/{dossier}", tag = "dossiers",
    params(("dossier" = DossierCode, Path, description = "The dossier code")),
    responses(
        (status = 200, description = "The dossier's current state", body = DossierView),
        (status = 400, description = "Not a dossier code", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotCovered,
        (status = 404, description = "No such dossier", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn dossier(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let credential = caller.require(DOSSIER_READERS)?.clone();
    let code = super::dossier_code(&path)?;
    let view = move |s: &State| s.dossier_view(&credential, &code, Utc::now());
    Ok(HttpResponse::Ok().json(crate::off_workers(&state, view).await?))
}

#[utoipa::path(get, path = "/v1/dossiers/{dossier}/events", tag = "dossiers",
    params(("dossier" = DossierCode, Path, description = "The dossier code")),
    responses(
        (status = 200, description = "Every stored event of the dossier, in order, with its leaf hash", body = Trail),
        (status = 400, description = "Not a dossier code", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotCovered,
        (status = 404, description = "No such dossier", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn trail(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let credential = caller.require(TRAIL_READERS)?.clone();
    let code = super::dossier_code(&path)?;
    let trail = crate::off_workers(&state, move |s| s.trail(&credential, &code)).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(trail.to_json()))
}
