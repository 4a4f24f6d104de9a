//! The sled log's tests: the conformance suite, persistence, the seeded simulation, rebuild, and locking.

mod simulation;
mod sled;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use store::Config;

/// A config whose clock starts at 1 June 2019 and moves one second per reading.
pub fn config(dir: &std::path::Path) -> Config {
    let t = Arc::new(AtomicI64::new(1_559_347_200));
    Config::new(dir).clock(move || {
        chrono::DateTime::from_timestamp(t.fetch_add(1, Ordering::Relaxed), 0).unwrap()
    })
}
