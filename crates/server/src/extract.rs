//! What the HTTP layer reads before a handler runs, made to fail like everything else: problem+json with a stable
//! code, naming what was wrong. actix's own extractors answer `text/plain` ("Query deserialize error: invalid digit
//! found in string"), and its router answers an empty 404 or 405; these take their place.

use crate::errors::{ApiError, Error};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, ResponseError};
use serde::de::DeserializeOwned;
use std::future::{ready, Ready};

/// Typed query parameters. A value that does not parse is a 400 `bad_parameter` naming the parameter and the
/// value, e.g. `"abc" is not a valid after: invalid digit found in string`.
pub struct Query<T>(pub T);

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Query<T>, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_query(req.query_string()).map(Query))
    }
}

/// Reads a query string into `T`, naming the parameter that failed.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs)).map_err(|e| {
        let name = e.path().to_string();
        let value = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.into_owned());
        match value {
            Some(v) => Error::bad_parameter(
                name.clone(),
                format!("{v:?} is not a valid {name}: {}", e.inner()),
            ),
            // No single parameter to blame (a repeated one, say): the query as a whole.
            None => Error::bad_parameter(
                "query",
                format!("the query string could not be read: {}", e.inner()),
            ),
        }
        .into()
    })
}

/// A non-negative integer parameter within the OpenAPI `int64` the contract gives it: `0..=2^63-1`.
pub fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::Deserialize;
    match Option::<u64>::deserialize(d)? {
        Some(n) if n > i64::MAX as u64 => Err(serde::de::Error::custom(format!(
            "{n} is above the largest position, {}",
            i64::MAX
        ))),
        n => Ok(n),
    }
}

/// A path segment that cannot be read (not UTF-8 once percent-decoded): a 400 naming the route's parameter when
/// it has one (`dossier`, `code`, …), else `path`.
pub fn path_error(e: actix_web::error::PathError, req: &HttpRequest) -> actix_web::Error {
    let names: Vec<String> = req
        .match_pattern()
        .unwrap_or_default()
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect();
    let name = match names.as_slice() {
        [one] => one.clone(),
        _ => "path".to_owned(),
    };
    ApiError(Error::bad_parameter(
        name,
        format!("the path could not be read: {e}"),
    ))
    .into()
}

/// An unsigned integer header (`Last-Event-ID`): absent is `None`; present but not a number in `0..=max` is a 400.
pub fn integer_header(
    req: &HttpRequest,
    name: &'static str,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    let Some(value) = req.headers().get(name) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    match text.trim().parse::<u64>() {
        Ok(n) if n <= max => Ok(Some(n)),
        _ => Err(Error::bad_parameter(
            name,
            format!("{text:?} is not a valid {name}: expected a whole number from 0 to {max}"),
        )
        .into()),
    }
}

/// Every path is served by a resource that knows its methods: any other method is a 405 naming them in `Allow`.
pub fn resource(path: &'static str, allow: &'static str) -> actix_web::Resource {
    actix_web::web::resource(path).default_service(actix_web::web::to(
        move |req: HttpRequest| async move {
            ApiError(Error::MethodNotAllowed {
                method: req.method().to_string(),
                path: path.to_owned(),
                allow,
            })
            .error_response()
        },
    ))
}

/// For a path no route has.
pub async fn route_not_found(req: HttpRequest) -> actix_web::HttpResponse {
    ApiError(Error::RouteNotFound(format!(
        "{} {}",
        req.method(),
        req.path()
    )))
    .error_response()
}

/// The net under every error: an error answer that is not JSON (one the HTTP layer made by itself, before or
/// instead of our code) is rewritten as a problem, its text kept as the detail and its status kept.
pub async fn problems(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Handlers' and extractors' errors arrive here as responses already (actix renders them inside the route); an
    // `Err` from further in is rare and is rendered by actix from its own `ResponseError`.
    let response = next.call(req).await?.map_into_boxed_body();
    let status = response.status();
    // Our own answers are JSON already (problems, and the few documented JSON error bodies such as `/readyz`'s);
    // what the HTTP layer makes by itself is plain text or empty.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/") && v.contains("json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return Ok(response);
    }
    let (request, answer) = response.into_parts();
    let allow = answer.headers().get(header::ALLOW).cloned();
    let text = actix_web::body::to_bytes(answer.into_body())
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut problem = ApiError(Error::Http {
        status: status.as_u16(),
        detail,
    })
    .error_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    Ok(ServiceResponse::new(request, problem))
}

/// A handler that panics (a bug) answers 500 `internal`, logged: without this the panic unwinds through actix's
/// worker thread, which drops every connection that thread serves and is restarted. (The request went into the
/// handler, so the answer goes out as an error that actix renders with `ApiError`'s problem.)
pub async fn contain_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use futures_util::FutureExt;
    let what = format!("{} {}", req.method(), req.path());
    match std::panic::AssertUnwindSafe(next.call(req))
        .catch_unwind()
        .await
    {
        Ok(answer) => answer.map(ServiceResponse::map_into_boxed_body),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(ApiError(Error::Internal(format!("{what} panicked: {why}"))).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{test, web, App};

    #[actix_web::test]
    async fn a_panicking_handler_answers_a_500_problem() {
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(super::contain_panics))
                .route(
                    "/boom",
                    web::get().to(|| async { panic!("a bug") as &'static str }),
                )
                .route("/fine", web::get().to(|| async { "fine" })),
        )
        .await;
        // An error, which actix renders with the error's own `error_response`.
        let error =
            test::try_call_service(&app, test::TestRequest::get().uri("/boom").to_request())
                .await
                .err()
                .expect("the panic became an error");
        let answer = error.error_response();
        assert_eq!(answer.status(), 500);
        assert_eq!(
            answer.headers().get("content-type").unwrap(),
            "application/problem+json"
        );
        let body: serde_json::Value =
            serde_json::from_slice(&actix_web::body::to_bytes(answer.into_body()).await.unwrap())
                .unwrap();
        assert_eq!(body["code"], "internal");
        assert!(
            !body["detail"].as_str().unwrap().contains("a bug"),
            "the details stay in the log: {body}"
        );
        // The same service goes on answering.
        let answer =
            test::call_service(&app, test::TestRequest::get().uri("/fine").to_request()).await;
        assert_eq!(answer.status(), 200);
    }
}
