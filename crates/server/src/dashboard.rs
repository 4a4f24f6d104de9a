//! The dashboard: its files (and the one library it uses, uPlot, with its licence) compiled into the binary and served as they are, so that it works with no internet
//! access and no file beside the binary. Its data comes from the same v1 API every client uses, in the browser,
//! with the same rules (public indicator tables while `public_indicators` is on; a token for the rest).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("../dashboard/index.html");
const SCRIPT: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/app.css");
/// uPlot (https://github.com/leeoniya/uPlot), MIT, vendored unmodified (version in the file's first line).
const CHARTS: &str = include_str!("../dashboard/vendor/uPlot.iife.min.js");
const CHARTS_STYLE: &str = include_str!("../dashboard/vendor/uPlot.min.css");
const CHARTS_LICENCE: &str = include_str!("../dashboard/vendor/uPlot.LICENSE");

/// Only this origin: no script, style, image or connection elsewhere (the page must work offline, and a
/// compromised third party must not read a token typed into it).
const POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::extract::resource;
    cfg.service(resource("/", "GET").route(web::get().to(root)))
        .service(resource("/dashboard", "GET").route(web::get().to(root)))
        .service(
            resource("/dashboard/", "GET")
                .route(web::get().to(|| file(INDEX, "text/html; charset=utf-8"))),
        )
        .service(
            resource("/dashboard/app.js", "GET")
                .route(web::get().to(|| file(SCRIPT, "text/javascript; charset=utf-8"))),
        )
        .service(
            resource("/dashboard/app.css", "GET")
                .route(web::get().to(|| file(STYLE, "text/css; charset=utf-8"))),
        )
        .service(
            resource("/dashboard/vendor/uPlot.iife.min.js", "GET")
                .route(web::get().to(|| file(CHARTS, "text/javascript; charset=utf-8"))),
        )
        .service(
            resource("/dashboard/vendor/uPlot.min.css", "GET")
                .route(web::get().to(|| file(CHARTS_STYLE, "text/css; charset=utf-8"))),
        )
        .service(
            resource("/dashboard/vendor/uPlot.LICENSE", "GET")
                .route(web::get().to(|| file(CHARTS_LICENCE, "text/plain; charset=utf-8"))),
        );
}

async fn root() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/dashboard/"))
        .finish()
}

async fn file(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
