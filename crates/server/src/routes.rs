//! The v1 routes. Each handler: read the request, check the caller, call the log, map the answer.

use crate::auth::{covers, new_token, token_sha256, Caller};
use crate::errors::ApiError;
use crate::extract::Query;
use crate::openapi::*;
use crate::State;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use domain::event::*;
use domain::parse::{parse_submission, SubmissionError};
use domain::{AgencyCode, Credential, DossierCode, ProcedureCode, Role, StoredEvent, Submitted};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{AppendOutcome, AppendRequest, EventLog};
use uuid::Uuid;

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
        ApiError::PayloadTooLarge(format!(
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
            return Err(too_large());
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                ApiError::Http {
                    status: actix_web::http::StatusCode::REQUEST_TIMEOUT,
                    detail: io.to_string(),
                }
            }
            e => ApiError::MalformedJson(format!("the body could not be read: {e}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
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
        .map_err(|e| ApiError::MalformedJson(format!("the body is not JSON: {e}")))
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

/// Appends events through the single writer and folds what it stored into the catalogue before answering.
async fn write(
    state: &web::Data<State>,
    events: Vec<Submitted>,
    source: &str,
) -> Result<AppendOutcome, ApiError> {
    // Only reference events change the catalogue; a batch of dossier events (the hot path) needs no read-back.
    let references = events
        .iter()
        .any(|s| !s.event.event_type().is_dossier_event());
    let outcome = state
        .log
        .append(AppendRequest {
            events,
            source: source.to_owned(),
        })
        .await?;
    if !references {
        return Ok(outcome);
    }
    let positions: Vec<u64> = outcome
        .receipts
        .iter()
        .filter(|r| !r.replayed)
        .map(|r| r.position)
        .collect();
    if let (Some(&first), Some(&last)) = (positions.first(), positions.last()) {
        let stored = crate::off_workers(state, move |s| {
            s.log.read_after(first - 1, (last - first + 1) as usize)
        })
        .await;
        if let Ok(stored) = stored {
            state.catch_up(&stored);
        }
    }
    Ok(outcome)
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
    let events = parse_submission(&body).map_err(|e| match e {
        SubmissionError::NotAnEvent(why) => ApiError::MalformedJson(why),
        SubmissionError::Empty => {
            ApiError::MalformedJson("an empty batch; send 1 to 1,000 events".into())
        }
        SubmissionError::TooMany(n) => {
            ApiError::PayloadTooLarge(format!("a batch carries at most 1,000 events, not {n}"))
        }
        SubmissionError::Invalid(errors) => ApiError::Validation(errors),
    })?;
    if credential.role == Role::Ingest {
        for (index, s) in events.iter().enumerate() {
            // The type first: a reference event (a `target.set` for every agency) may carry no agency at all.
            let (true, Some(agency)) = (
                s.event.event_type().is_dossier_event(),
                s.event.agency.as_ref(),
            ) else {
                return Err(ApiError::Forbidden(format!("event {index}: ingest credentials write dossier events; reference data has its own endpoints")));
            };
            if !covers(&state, &credential, agency) {
                return Err(ApiError::Forbidden(format!(
                    "event {index}: agency {agency} is outside this credential's scope"
                )));
            }
        }
    }
    Ok(receipts_response(
        write(&state, events, &credential.name).await?,
    ))
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

/// A filter on the global log.
struct Filter {
    ty: Option<EventType>,
    agency: Option<AgencyCode>,
}

impl Filter {
    fn parse(ty: Option<&str>, agency: Option<&str>) -> Result<Filter, ApiError> {
        Ok(Filter {
            ty: ty.map(EventType::from_name).transpose().map_err(|detail| {
                ApiError::BadParameter {
                    name: "type".into(),
                    detail,
                }
            })?,
            agency: agency
                .map(AgencyCode::parse)
                .transpose()
                .map_err(|detail| ApiError::BadParameter {
                    name: "agency".into(),
                    detail,
                })?,
        })
    }

    fn keeps(&self, e: &StoredEvent) -> bool {
        self.ty.is_none_or(|t| e.event.event_type() == t)
            && self
                .agency
                .as_ref()
                .is_none_or(|a| e.event.agency.as_ref() == Some(a))
    }
}

const PAGE_EVENTS_MAX: usize = 1_000;

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
        // Stream the log from `after` to the head as of now, a page at a time, without holding it in memory.
        let head = state.log.head().size;
        let limit = query.limit.unwrap_or(usize::MAX);
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
        return Ok(HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .streaming(stream));
    }
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > PAGE_EVENTS_MAX {
        return Err(ApiError::BadParameter {
            name: "limit".into(),
            detail: format!("limit must be 1 to {PAGE_EVENTS_MAX}"),
        });
    }
    // Scan forward until the page is full or the log ends; filtered-out events still advance the cursor.
    let head = state.log.head().size;
    let (out, cursor) = crate::off_workers(&state, move |s| {
        let mut out: Vec<StoredEvent> = Vec::new();
        let mut cursor = after;
        while out.len() < limit && cursor < head {
            let page = s.log.read_after(cursor, PAGE_EVENTS_MAX)?;
            let Some(last) = page.last() else { break };
            let last = last.position;
            for e in page {
                if out.len() == limit {
                    break;
                }
                cursor = e.position;
                if filter.keeps(&e) {
                    out.push(e);
                }
            }
            if out.len() < limit {
                cursor = last;
            }
        }
        Ok::<_, ApiError>((out, cursor))
    })
    .await?;
    let next = (cursor < head).then_some(cursor);
    Ok(HttpResponse::Ok().json(json!({ "events": out, "next_after": next, "log_size": head })))
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
        return Err(ApiError::TooManySubscribers(state.settings.max_subscribers));
    };
    let follow = Follow {
        state: state.clone(),
        after,
        commits: state.log.watch(),
        stopping: state.stopping.subscribe(),
        _subscriber: subscriber,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
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
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream))
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

/// The dossier if this caller may see it. For `ingest` credentials a dossier that does not exist and one outside
/// the scope answer alike (403), so that the answer does not tell which.
fn visible_dossier(
    state: &State,
    caller: &Caller,
    code: &str,
) -> Result<domain::DossierState, ApiError> {
    let credential = caller.require(DOSSIER_READERS)?;
    let code = DossierCode::parse(code).map_err(|detail| ApiError::BadParameter {
        name: "dossier".into(),
        detail,
    })?;
    let found = state
        .log
        .stream_head(code.as_str())?
        .and_then(|h| h.dossier);
    match (credential.role, found) {
        (Role::Ingest, Some(d)) if d.agencies.iter().any(|a| covers(state, credential, a)) => Ok(d),
        (Role::Ingest, _) => Err(ApiError::Forbidden(
            "this dossier is not visible to this credential".into(),
        )),
        (_, Some(d)) => Ok(d),
        (_, None) => Err(ApiError::NotFound(
            "dossier_not_found",
            format!("no dossier {code}"),
        )),
    }
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
    let code = path.into_inner();
    let (d, version) = crate::off_workers(&state, move |s| {
        let d = visible_dossier(s, &caller, &code)?;
        let version = s
            .log
            .stream_head(d.dossier.as_str())?
            .map_or(0, |h| h.version);
        Ok::<_, ApiError>((d, version))
    })
    .await?;
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
    caller.require(TRAIL_READERS)?;
    let code = path.into_inner();
    let (d, events) = crate::off_workers(&state, move |s| {
        let d = visible_dossier(s, &caller, &code)?;
        let events = s.log.stream(d.dossier.as_str())?;
        Ok::<_, ApiError>((d, events))
    })
    .await?;
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

/// A reference event made from a PUT body: a fresh UUIDv7 id, now as its business time, and the body as its
/// `data`, parsed by the very parser senders go through, so that both validate alike. Errors name the body's
/// fields (without the `data.` prefix).
fn reference_event(
    ty: EventType,
    agency: Option<&AgencyCode>,
    body: Value,
) -> Result<Submitted, ApiError> {
    if !body.is_object() {
        return Err(ApiError::MalformedJson(
            "the body must be a JSON object".into(),
        ));
    }
    let mut envelope = json!({ "id": Uuid::now_v7(), "type": ty.as_str(), "occurred_at": Utc::now().to_rfc3339(), "data": body });
    if let Some(a) = agency {
        envelope["agency"] = json!(a);
    }
    domain::parse_envelope(&envelope, 0, domain::Form::Submitted).map_err(|errors| {
        ApiError::Validation(
            errors
                .into_iter()
                .map(|e| domain::ValidationError {
                    field: e.field.strip_prefix("data.").unwrap_or(&e.field).to_owned(),
                    id: None,
                    ..e
                })
                .collect(),
        )
    })
}

fn body_field<T>(
    body: &Value,
    key: &'static str,
    parse: impl FnOnce(&Value) -> Result<T, String>,
) -> Result<T, ApiError> {
    parse(body.get(key).unwrap_or(&Value::Null)).map_err(|message| {
        ApiError::Validation(vec![domain::ValidationError {
            index: 0,
            id: None,
            field: key.to_string(),
            message,
        }])
    })
}

fn check_fields(body: &Value, allowed: &[&str]) -> Result<(), ApiError> {
    let Some(map) = body.as_object() else {
        return Err(ApiError::MalformedJson(
            "the body must be a JSON object".into(),
        ));
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
        Err(ApiError::Validation(unknown))
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
    let code = AgencyCode::parse(&path).map_err(|detail| ApiError::BadParameter {
        name: "code".into(),
        detail,
    })?;
    let body = read_json(&req, payload, &state).await?;
    let event = reference_event(EventType::AgencyRegistered, Some(&code), body)?;
    let EventData::AgencyRegistered(a) = &event.event.data else {
        unreachable!("parsed as its type")
    };
    let unchanged = state
        .catalogue
        .read()
        .expect("catalogue lock")
        .agency(&code)
        .is_some_and(|known| {
            known.name == a.name.as_str() && known.level == a.level && known.parent == a.parent
        });
    if unchanged {
        return Ok(HttpResponse::Ok().json(Unchanged { unchanged: true }));
    }
    Ok(receipts_response(
        write(&state, vec![event], &credential.name).await?,
    ))
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
    let code = AgencyCode::parse(&code).map_err(|detail| ApiError::BadParameter {
        name: "code".into(),
        detail,
    })?;
    let procedure = ProcedureCode::parse(&procedure).map_err(|detail| ApiError::BadParameter {
        name: "procedure".into(),
        detail,
    })?;
    if !covers(&state, &credential, &code) {
        return Err(ApiError::Forbidden(format!(
            "agency {code} is outside this credential's scope"
        )));
    }
    let mut body = read_json(&req, payload, &state).await?;
    if let Some(map) = body.as_object_mut() {
        if map
            .get("procedure")
            .is_some_and(|p| p.as_str() != Some(procedure.as_str()))
        {
            return Err(ApiError::Validation(vec![domain::ValidationError {
                index: 0,
                id: None,
                field: "procedure".into(),
                message: format!("must be the procedure of the path, {procedure}, or left out"),
            }]));
        }
        map.insert("procedure".into(), json!(procedure));
    }
    let event = reference_event(EventType::ProcedureOffered, Some(&code), body)?;
    let EventData::ProcedureOffered(offer) = &event.event.data else {
        unreachable!("parsed as its type")
    };
    let unchanged = state
        .catalogue
        .read()
        .expect("catalogue lock")
        .latest_offer(&code, &procedure)
        .is_some_and(|o| {
            o.name == offer.name.as_str()
                && o.online_level == offer.online_level
                && o.postal_receive == offer.postal_receive
                && o.postal_return == offer.postal_return
                && o.effective_from == offer.effective_from
        });
    if unchanged {
        return Ok(HttpResponse::Ok().json(Unchanged { unchanged: true }));
    }
    Ok(receipts_response(
        write(&state, vec![event], &credential.name).await?,
    ))
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
    let event = reference_event(EventType::TargetSet, None, body)?;
    Ok(receipts_response(
        write(&state, vec![event], &credential.name).await?,
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
    let agency = query
        .agency
        .as_deref()
        .map(AgencyCode::parse)
        .transpose()
        .map_err(|detail| ApiError::BadParameter {
            name: "agency".into(),
            detail,
        })?;
    let today = domain::calendar::vietnam_date(&Utc::now());
    let catalogue = state.catalogue.read().expect("catalogue lock");
    let mut agencies: Vec<Value> = Vec::new();
    for a in catalogue
        .agencies()
        .filter(|a| agency.as_ref().is_none_or(|want| &a.code == want))
    {
        let procedures: Vec<Value> = catalogue
            .offers_on(today, Some(&a.code))
            .into_iter()
            .map(|o| {
                json!({ "procedure": o.procedure, "name": o.name, "online_level": o.online_level, "postal_receive": o.postal_receive,
                        "postal_return": o.postal_return, "effective_from": o.effective_from })
            })
            .collect();
        agencies.push(json!({ "agency": a.code, "name": a.name, "level": a.level, "parent": a.parent, "procedures": procedures }));
    }
    Ok(HttpResponse::Ok().json(json!({ "as_of": today, "agencies": agencies })))
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
    check_fields(&body, &["name", "role", "agency"])?;
    let name = body_field(&body, "name", |v| {
        let s = v.as_str().ok_or("must be a string")?;
        check_source(s)?;
        Ok(s.to_owned())
    })?;
    let role = body_field(&body, "role", |v| {
        v.as_str().ok_or("must be a string")?.parse::<Role>()
    })?;
    let agency = body_field(&body, "agency", |v| {
        if v.is_null() {
            Ok(None)
        } else {
            AgencyCode::parse(v.as_str().ok_or("must be a string")?).map(Some)
        }
    })?;
    let token = new_token();
    let credential = Credential {
        name,
        role,
        agency,
        token_sha256: token_sha256(&token),
        created_at: Utc::now(),
        revoked_at: None,
    };
    credential.check().map_err(|message| {
        ApiError::Validation(vec![domain::ValidationError {
            index: 0,
            id: None,
            field: "agency".into(),
            message,
        }])
    })?;
    let stored = credential.clone();
    crate::off_workers(&state, move |s| s.log.add_credential(&stored)).await?;
    state.credentials_changed(Some(&credential), None);
    Ok(HttpResponse::Created().json(json!({ "name": credential.name, "role": credential.role, "agency": credential.agency, "token": token })))
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
    check_source(&path).map_err(|detail| ApiError::bad_parameter("name", detail))?;
    let name = path.into_inner();
    crate::off_workers(&state, move |s| {
        // One revocation at a time, so that two admins revoking each other cannot both pass the check below.
        let _one_at_a_time = s.revocations.lock().expect("revocation lock");
        let all = s.log.credentials()?;
        let live: Vec<&Credential> = all.iter().filter(|c| c.revoked_at.is_none()).collect();
        let admins = live.iter().filter(|c| c.role == Role::Admin).count();
        if admins == 1 && live.iter().any(|c| c.name == name && c.role == Role::Admin) {
            return Err(ApiError::LastAdmin(name));
        }
        if s.log.revoke_credential(&name, Utc::now())? {
            s.credentials_changed(None, Some(&name));
            Ok(())
        } else {
            Err(ApiError::NotFound(
                "token_not_found",
                format!("no live token named {name:?}"),
            ))
        }
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
