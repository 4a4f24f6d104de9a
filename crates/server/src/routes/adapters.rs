//! Adapters for software that already speaks another protocol: the National Public Service Portal's (DVCQG) sync,
//! `POST /v1/adapters/dvcqg` (docs/integration.md).

use super::read_json;
use crate::auth::{token_sha256, Caller};
use crate::errors::{ApiError, Error};
use crate::extract::resource;
use crate::schemas::*;
use crate::{off_workers, State};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use app::adapter::{Written, ATTEMPTS};
use serde_json::Value;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/adapters/dvcqg", "POST").route(web::post().to(dvcqg)));
}

#[utoipa::path(post, path = "/v1/adapters/dvcqg", tag = "adapters",
    request_body(content = SyncBody, description = "One sync request, or an array of them, as a one-stop system sends the portal: DongBoHoSoMC (a dossier as it stands), CapNhatTienDoHoSoMC (a processing step), TraCuuHoSo (a lookup). The token goes in Authorization, or in `session` for a client that cannot set headers."),
    responses(
        (status = 200, description = "Taken: what the log was missing is on disk (nothing, when it had it all). The portal's envelope (`error_code` is the mapping's success code), `result` for lookups, and casetrail's receipts, notes and dropped fields under `casetrail`", body = SyncAnswer),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotCovered,
        (status = 404, description = "A step for a dossier the log does not have yet (`dossier_not_found`): send its DongBoHoSoMC first", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The request contradicts the log where the events contract allows no correction (`sync_conflict`), says something new dated before the log's last event of its dossier (`sync_out_of_order`: a step that came after a later one), or the log refuses an event it implies; every problem is listed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit, or more than 1,000 events implied", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field missing or unreadable, or a code the site's mapping does not know (`validation_failed`); every one is listed with its request's index", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log cannot accept writes now (a failed disk: nothing was written; a stalled one: send the same events again)", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn dvcqg(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    match answer(&req, caller, payload, &state).await {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => refusal(e),
    }
}

async fn answer(
    req: &HttpRequest,
    caller: Result<Caller, ApiError>,
    payload: web::Payload,
    state: &web::Data<State>,
) -> Result<Value, ApiError> {
    let caller = caller?;
    let body = read_json(req, payload, state).await?;
    // The portal's clients send their session in the body; a casetrail token there is taken like a bearer one.
    let credential = match caller.0 {
        Some(c) => c,
        None => body
            .as_object()
            .into_iter()
            .chain(
                body.as_array()
                    .and_then(|a| a.first())
                    .and_then(Value::as_object),
            )
            .find_map(|o| o.get("session").and_then(Value::as_str))
            .and_then(|token| state.credential(&token_sha256(token)))
            .ok_or(Error::Unauthorized)?,
    };
    let requests = state.dvcqg_requests(&credential, &body)?;
    for _ in 0..ATTEMPTS {
        let (who, asked) = (credential.clone(), requests.clone());
        let planned = off_workers(state, move |s| s.dvcqg_plan(&who, asked)).await?;
        if let Written::Answer(body) = state.dvcqg_write(&credential, planned).await? {
            return Ok(body);
        }
    }
    Err(Error::Unavailable(format!(
        "the dossiers changed under {ATTEMPTS} attempts in a row; send the request again"
    ))
    .into())
}

/// A refusal: the problem document, with the portal envelope's `error_code` (the stable code, never the success
/// code) and `message` beside it, so that a client that reads only those sees the failure and why.
fn refusal(e: ApiError) -> HttpResponse {
    let mut problem = e.problem();
    problem["error_code"] = problem["code"].clone();
    problem["message"] = problem["detail"].clone();
    // The status and headers (WWW-Authenticate, Retry-After) are the problem's; only the body gains the two keys.
    e.error_response()
        .set_body(actix_web::body::BoxBody::new(problem.to_string()))
}
