//! The log: appending (`POST /v1/events`), reading a page or NDJSON (`GET /v1/events`), and following it live
//! (`GET /v1/events/live`).

use super::{read_json, receipts_response};
use crate::auth::Caller;
use crate::errors::{ApiError, Error};
use crate::extract::{resource, Query};
use crate::schemas::*;
use crate::State;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use app::reading::{Filter, PAGE_EVENTS_MAX};
use domain::event::*;
use domain::parse::{parse_submission, SubmissionError};
use domain::{AgencyCode, Role};
use serde::Deserialize;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/v1/events", "GET, POST")
            .route(web::post().to(append))
            .route(web::get().to(events)),
    )
    .service(resource("/v1/events/live", "GET").route(web::get().to(live)));
}

const READERS: &[Role] = &[Role::Analyst, Role::Auditor, Role::Admin];

#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = Submission, description = "One event, or a batch of 1 to 1,000 written all or nothing"),
    responses(
        (status = 201, description = "Written: every event is on disk", body = [Receipt]),
        (status = 200, description = "Every event was already stored with the same content: the original receipts", body = [Receipt]),
        (status = 400, description = "Not JSON, or not an event", body = Problem, content_type = "application/problem+json"),
        Unauthenticated, NotCovered,
        (status = 404, description = "Every refused event is a first event that is not dossier.received", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Refused by a stream rule, the expected version, or a reused id; every refused event is listed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit, or more than 1,000 events", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Fields missing, unknown or out of their domain; every one is listed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log cannot accept writes now (a failed disk: nothing was written; a stalled one: send the same events again)", body = Problem, content_type = "application/problem+json")
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
        Unauthenticated, NotCovered
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
    let filter = std::sync::Arc::new(filter);
    let stream = futures_util::stream::unfold(
        (state.clone(), after, 0usize),
        move |(state, after, sent)| {
            let filter = filter.clone();
            async move {
                if after >= head || sent >= limit {
                    return None;
                }
                // The stored bytes are sent as they are: read, filtered and joined on the blocking pool.
                let page = crate::off_workers(&state, move |s| {
                    let max = PAGE_EVENTS_MAX.min((head - after) as usize);
                    let page = s.log.read_raw_after(after, max)?;
                    let mut out = Vec::with_capacity(page.len() * 320);
                    let mut n = sent;
                    for e in &page {
                        if n >= limit {
                            break;
                        }
                        if filter.keeps_raw(e)? {
                            out.extend_from_slice(&e.bytes);
                            out.push(b'\n');
                            n += 1;
                        }
                    }
                    Ok::<_, ApiError>((page.last().map(|e| e.position), out, n))
                })
                .await;
                match page {
                    Ok((Some(next), out, n)) => Some((Ok(web::Bytes::from(out)), (state, next, n))),
                    Ok((None, ..)) => None,
                    Err(e) => Some((
                        Err(actix_web::error::ErrorInternalServerError(e.to_string())),
                        (state, head, sent),
                    )),
                }
            }
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
        Unauthenticated, NotCovered
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
    let follow = Follow::new(&state, after)?;
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
    /// A live stream from after `after`, unless `max_subscribers` are connected already.
    fn new(state: &web::Data<State>, after: u64) -> Result<Follow, ApiError> {
        let Some(subscriber) = state.subscribe() else {
            return Err(Error::TooManySubscribers(state.settings.max_subscribers).into());
        };
        Ok(Follow {
            state: state.clone(),
            after,
            commits: state.log.watch(),
            stopping: state.stopping.subscribe(),
            _subscriber: subscriber,
        })
    }

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
                            // The stored bytes are sent as they are; only the type is read from them.
                            let page = s.log.read_raw_after(after, 500)?;
                            let mut out = String::with_capacity(page.len() * 400);
                            for e in &page {
                                let peek =
                                    domain::event::Peek::of(&e.bytes).map_err(Error::Internal)?;
                                out.push_str(&format!(
                                    "id: {}\nevent: {}\ndata: {}\n\n",
                                    e.position,
                                    peek.ty,
                                    String::from_utf8_lossy(&e.bytes)
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
