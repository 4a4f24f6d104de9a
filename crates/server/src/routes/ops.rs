//! Operations: health, readiness, metrics, and the OpenAPI document.

use crate::extract::resource;
use crate::State;
use actix_web::{web, HttpResponse};

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
    HttpResponse::Ok().json(Health::status("ok"))
}

/// What the health and readiness checks answer: a status, with the log's size when ready, or why not.
#[derive(serde::Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl Health {
    fn status(status: &'static str) -> Health {
        Health {
            status,
            log_size: None,
            detail: None,
        }
    }

    fn unavailable(detail: String) -> HttpResponse {
        let detail = Some(detail);
        HttpResponse::ServiceUnavailable().json(Health {
            detail,
            ..Health::status("unavailable")
        })
    }
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "The store answers"), (status = 503, description = "The store does not answer")))]
pub(crate) async fn readyz(state: web::Data<State>) -> HttpResponse {
    if let Some(why) = state.log.write_failure() {
        return Health::unavailable(why.to_string());
    }
    let probe = crate::off_workers(&state, |s| s.log.stream_head("readyz-probe").map(|_| ())).await;
    match probe {
        Ok(()) => HttpResponse::Ok().json(Health {
            log_size: Some(state.log.head().size),
            ..Health::status("ready")
        }),
        Err(e) => Health::unavailable(e.to_string()),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(state: web::Data<State>) -> HttpResponse {
    // It reads the latest checkpoint from the store: off the async workers, like every store read.
    match crate::off_workers(&state, |s| {
        Ok::<_, crate::errors::ApiError>(s.metrics.render(s))
    })
    .await
    {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(text),
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}
