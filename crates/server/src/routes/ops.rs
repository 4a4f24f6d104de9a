//! Operations: health, readiness, metrics, and the OpenAPI document.

use crate::extract::resource;
use crate::State;
use actix_web::{web, HttpResponse};
use serde_json::json;
use store::EventLog;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi_json)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics)));
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document (OpenAPI 3.1)")))]
pub(crate) async fn openapi_json() -> HttpResponse {
    use utoipa::OpenApi;
    HttpResponse::Ok().content_type("application/json").body(
        crate::openapi::ApiDoc::openapi()
            .to_json()
            .expect("the document serializes"),
    )
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive")))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "The store answers"), (status = 503, description = "The store does not answer")))]
pub(crate) async fn readyz(state: web::Data<State>) -> HttpResponse {
    if let Some(why) = state.log.write_failure() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unavailable", "detail": why }));
    }
    let probe = crate::off_workers(&state, |s| s.log.stream_head("readyz-probe").map(|_| ())).await;
    match probe {
        Ok(()) => {
            HttpResponse::Ok().json(json!({ "status": "ready", "log_size": state.log.head().size }))
        }
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unavailable", "detail": e.to_string() })),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(&state))
}
