//! Reference data: agencies, procedures offered, targets, and the public catalogue.

use super::{read_json, receipts_response};
use crate::auth::Caller;
use crate::errors::{ApiError, Error};
use crate::extract::{resource, Query};
use crate::schemas::*;
use crate::State;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use domain::{AgencyCode, ProcedureCode, Role};
use serde::Deserialize;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/agencies/{code}", "PUT").route(web::put().to(put_agency)))
        .service(
            resource("/v1/agencies/{code}/procedures/{procedure}", "PUT")
                .route(web::put().to(put_procedure)),
        )
        .service(resource("/v1/targets", "PUT").route(web::put().to(put_target)))
        .service(resource("/v1/catalogue", "GET").route(web::get().to(catalogue)));
}

#[utoipa::path(put, path = "/v1/agencies/{code}", tag = "reference",
    params(("code" = AgencyCode, Path, description = "The agency code")),
    request_body = AgencyBody,
    responses(
        (status = 201, description = "Registered: an agency.registered event", body = [Receipt]),
        (status = 200, description = "Already registered exactly so: nothing written", body = Unchanged),
        (status = 400, description = "Not an agency code, or not JSON", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotCovered,
        (status = 409, description = "The parent is the agency itself or one of its descendants (`agency_cycle`, with the cycle's path)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field missing or out of its domain", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn put_agency(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let credential = caller.require(&[Role::Admin])?.clone();
    let code = AgencyCode::parse(&path).map_err(|detail| Error::bad_parameter("code", detail))?;
    let body = read_json(&req, payload, &state).await?;
    Ok(registered(
        state.register_agency(&credential, &code, body).await?,
    ))
}

/// The answer to a PUT of reference data: 200 `unchanged`, or 201 with the receipt.
fn registered(r: app::Registered) -> HttpResponse {
    match r {
        app::Registered::Unchanged => HttpResponse::Ok().json(Unchanged { unchanged: true }),
        app::Registered::Written(outcome) => receipts_response(outcome),
    }
}

#[utoipa::path(put, path = "/v1/agencies/{code}/procedures/{procedure}", tag = "reference",
    params(("code" = AgencyCode, Path, description = "The agency code"), ("procedure" = ProcedureCode, Path, description = "The procedure code")),
    request_body = ProcedureBody,
    responses(
        (status = 201, description = "Offered: a procedure.offered event", body = [Receipt]),
        (status = 200, description = "Already offered exactly so: nothing written", body = Unchanged),
        (status = 400, description = "Bad codes, or not JSON", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotCovered,
        (status = 422, description = "A field missing or out of its domain", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn put_procedure(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let credential = caller.require(&[Role::Admin, Role::Ingest])?.clone();
    let (code, procedure) = path.into_inner();
    let code = AgencyCode::parse(&code).map_err(|detail| Error::bad_parameter("code", detail))?;
    let procedure = ProcedureCode::parse(&procedure)
        .map_err(|detail| Error::bad_parameter("procedure", detail))?;
    if !state.covers(&credential, &code) {
        return Err(
            Error::Forbidden(format!("agency {code} is outside this credential's scope")).into(),
        );
    }
    let body = read_json(&req, payload, &state).await?;
    let offered = state.offer_procedure(&credential, &code, &procedure, body);
    Ok(registered(offered.await?))
}

#[utoipa::path(put, path = "/v1/targets", tag = "reference",
    request_body = TargetBody,
    responses(
        (status = 201, description = "Set: a target.set event", body = [Receipt]),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotCovered,
        (status = 422, description = "A field missing or out of its domain", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn put_target(
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let credential = caller.require(&[Role::Admin])?.clone();
    let body = read_json(&req, payload, &state).await?;
    Ok(receipts_response(
        state.set_target(&credential, body).await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct CatalogueQuery {
    agency: Option<String>,
}

/// Public: which procedures each agency offers online (and at which level) and by post, as in force today.
#[utoipa::path(get, path = "/v1/catalogue", tag = "reference",
    params(("agency" = Option<AgencyCode>, Query, description = "Only this agency")),
    responses(
        (status = 200, description = "Procedures in force today per agency: online level, postal receipt and return", body = CatalogueView),
        (status = 400, description = "Not an agency code", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "An unknown or revoked token was sent", body = Problem, content_type = "application/problem+json")
    ))]
pub(crate) async fn catalogue(
    caller: Caller,
    query: Query<CatalogueQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    // Public, but a token that is sent must be valid: a client with a revoked token should hear about it.
    let _ = caller;
    let agency = query.agency.as_deref().map(AgencyCode::parse).transpose();
    let agency = agency.map_err(|detail| Error::bad_parameter("agency", detail))?;
    let today = domain::calendar::vietnam_date(&Utc::now());
    Ok(HttpResponse::Ok().json(state.catalogue_view(today, agency.as_ref())))
}
