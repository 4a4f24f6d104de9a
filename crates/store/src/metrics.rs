//! What the writer counts, read by the server's metrics and by benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed upper bounds, updated without locks (the writer must never wait for a reader).
#[derive(Debug)]
pub struct Buckets {
    pub bounds: &'static [f64],
    /// One count per bound, then one for values above the last; not cumulative.
    pub counts: Vec<AtomicU64>,
    /// The sum of observed values, in millionths.
    pub sum_micros: AtomicU64,
}

impl Buckets {
    pub(crate) fn new(bounds: &'static [f64]) -> Buckets {
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }
}

/// Counters the writer keeps, for metrics and benchmarks.
#[derive(Debug)]
pub struct WriterMetrics {
    pub groups: AtomicU64,
    pub events: AtomicU64,
    pub write_micros: AtomicU64,
    /// Events per committed group.
    pub group_events: Buckets,
    /// Seconds to write, flush and fsync a group.
    pub commit_seconds: Buckets,
}

impl Default for WriterMetrics {
    fn default() -> WriterMetrics {
        WriterMetrics {
            groups: AtomicU64::new(0),
            events: AtomicU64::new(0),
            write_micros: AtomicU64::new(0),
            group_events: Buckets::new(&[
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
            ]),
            commit_seconds: Buckets::new(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        }
    }
}

impl WriterMetrics {
    pub(crate) fn record_group(&self, events: usize, took: std::time::Duration) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.write_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.group_events.observe(events as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }
}
