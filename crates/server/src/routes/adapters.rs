//! Adapters for software that already speaks another protocol: the National Public Service Portal's (DVCQG) sync,
//! `POST /v1/adapters/dvcqg` (docs/integration.md).

use super::read_json;
use crate::auth::{token_sha256, Caller};
use crate::errors::{ApiError, Error};
use crate::extract::resource;
use crate::schemas::*;
use crate::{off_workers, State};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use app::adapter::{Gateway, Written, ATTEMPTS};
use serde_json::Value;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/adapters/dvcqg", "POST").route(web::post().to(dvcqg)))
        .service(
            resource("/v1/adapters/dvcqg/{service}", "POST").route(web::post().to(dvcqg_service)),
        );
}

/// A service name [`app::adapter::service_named`] knows.
fn service_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    check_service(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn check_service(s: &str) -> Result<String, String> {
    match app::adapter::service_named(s) {
        Some(_) => Ok(s.to_owned()),
        None => Err(format!(
            "not a service casetrail answers ({})",
            app::adapter::SERVICE_NAMES.join(", ")
        )),
    }
}

/// A unit code as the site sends it: mapped later by the site's mapping, so only its shape is checked here.
fn site_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    let ok = !s.is_empty() && s.chars().count() <= 128 && !s.chars().any(char::is_control);
    if ok {
        Ok(Some(s))
    } else {
        Err(serde::de::Error::custom(
            "a unit code: 1 to 128 characters, no control characters",
        ))
    }
}

/// `True`/`False` as the gateway writes them (or `true`, `1`, `0`).
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    app::adapter::parse_flag(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// What a gateway client says in the query string.
#[derive(serde::Deserialize, Default)]
pub(crate) struct GatewayQuery {
    #[serde(default, deserialize_with = "service_name")]
    service: Option<String>,
    #[serde(default, deserialize_with = "site_code")]
    madonvi: Option<String>,
    #[serde(default, rename = "isUpdating", deserialize_with = "flag")]
    is_updating: Option<bool>,
}

/// The query of a service's own URL: the service is in the path.
#[derive(serde::Deserialize, Default)]
pub(crate) struct ServiceQuery {
    #[serde(default, deserialize_with = "site_code")]
    madonvi: Option<String>,
    #[serde(default, rename = "isUpdating", deserialize_with = "flag")]
    is_updating: Option<bool>,
}

#[utoipa::path(post, path = "/v1/adapters/dvcqg", tag = "adapters",
    params(
        ("service" = Option<GatewayService>, Query, description = "The gateway's form: the service of a body that is a bare array of dossiers (DongBoHoSoMC, CapNhatTienDoHoSoMC, TraCuuHoSo, or the gateway's ThemMoi, CapNhat, DongBoTienTrinh)"),
        ("madonvi" = Option<String>, Query, min_length = 1, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]+$", description = "The gateway's form: the sending unit's code, for requests that do not name one"),
        ("isUpdating" = Option<SyncFlag>, Query, description = "The gateway's form: True or False, for requests that do not say"),
    ),
    request_body(content = SyncBody, description = "One sync request, or an array of them, as a one-stop system sends the portal: DongBoHoSoMC (a dossier as it stands), CapNhatTienDoHoSoMC (a processing step), TraCuuHoSo (a lookup). With `service` in the query, a bare array of dossiers (the form a provincial gateway posts). The token goes in Authorization, or in `session` for a client that cannot set headers."),
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
    query: Result<crate::extract::Query<GatewayQuery>, ApiError>,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let gateway = query.map(|q| {
        let q = q.into_inner();
        Gateway {
            service: q.service,
            madonvi: q.madonvi,
            is_updating: q.is_updating,
        }
    });
    respond(answer(&req, caller, gateway, payload, &state).await)
}

#[utoipa::path(post, path = "/v1/adapters/dvcqg/{service}", tag = "adapters",
    params(
        ("service" = GatewayService, Path, description = "The service, as a provincial gateway names its URLs: ThemMoi (a new dossier), CapNhat (an update), DongBoTienTrinh (a step), or the portal's DongBoHoSoMC, CapNhatTienDoHoSoMC, TraCuuHoSo"),
        ("madonvi" = Option<String>, Query, min_length = 1, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]+$", description = "The sending unit's code, for requests that do not name one"),
        ("isUpdating" = Option<SyncFlag>, Query, description = "True or False, for requests that do not say"),
    ),
    request_body(content = SyncBody, description = "A bare array of dossiers (or steps), as a provincial gateway posts them; or sync requests, which get the URL's service where they name none"),
    responses(
        (status = 200, description = "As POST /v1/adapters/dvcqg", body = SyncAnswer),
        (status = 400, description = "Not JSON, or a service, madonvi or isUpdating that cannot be read", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotCovered,
        (status = 404, description = "A step for a dossier the log does not have yet (`dossier_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "As POST /v1/adapters/dvcqg (`sync_conflict`, `sync_out_of_order`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit, or more than 1,000 events implied", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field missing or unreadable, or a code the site's mapping does not know", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log cannot accept writes now", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn dvcqg_service(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
    query: Result<crate::extract::Query<ServiceQuery>, ApiError>,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    // The path's service is checked before the query and the body are read.
    let service = check_service(&path).map_err(|why| {
        ApiError::from(Error::bad_parameter(
            "service",
            format!("{:?} is {why}", path.as_str()),
        ))
    });
    let gateway = service.and_then(|service| {
        let q = query?.into_inner();
        Ok(Gateway {
            service: Some(service),
            madonvi: q.madonvi,
            is_updating: q.is_updating,
        })
    });
    respond(answer(&req, caller, gateway, payload, &state).await)
}

fn respond(answer: Result<Value, ApiError>) -> HttpResponse {
    match answer {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => refusal(e),
    }
}

async fn answer(
    req: &HttpRequest,
    caller: Result<Caller, ApiError>,
    gateway: Result<Gateway, ApiError>,
    payload: web::Payload,
    state: &web::Data<State>,
) -> Result<Value, ApiError> {
    let gateway = gateway?;
    let caller = caller?;
    let body = app::adapter::in_portal_form(read_json(req, payload, state).await?, &gateway);
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
