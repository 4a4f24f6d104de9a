//! The audit routes (`api.md`): the verifier key, the tree head with the latest signed checkpoint, stored
//! checkpoints, inclusion and consistency proofs, and dossier bundles. Auditor and admin roles only.
//!
//! Every proof is of the committed log, read beside the writer; issuing a checkpoint (on demand, when no stored one
//! covers what was asked) signs and stores it on a blocking thread, never in the writer.

use crate::auth::Caller;
use crate::errors::ApiError;
use crate::openapi::*;
use crate::State;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use domain::{DossierCode, Role};
use serde::Deserialize;
use store::{EventLog, StoredCheckpoint};

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

fn view(c: StoredCheckpoint) -> CheckpointView {
    CheckpointView {
        size: c.size,
        issued_at: c.issued_at,
        note: c.note,
    }
}

/// Store work (which may sign and store a checkpoint: a flush and an fsync) off the async workers.
async fn blocking<T: Send + 'static>(
    state: &web::Data<State>,
    work: impl FnOnce(&State) -> Result<T, store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::off_workers(state, work).await
}

#[utoipa::path(get, path = "/v1/audit/key", tag = "audit",
    responses(
        (status = 200, description = "The verifier key checkpoints are signed with", body = AuditKey),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor or admin token", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn key(caller: Caller, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let key = state.notary.key();
    Ok(HttpResponse::Ok().json(AuditKey {
        origin: key.origin().to_owned(),
        verifier_key: key.verifier_key().to_owned(),
        key_id: format!("{:08x}", key.key_id()),
        algorithm: "Ed25519".into(),
    }))
}

#[utoipa::path(get, path = "/v1/audit/head", tag = "audit",
    responses(
        (status = 200, description = "The committed size and root, and the latest signed checkpoint (null before the first)", body = AuditHead),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor or admin token", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn head(
    caller: Caller,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let head = state.log.head();
    let checkpoint = blocking(&state, |s| s.log.latest_checkpoint())
        .await?
        .map(view);
    Ok(HttpResponse::Ok().json(AuditHead {
        size: head.size,
        root: head.root.to_string(),
        checkpoint,
    }))
}

#[derive(Deserialize)]
pub(crate) struct CheckpointsQuery {
    #[serde(default, deserialize_with = "crate::extract::int64")]
    after: Option<u64>,
    limit: Option<usize>,
}

const CHECKPOINTS_PAGE_MAX: usize = 1_000;

#[utoipa::path(get, path = "/v1/audit/checkpoints", tag = "audit",
    params(
        ("after" = Option<u64>, Query, description = "Only checkpoints of sizes above this"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "1 to 1,000 (default 100)"),
    ),
    responses(
        (status = 200, description = "Stored signed checkpoints by size: what an auditor compares with the ones kept", body = CheckpointList),
        (status = 400, description = "A parameter out of its domain", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor or admin token", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn checkpoints(
    caller: Caller,
    query: crate::extract::Query<CheckpointsQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > CHECKPOINTS_PAGE_MAX {
        return Err(ApiError::BadParameter {
            name: "limit".into(),
            detail: format!("limit must be 1 to {CHECKPOINTS_PAGE_MAX}"),
        });
    }
    let after = query.after;
    let page = blocking(&state, move |s| s.log.checkpoints(after, limit + 1)).await?;
    let more = page.len() > limit;
    let page: Vec<CheckpointView> = page.into_iter().take(limit).map(view).collect();
    let next_after = if more {
        page.last().map(|c| c.size)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(CheckpointList {
        checkpoints: page,
        next_after,
    }))
}

#[utoipa::path(post, path = "/v1/audit/checkpoints", tag = "audit",
    responses(
        (status = 201, description = "A checkpoint of the head, signed and stored now", body = CheckpointView),
        (status = 200, description = "The latest stored checkpoint is of the head's size already: that one", body = CheckpointView),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor or admin token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot write now", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn issue(
    caller: Caller,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let (before, c) = blocking(&state, |s| {
        let before = s.log.latest_checkpoint()?.map(|c| c.size);
        Ok((before, s.notary.checkpoint_head(&s.log, Utc::now())?))
    })
    .await?;
    if before == Some(c.size) {
        Ok(HttpResponse::Ok().json(view(c)))
    } else {
        Ok(HttpResponse::Created().json(view(c)))
    }
}

fn bad(name: &'static str, detail: String) -> ApiError {
    ApiError::bad_parameter(name, detail)
}

/// A size or position parameter, if given, within `lo..=hi` (`bounds` says what those are, for the message).
fn tree_param(
    name: &'static str,
    value: Option<u64>,
    (lo, hi): (u64, u64),
    bounds: &str,
) -> Result<Option<u64>, ApiError> {
    match value {
        Some(v) if v < lo || v > hi => Err(bad(name, format!("{name} must be {bounds}"))),
        other => Ok(other),
    }
}

fn hashes(proof: Vec<store::Hash>) -> Vec<String> {
    proof.iter().map(ToString::to_string).collect()
}

/// The tree size a proof is against: the one asked for with its checkpoint if one was signed there, or else the
/// size of `default`'s checkpoint.
fn tree_size(
    s: &State,
    asked: Option<u64>,
    default: impl FnOnce(&State) -> Result<StoredCheckpoint, store::StoreError>,
) -> Result<(u64, Option<CheckpointView>), store::StoreError> {
    Ok(match asked {
        Some(size) => (size, s.log.checkpoint(size)?.map(view)),
        None => {
            let c = default(s)?;
            (c.size, Some(view(c)))
        }
    })
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
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor or admin token", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn proof(
    caller: Caller,
    query: crate::extract::Query<ProofQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let head = state.log.head().size;
    let bounds = format!("1 to the log's size, {head}");
    let position =
        tree_param("position", query.position.or(Some(0)), (1, head), &bounds)?.expect("required");
    let bounds = format!("{position} (the position) to {head} (the log's size)");
    let asked = tree_param("size", query.size, (position, head), &bounds)?;
    let answer = blocking(&state, move |s| {
        let (size, checkpoint) = tree_size(s, asked, |s| {
            s.notary.covering(&s.log, position, Utc::now())
        })?;
        let event = s.log.event(position)?.ok_or_else(|| {
            store::StoreError::IndexMismatch(format!("position {position} vanished"))
        })?;
        Ok(InclusionAnswer {
            position,
            size,
            leaf_index: position - 1,
            leaf_hash: store::record_hash(&event.canonical_bytes()).to_string(),
            root: s.log.root_at(size)?.to_string(),
            proof: hashes(s.log.prove_inclusion(position, size)?),
            checkpoint,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(answer))
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
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor or admin token", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn consistency(
    caller: Caller,
    query: crate::extract::Query<ConsistencyQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let head = state.log.head().size;
    let from = query
        .from
        .ok_or_else(|| bad("from", "from is required".into()))?;
    tree_param(
        "from",
        Some(from),
        (0, head),
        &format!("0 to the log's size, {head}"),
    )?;
    let bounds = format!("{from} (from) to {head} (the log's size)");
    let asked = tree_param("to", query.to, (from, head), &bounds)?;
    let answer = blocking(&state, move |s| {
        let (to, checkpoint) =
            tree_size(s, asked, |s| s.notary.checkpoint_head(&s.log, Utc::now()))?;
        Ok(ConsistencyAnswer {
            from,
            to,
            from_root: s.log.root_at(from)?.to_string(),
            to_root: s.log.root_at(to)?.to_string(),
            proof: hashes(s.log.prove_consistency(from, to)?),
            checkpoint,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(answer))
}

#[utoipa::path(get, path = "/v1/dossiers/{dossier}/bundle", tag = "audit",
    params(("dossier" = domain::DossierCode, Path, description = "The dossier code")),
    responses(
        (status = 200, description = "The dossier's stored events, an inclusion proof for each, and the signed checkpoint they lead to; check it with `casetrail audit verify-bundle`", body = BundleSchema),
        (status = 400, description = "Not a dossier code", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor or admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dossier", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn bundle(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITORS)?;
    let code = DossierCode::parse(&path).map_err(|detail| bad("dossier", detail))?;
    let dossier = code.to_string();
    let bundle = blocking(&state, move |s| {
        s.notary.bundle(&s.log, &dossier, Utc::now())
    })
    .await?
    .ok_or_else(|| ApiError::NotFound("dossier_not_found", format!("no dossier {code}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{code}.bundle.json\""),
        ))
        .content_type("application/json")
        .body(serde_json::to_vec(&bundle).expect("bundles serialize")))
}
