//! Between the nodes of a log on PostgreSQL: `POST /internal/v1/append`, where the elected writer takes the
//! batches another node was sent (pglog's `elect`): `{"requests": [{"source", "events"}, …]}`, answered by one
//! answer per batch in order, each batch all or nothing on its own (one batch alone, `{"source", "events"}`, is
//! answered by its answer alone, as the first nodes with an elected writer sent it). Not for clients: it is taken only with the secret that the holders of
//! the log's signing key derive from it, and the batch was authenticated and checked by the node that forwards it.

use crate::extract::resource;
use crate::State;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::parse::parse_submission;
use serde::Deserialize;
use store::AppendRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/internal/v1/append", "POST").route(web::post().to(append)));
}

#[derive(Deserialize)]
struct Forwarded {
    source: String,
    events: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Handed {
    Many { requests: Vec<Forwarded> },
    One(Forwarded),
}

/// Equal in time that does not depend on where the two first differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn append(req: HttpRequest, payload: web::Payload, state: web::Data<State>) -> HttpResponse {
    let secret = state.app.node_secret().as_bytes();
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if !given.is_some_and(|g| same(g, secret)) {
        return HttpResponse::Unauthorized()
            .body("a node of this log hands batches on with the secret of its signing key");
    }
    // A batch of the most events at the largest size each, whatever this node's own body limit.
    let limit = state.settings.body_limit_bytes.max(64 << 20);
    let body = match super::read_body(&req, payload, limit).await {
        Ok(body) => body,
        Err(e) => return actix_web::ResponseError::error_response(&e),
    };
    let handed: Handed = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => return HttpResponse::BadRequest().body(format!("not a forwarded batch: {e}")),
    };
    let (batches, many) = match handed {
        Handed::Many { requests } => (requests, true),
        Handed::One(one) => (vec![one], false),
    };
    // The forwarding node parsed these already: a refusal here is a difference between the nodes' versions.
    let mut requests = Vec::with_capacity(batches.len());
    for (i, forwarded) in batches.into_iter().enumerate() {
        match parse_submission(&serde_json::Value::Array(forwarded.events)) {
            Ok(events) => requests.push(AppendRequest {
                events,
                source: forwarded.source,
            }),
            Err(e) => {
                return HttpResponse::BadRequest()
                    .body(format!("forwarded batch {i} does not parse here: {e:?}"))
            }
        }
    }
    // Every batch queued before any is awaited (an append is queued when made): they share the writer's groups.
    let appends: Vec<_> = requests
        .into_iter()
        .map(|r| state.log.append_here(r))
        .collect();
    let mut answers = Vec::with_capacity(appends.len());
    for append in appends {
        answers.push(match append.await {
            Ok(outcome) => store::AppendAnswer::Outcome(outcome),
            Err(e) => store::AppendAnswer::Error(e),
        });
    }
    if many {
        HttpResponse::Ok().json(answers)
    } else {
        HttpResponse::Ok().json(answers.pop())
    }
}
