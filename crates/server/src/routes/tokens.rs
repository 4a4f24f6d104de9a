//! Tokens (admin): create, list, revoke.

use super::{body_field, check_fields, read_json};
use crate::auth::Caller;
use crate::errors::{ApiError, Error};
use crate::extract::resource;
use crate::schemas::*;
use crate::State;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::event::*;
use domain::{AgencyCode, Role};
use serde_json::Value;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/v1/tokens", "GET, POST")
            .route(web::post().to(create_token))
            .route(web::get().to(list_tokens)),
    )
    .service(resource("/v1/tokens/{name}", "DELETE").route(web::delete().to(revoke_token)));
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "Created; the token is shown this once", body = TokenCreated),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotCovered,
        (status = 409, description = "A token of that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field missing or out of its domain", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn create_token(
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let body = read_json(&req, payload, &state).await?;
    let (name, role, agency) = token_request(&body)?;
    let issued = crate::off_workers(&state, move |s| s.issue_token(name, role, agency)).await?;
    Ok(HttpResponse::Created().json(TokenCreated::from(issued)))
}

/// The name, role and scope a token request asks for; unknown fields are refused.
fn token_request(body: &Value) -> Result<(String, Role, Option<AgencyCode>), ApiError> {
    check_fields(body, &["name", "role", "agency"])?;
    let name = body_field(body, "name", |v| {
        let s = v.as_str().ok_or("must be a string")?;
        check_source(s)?;
        Ok(s.to_owned())
    })?;
    let role = body_field(body, "role", |v| {
        v.as_str().ok_or("must be a string")?.parse::<Role>()
    })?;
    let agency = body_field(body, "agency", |v| {
        if v.is_null() {
            Ok(None)
        } else {
            AgencyCode::parse(v.as_str().ok_or("must be a string")?).map(Some)
        }
    })?;
    Ok((name, role, agency))
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, description = "Every token, never its secret", body = TokenList), Unauthenticated, NotCovered),
    security(("bearer" = [])))]
pub(crate) async fn list_tokens(
    caller: Caller,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(HttpResponse::Ok().json(crate::off_workers(&state, |s| s.token_list()).await?))
}

#[utoipa::path(delete, path = "/v1/tokens/{name}", tag = "tokens",
    params(("name" = CredentialName, Path, description = "The token's name")),
    responses((status = 204, description = "Revoked"), Unauthenticated, NotCovered,
        (status = 400, description = "Not a token name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live token of that name", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last live admin token (`last_admin`): create another first", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn revoke_token(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    // A name no token can have is a malformed request, not a missing token.
    check_source(&path).map_err(|detail| Error::bad_parameter("name", detail))?;
    let name = path.into_inner();
    crate::off_workers(&state, move |s| s.revoke_token(&name)).await?;
    Ok(HttpResponse::NoContent().finish())
}
