//! Prometheus metrics: requests and their latencies by route, appends, group sizes, write times, log size.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::sync::atomic::Ordering;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "casetrail_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "casetrail_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "method"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        Metrics {
            registry,
            requests,
            latency,
        }
    }

    /// The text exposition, with the log's own counters read at this moment.
    pub fn render(&self, state: &crate::State) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        let w = state.log.metrics();
        let head = state.log.head();
        let extra = format!(
            "# HELP casetrail_log_events Events in the log.\n# TYPE casetrail_log_events gauge\ncasetrail_log_events {}\n\
             # HELP casetrail_appended_events_total Events appended since start.\n# TYPE casetrail_appended_events_total counter\ncasetrail_appended_events_total {}\n\
             # HELP casetrail_commit_groups_total Groups committed since start (one flush and fsync each).\n# TYPE casetrail_commit_groups_total counter\ncasetrail_commit_groups_total {}\n\
             # HELP casetrail_commit_seconds_total Time spent writing, flushing and fsyncing groups.\n# TYPE casetrail_commit_seconds_total counter\ncasetrail_commit_seconds_total {}\n\
             # HELP casetrail_checkpoint_events Events the latest signed checkpoint commits to (the log's size minus this is not yet signed).\n# TYPE casetrail_checkpoint_events gauge\ncasetrail_checkpoint_events {}\n",
            head.size,
            w.events.load(Ordering::Relaxed),
            w.groups.load(Ordering::Relaxed),
            w.write_micros.load(Ordering::Relaxed) as f64 / 1e6,
            state
                .log
                .latest_checkpoint()
                .ok()
                .flatten()
                .map_or(0, |c| c.size),
        );
        let mut text = String::from_utf8(out).expect("prometheus text is UTF-8") + &extra;
        histogram(
            &mut text,
            "casetrail_commit_group_events",
            "Events per committed group.",
            &w.group_events,
        );
        histogram(
            &mut text,
            "casetrail_commit_duration_seconds",
            "Time to write, flush and fsync one group.",
            &w.commit_seconds,
        );
        text
    }
}

/// Renders the store's fixed buckets in the Prometheus text format (cumulative counts).
fn histogram(out: &mut String, name: &str, help: &str, b: &store::Buckets) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, count) in b.bounds.iter().zip(&b.counts) {
        cumulative += count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += b.counts[b.bounds.len()].load(Ordering::Relaxed);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(
        out,
        "{name}_sum {}",
        b.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// Middleware: counts and times every request by its route pattern (not its path, which would explode labels).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let state = req.app_data::<web::Data<crate::State>>().cloned();
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    if let Some(state) = state {
        let m = &state.metrics;
        m.requests
            .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
            .inc();
        m.latency
            .with_label_values(&[route.as_str(), method.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}
