//! The v1 routes. Each handler: read the request, check the caller, call the log, map the answer.

use crate::auth::Caller;
use crate::errors::{ApiError, Error};
use crate::extract::Query;
use crate::openapi::*;
use crate::State;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use app::reading::{Filter, PAGE_EVENTS_MAX};
use chrono::Utc;
use domain::event::*;
use domain::parse::{parse_submission, SubmissionError};
use domain::{AgencyCode, DossierCode, ProcedureCode, Role};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{AppendOutcome, EventLog};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::extract::resource;
    use crate::indicator_routes::{indicators, series};
    cfg.service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi_json)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics)))
        .service(
            resource("/v1/events", "GET, POST")
                .route(web::post().to(append))
                .route(web::get().to(events)),
        )
        .service(resource("/v1/events/live", "GET").route(web::get().to(live)))
        .service(resource("/v1/dossiers/{dossier}", "GET").route(web::get().to(dossier)))
        .service(resource("/v1/dossiers/{dossier}/events", "GET").route(web::get().to(trail)))
        .service(resource("/v1/agencies/{code}", "PUT").route(web::put().to(put_agency)))
        .service(
            resource("/v1/agencies/{code}/procedures/{procedure}", "PUT")
                .route(web::put().to(put_procedure)),
        )
        .service(resource("/v1/targets", "PUT").route(web::put().to(put_target)))
        .service(resource("/v1/catalogue", "GET").route(web::get().to(catalogue)))
        .service(resource("/v1/indicators", "GET").route(web::get().to(indicators)))
        .service(resource("/v1/indicators/series", "GET").route(web::get().to(series)))
        .service(
            resource("/v1/tokens", "GET, POST")
                .route(web::post().to(create_token))
                .route(web::get().to(list_tokens)),
        )
        .service(resource("/v1/tokens/{name}", "DELETE").route(web::delete().to(revoke_token)));
}

const READERS: &[Role] = &[Role::Analyst, Role::Auditor, Role::Admin];
const TRAIL_READERS: &[Role] = &[Role::Ingest, Role::Auditor, Role::Admin];
const DOSSIER_READERS: &[Role] = &[Role::Ingest, Role::Analyst, Role::Auditor, Role::Admin];

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

/// Reads a body up to the limit: a declared length over it is refused before anything is read, and a body
/// that turns out longer is refused as soon as it passes the limit.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let too_large = || {
        Error::PayloadTooLarge(format!(
            "the body is larger than the limit of {limit} bytes"
        ))
    };
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if length > limit {
            return Err(too_large().into());
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Error::Http {
                    status: 408,
                    detail: io.to_string(),
                }
            }
            e => Error::MalformedJson(format!("the body could not be read: {e}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large().into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
) -> Result<Value, ApiError> {
    let body = read_body(req, payload, state.settings.body_limit_bytes).await?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::MalformedJson(format!("the body is not JSON: {e}")).into())
}

fn receipts_response(outcome: AppendOutcome) -> HttpResponse {
    let replayed = outcome.all_replayed();
    let receipts: Vec<Receipt> = outcome
        .receipts
        .iter()
        .map(|r| Receipt {
            id: r.id,
            position: r.position,
            version: r.version,
            replayed: r.replayed,
        })
        .collect();
    // `api.md`: 201 with the receipts; 200 with the original receipts when every event was already stored.
    if replayed {
        HttpResponse::Ok().json(receipts)
    } else {
        HttpResponse::Created().json(receipts)
    }
}

#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = Submission, description = "One event, or a batch of 1 to 1,000 written all or nothing"),
    responses(
        (status = 201, description = "Written: every event is on disk", body = [Receipt]),
        (status = 200, description = "Every event was already stored with the same content: the original receipts", body = [Receipt]),
        (status = 400, description = "Not JSON, or not an event", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Every refused event is a first event that is not dossier.received", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Refused by a stream rule, the expected version, or a reused id; every refused event is listed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit, or more than 1,000 events", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Fields missing, unknown or out of their domain; every one is listed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log cannot accept writes now; nothing was written", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn append(
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let credential = caller.require(&[Role::Ingest, Role::Admin])?.clone();
    let body = read_json(&req, payload, &state).await?;
    let events = parse_submission(&body).map_err(submission_error)?;
    Ok(receipts_response(state.submit(&credential, events).await?))
}

/// Why a body is not a submission, as the API says it.
fn submission_error(e: SubmissionError) -> Error {
    match e {
        SubmissionError::NotAnEvent(why) => Error::MalformedJson(why),
        SubmissionError::Empty => {
            Error::MalformedJson("an empty batch; send 1 to 1,000 events".into())
        }
        SubmissionError::TooMany(n) => {
            Error::PayloadTooLarge(format!("a batch carries at most 1,000 events, not {n}"))
        }
        SubmissionError::Invalid(errors) => Error::Validation(errors),
    }
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(default, deserialize_with = "crate::extract::int64")]
    after: Option<u64>,
    limit: Option<usize>,
    #[serde(rename = "type")]
    ty: Option<String>,
    agency: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        ("after" = Option<u64>, Query, description = "Events after this position (default 0)"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "1 to 1,000 (default 100); with NDJSON, no limit unless given"),
        ("type" = Option<EventType>, Query, description = "Only this event type"),
        ("agency" = Option<AgencyCode>, Query, description = "Only events of this agency"),
    ),
    responses(
        (status = 200, description = "A page (JSON), or every matching event up to the head (Accept: application/x-ndjson)", body = EventsPage,
         content((EventsPage = "application/json"), (StoredEnvelope = "application/x-ndjson"))),
        (status = 400, description = "A parameter out of its domain", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn events(
    req: HttpRequest,
    caller: Caller,
    query: Query<EventsQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let filter = Filter::parse(query.ty.as_deref(), query.agency.as_deref())?;
    let after = query.after.unwrap_or(0);
    let ndjson = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    if ndjson {
        let limit = query.limit.unwrap_or(usize::MAX);
        return Ok(ndjson_to_head(state, after, limit, filter));
    }
    let limit = query.limit;
    let page = crate::off_workers(&state, move |s| s.events_page(after, limit, &filter)).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// The log from `after` to the head as of now, as NDJSON, read a page at a time without holding it in memory.
fn ndjson_to_head(
    state: web::Data<State>,
    after: u64,
    limit: usize,
    filter: Filter,
) -> HttpResponse {
    let head = state.log.head().size;
    let stream = futures_util::stream::unfold(
        (state.clone(), after, 0usize, filter),
        move |(state, after, sent, filter)| async move {
            if after >= head || sent >= limit {
                return None;
            }
            let reading = state.clone();
            let page = match crate::off_workers(&reading, move |s| {
                s.log
                    .read_after(after, PAGE_EVENTS_MAX.min((head - after) as usize))
            })
            .await
            {
                Ok(page) if !page.is_empty() => page,
                Ok(_) => return None,
                Err(e) => {
                    return Some((
                        Err(actix_web::error::ErrorInternalServerError(e.to_string())),
                        (state, head, sent, filter),
                    ))
                }
            };
            let next = page.last().expect("not empty").position;
            let mut out = Vec::with_capacity(page.len() * 320);
            let mut n = sent;
            for e in page.iter().filter(|e| filter.keeps(e)) {
                if n >= limit {
                    break;
                }
                out.extend_from_slice(&e.canonical_bytes());
                out.push(b'\n');
                n += 1;
            }
            Some((
                Ok::<_, actix_web::Error>(web::Bytes::from(out)),
                (state, next, n, filter),
            ))
        },
    );
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(stream)
}

#[derive(Deserialize)]
pub(crate) struct LiveQuery {
    #[serde(default, deserialize_with = "crate::extract::int64")]
    after: Option<u64>,
}

/// Server-Sent Events: everything after `after` (or `Last-Event-ID`), then each commit as it happens. Each
/// follower reads the log itself; the writer only publishes the new head, so a slow follower never blocks it.
#[utoipa::path(get, path = "/v1/events/live", tag = "events",
    params(
        ("after" = Option<u64>, Query, description = "Catch up from after this position"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position (wins over `after`)"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `id` is the position, `event` the type, `data` the stored envelope", content_type = "text/event-stream"),
        (status = 400, description = "`after` or `Last-Event-ID` is not a position", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`max_subscribers` streams are open (`too_many_subscribers`, with Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn live(
    req: HttpRequest,
    caller: Caller,
    query: Query<LiveQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    // An unreadable Last-Event-ID is refused: ignoring it would replay the whole log from position 0.
    let last_id = crate::extract::integer_header(&req, "Last-Event-ID", i64::MAX as u64)?;
    let after = last_id.or(query.after).unwrap_or(0);
    let Some(subscriber) = state.subscribe() else {
        return Err(Error::TooManySubscribers(state.settings.max_subscribers).into());
    };
    let follow = Follow {
        state: state.clone(),
        after,
        commits: state.log.watch(),
        stopping: state.stopping.subscribe(),
        _subscriber: subscriber,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(follow.into_stream()))
}

/// What a live stream carries from one chunk to the next.
struct Follow {
    state: web::Data<State>,
    after: u64,
    commits: tokio::sync::watch::Receiver<store::Head>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Counts this stream among the subscribers while it lives.
    _subscriber: crate::Subscriber,
}

impl Follow {
    /// Everything after `after`, then each commit as it happens, until the server stops.
    fn into_stream(self) -> impl futures_util::Stream<Item = Result<web::Bytes, actix_web::Error>> {
        futures_util::stream::unfold(self, |mut f| async move {
            loop {
                if *f.stopping.borrow() {
                    return None; // the server is stopping: end the stream so that the stop need not wait for it
                }
                let head = f.state.log.head().size;
                if f.after < head {
                    // Catching up is paced: a page is read and encoded on the blocking pool, a few subscribers at a
                    // time (the others queue, in order), so that a thousand subscribers catching up at once leave
                    // the async workers free for everyone else.
                    let page = {
                        let _turn = f
                            .state
                            .catch_up_turns
                            .acquire()
                            .await
                            .expect("never closed");
                        let after = f.after;
                        crate::off_workers(&f.state, move |s| {
                            let page = s.log.read_after(after, 500)?;
                            let mut out = String::with_capacity(page.len() * 400);
                            for e in &page {
                                out.push_str(&format!(
                                    "id: {}\nevent: {}\ndata: {}\n\n",
                                    e.position,
                                    e.event.event_type(),
                                    String::from_utf8_lossy(&e.canonical_bytes())
                                ));
                            }
                            Ok::<_, ApiError>((page.last().map(|e| e.position), out))
                        })
                        .await
                    };
                    let (last, out) = match page {
                        Ok(page) => page,
                        Err(e) => {
                            return Some((
                                Err(actix_web::error::ErrorInternalServerError(e.to_string())),
                                f,
                            ))
                        }
                    };
                    let Some(last) = last else {
                        // The head moved but nothing is readable past `after` yet: wait below, never spin.
                        tokio::select! {
                            changed = f.commits.changed() => if changed.is_err() { return None },
                            _ = f.stopping.changed() => {}
                            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                        }
                        continue;
                    };
                    f.after = last;
                    return Some((Ok::<_, actix_web::Error>(web::Bytes::from(out)), f));
                }
                // Nothing new: wait for a commit or a stop, with a comment line now and then to keep proxies from
                // timing out.
                tokio::select! {
                    changed = f.commits.changed() => if changed.is_err() { return None },
                    _ = f.stopping.changed() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => {
                        return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), f));
                    }
                }
            }
        })
    }
}

/// The dossier code of a path.
fn dossier_code(code: &str) -> Result<DossierCode, Error> {
    DossierCode::parse(code).map_err(|detail| Error::bad_parameter("dossier", detail))
}

#[utoipa::path(get, path = "/v1/dossiers/{dossier}", tag = "dossiers",
    params(("dossier" = DossierCode, Path, description = "The dossier code")),
    responses(
        (status = 200, description = "The dossier's current state", body = DossierView),
        (status = 400, description = "Not a dossier code", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dossier", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn dossier(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let credential = caller.require(DOSSIER_READERS)?.clone();
    let code = dossier_code(&path)?;
    let (d, version) =
        crate::off_workers(&state, move |s| s.visible_dossier(&credential, &code)).await?;
    Ok(HttpResponse::Ok().json(DossierView {
        status: d.status(),
        // Judged now, or at the dossier's latest event if that is later (a business time may run a few minutes
        // ahead of the server clock): the indicators' judging instant is likewise never before an event's time.
        on_time: d.timeliness(Utc::now().max(d.last_occurred_at.with_timezone(&Utc))),
        state: d,
        version,
    }))
}

#[utoipa::path(get, path = "/v1/dossiers/{dossier}/events", tag = "dossiers",
    params(("dossier" = DossierCode, Path, description = "The dossier code")),
    responses(
        (status = 200, description = "Every stored event of the dossier, in order, with its leaf hash", body = Trail),
        (status = 400, description = "Not a dossier code", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dossier", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub(crate) async fn trail(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let credential = caller.require(TRAIL_READERS)?.clone();
    let code = dossier_code(&path)?;
    let (d, events) = crate::off_workers(&state, move |s| s.trail(&credential, &code)).await?;
    let with_leaves: Vec<Value> = events
        .iter()
        .map(|e| {
            let bytes = e.canonical_bytes();
            let mut v: Value = serde_json::from_slice(&bytes).expect("canonical bytes are JSON");
            v["leaf_hash"] = json!(store::record_hash(&bytes).to_string());
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "dossier": d.dossier, "events": with_leaves })))
}

fn body_field<T>(
    body: &Value,
    key: &'static str,
    parse: impl FnOnce(&Value) -> Result<T, String>,
) -> Result<T, ApiError> {
    parse(body.get(key).unwrap_or(&Value::Null))
        .map_err(|message| Error::field(key, message).into())
}

fn check_fields(body: &Value, allowed: &[&str]) -> Result<(), ApiError> {
    let Some(map) = body.as_object() else {
        return Err(Error::MalformedJson("the body must be a JSON object".into()).into());
    };
    let unknown: Vec<domain::ValidationError> = map
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| domain::ValidationError {
            index: 0,
            id: None,
            field: k.clone(),
            message: "is not a known field".into(),
        })
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(unknown).into())
    }
}

#[utoipa::path(put, path = "/v1/agencies/{code}", tag = "reference",
    params(("code" = AgencyCode, Path, description = "The agency code")),
    request_body = AgencyBody,
    responses(
        (status = 201, description = "Registered: an agency.registered event", body = [Receipt]),
        (status = 200, description = "Already registered exactly so: nothing written", body = Unchanged),
        (status = 400, description = "Not an agency code, or not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json"),
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
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json"),
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
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json"),
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

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "Created; the token is shown this once", body = TokenCreated),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json"),
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
    let c = issued.credential;
    Ok(HttpResponse::Created()
        .json(json!({ "name": c.name, "role": c.role, "agency": c.agency, "token": issued.token })))
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
    responses((status = 200, description = "Every token, never its secret", body = TokenList), (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn list_tokens(
    caller: Caller,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let list: Vec<Value> = crate::off_workers(&state, |s| s.log.credentials())
        .await?
        .into_iter()
        .map(|c| json!({ "name": c.name, "role": c.role, "agency": c.agency, "created_at": c.created_at, "revoked_at": c.revoked_at }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "tokens": list })))
}

#[utoipa::path(delete, path = "/v1/tokens/{name}", tag = "tokens",
    params(("name" = CredentialName, Path, description = "The token's name")),
    responses((status = 204, description = "Revoked"), (status = 401, description = "No token, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role or scope does not cover this", body = Problem, content_type = "application/problem+json"),
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
