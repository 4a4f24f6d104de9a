//! The audit routes (`api.md`): the verifier key, the tree head with the latest signed checkpoint, stored
//! checkpoints, inclusion and consistency proofs, and dossier bundles. Auditor and admin roles only.
//!
//! Every proof is of the committed log, read beside the writer; issuing a checkpoint (on demand, when no stored one
//! covers what was asked) signs and stores it on a blocking thread, never in the writer.

use crate::auth::Caller;
use crate::errors::ApiError;
use crate::schemas::*;
use crate::State;
use actix_web::{web, HttpResponse};
use domain::Role;
use serde::Deserialize;

pub const AUDITORS: &[Role] = &[Role::Auditor, Role::Admin];

pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::extract::resource;
    cfg.service(resource("/v1/audit/key", "GET").route(web::get().to(key)))
        .service(resource("/v1/audit/head", "GET").route(web::get().to(head)))
        .service(
            resource("/v1/audit/checkpoints", "GET, POST")
                .route(web::get().to(checkpoints))
                .route(web::post().to(issue)),
        )
        .service(resource("/v1/audit/proof", "GET").route(web::get().to(proof)))
        .service(resource("/v1/audit/consistency", "GET").route(web::get().to(consistency)))
        .service(resource("/v1/dossiers/{dossier}/bundle", "GET").route(web::get().to(bundle)));
}

#[utoipa::path(get, path = "/v1/audit/key", tag = "audit",
    responses(
        (status = 200, description = "The verifier key checkpoints are signed with", body = AuditKey),
        Unauthenticated, NotAnAuditor
    ),
    security(("bearer" = [])))]
pub(crate) async fn key(caller: Caller, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    Ok(HttpResponse::Ok().json(state.audit_key()))
}

#[utoipa::path(get, path = "/v1/audit/head", tag = "audit",
    responses(
        (status = 200, description = "The committed size and root, and the latest signed checkpoint (null before the first)", body = AuditHead),
        Unauthenticated, NotAnAuditor
    ),
    security(("bearer" = [])))]
pub(crate) async fn head(
    caller: Caller,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    Ok(HttpResponse::Ok().json(crate::off_workers(&state, |s| s.audit_head()).await?))
}

#[derive(Deserialize)]
pub(crate) struct CheckpointsQuery {
    #[serde(default, deserialize_with = "crate::extract::int64")]
    after: Option<u64>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/audit/checkpoints", tag = "audit",
    params(
        ("after" = Option<u64>, Query, description = "Only checkpoints of sizes above this"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "1 to 1,000 (default 100)"),
    ),
    responses(
        (status = 200, description = "Stored signed checkpoints by size: what an auditor compares with the ones kept", body = CheckpointList),
        (status = 400, description = "A parameter out of its domain", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotAnAuditor
    ),
    security(("bearer" = [])))]
pub(crate) async fn checkpoints(
    caller: Caller,
    query: crate::extract::Query<CheckpointsQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let (after, limit) = (query.after, query.limit);
    Ok(HttpResponse::Ok()
        .json(crate::off_workers(&state, move |s| s.checkpoints(after, limit)).await?))
}

#[utoipa::path(post, path = "/v1/audit/checkpoints", tag = "audit",
    responses(
        (status = 201, description = "A checkpoint of the head, signed and stored now", body = CheckpointView),
        (status = 200, description = "The latest stored checkpoint is of the head's size already: that one", body = CheckpointView),
        Unauthenticated, NotAnAuditor,
        (status = 503, description = "The store cannot write now", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn issue(
    caller: Caller,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let (new, c) = crate::off_workers(&state, |s| s.issue_checkpoint()).await?;
    if new {
        Ok(HttpResponse::Created().json(c))
    } else {
        Ok(HttpResponse::Ok().json(c))
    }
}

#[derive(Deserialize)]
pub(crate) struct ProofQuery {
    #[serde(default, deserialize_with = "crate::extract::int64")]
    position: Option<u64>,
    #[serde(default, deserialize_with = "crate::extract::int64")]
    size: Option<u64>,
}

#[utoipa::path(get, path = "/v1/audit/proof", tag = "audit",
    params(
        ("position" = u64, Query, minimum = 1, description = "The event's position (its leaf is position - 1)"),
        ("size" = Option<u64>, Query, description = "The tree size to prove against; by default the latest signed checkpoint that holds the position (one is signed now if none does)"),
    ),
    responses(
        (status = 200, description = "The inclusion proof, and the signed checkpoint of that size if one was issued", body = InclusionAnswer),
        (status = 400, description = "No such position, or a size that does not hold it", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotAnAuditor
    ),
    security(("bearer" = [])))]
pub(crate) async fn proof(
    caller: Caller,
    query: crate::extract::Query<ProofQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let (position, size) = (query.position, query.size);
    Ok(HttpResponse::Ok()
        .json(crate::off_workers(&state, move |s| s.inclusion(position, size)).await?))
}

#[derive(Deserialize)]
pub(crate) struct ConsistencyQuery {
    #[serde(default, deserialize_with = "crate::extract::int64")]
    from: Option<u64>,
    #[serde(default, deserialize_with = "crate::extract::int64")]
    to: Option<u64>,
}

#[utoipa::path(get, path = "/v1/audit/consistency", tag = "audit",
    params(
        ("from" = u64, Query, description = "The older tree size (a checkpoint the auditor kept)"),
        ("to" = Option<u64>, Query, description = "The newer tree size; by default the head, with a checkpoint of it (signed now if the latest is older)"),
    ),
    responses(
        (status = 200, description = "The consistency proof, and the signed checkpoint of size `to` if one was issued: save it and give it to `casetrail audit verify-consistency`", body = ConsistencyAnswer),
        (status = 400, description = "Sizes out of order or past the log", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotAnAuditor
    ),
    security(("bearer" = [])))]
pub(crate) async fn consistency(
    caller: Caller,
    query: crate::extract::Query<ConsistencyQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let (from, to) = (query.from, query.to);
    Ok(
        HttpResponse::Ok()
            .json(crate::off_workers(&state, move |s| s.consistency(from, to)).await?),
    )
}

#[utoipa::path(get, path = "/v1/dossiers/{dossier}/bundle", tag = "audit",
    params(("dossier" = domain::DossierCode, Path, description = "The dossier code")),
    responses(
        (status = 200, description = "The dossier's stored events, an inclusion proof for each, and the signed checkpoint they lead to; check it with `casetrail audit verify-bundle`", body = BundleSchema),
        (status = 400, description = "Not a dossier code", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotAnAuditor,
        (status = 404, description = "No such dossier", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn bundle(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let code = super::dossier_code(&path)?;
    let bundle = crate::off_workers(&state, {
        let code = code.clone();
        move |s| s.bundle(&code)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{code}.bundle.json\""),
        ))
        .content_type("application/json")
        .body(serde_json::to_vec(&bundle).expect("bundles serialize")))
}
