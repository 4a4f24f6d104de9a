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
    /// The writer, on the group it is committing now.
    pub writing: Busy,
    /// The indexer, on the delta it is writing now.
    pub indexing: Busy,
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
            writing: Busy::default(),
            indexing: Busy::default(),
        }
    }
}

impl WriterMetrics {
    pub fn record_group(&self, events: usize, took: std::time::Duration) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.write_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.group_events.observe(events as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }
}

/// How long a thread of the log has been on the piece of work it is doing, if it is doing one: what tells a disk
/// that stopped answering from a slow one.
#[derive(Debug)]
pub struct Busy {
    /// When the work now under way began: milliseconds after `origin`, plus one; 0 between pieces of work.
    started: AtomicU64,
    origin: std::time::Instant,
}

impl Default for Busy {
    fn default() -> Busy {
        Busy {
            started: AtomicU64::new(0),
            origin: std::time::Instant::now(),
        }
    }
}

impl Busy {
    /// Runs `work`, counted as under way while it runs.
    pub fn on<T>(&self, work: impl FnOnce() -> T) -> T {
        let started = self.origin.elapsed().as_millis() as u64 + 1;
        self.started.store(started, Ordering::Relaxed);
        let done = work();
        self.started.store(0, Ordering::Relaxed);
        done
    }

    /// How long the work under way has taken so far; `None` between pieces of work.
    pub fn for_how_long(&self) -> Option<std::time::Duration> {
        match self.started.load(Ordering::Relaxed) {
            0 => None,
            started => Some(
                self.origin
                    .elapsed()
                    .saturating_sub(std::time::Duration::from_millis(started - 1)),
            ),
        }
    }
}
