//! The service's settings: one typed struct, whoever starts the service.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The signing key's file name in the data directory (beside sled's files, which never use this name).
pub const AUDIT_KEY_FILE: &str = "audit-signing.key";

/// The service's settings (flags, `CASETRAIL_…` environment variables).
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub cache_mb: u64,
    /// How far ahead of the server clock a business time may be.
    pub clock_skew_secs: i64,
    /// The largest request body accepted; larger ones are refused before they are read whole.
    pub body_limit_bytes: usize,
    /// Whether indicator tables and the dashboard are readable without a token.
    pub public_indicators: bool,
    /// HTTP worker threads.
    pub workers: usize,
    /// How long a graceful stop waits for requests in flight.
    pub shutdown_timeout_secs: u64,
    /// The reporting cut of quarters and years: calendar (default) or decree-09.
    pub cut: domain::calendar::Cut,
    /// A scorecard TOML file; the default scorecard when `None`.
    pub scorecard: Option<PathBuf>,
    /// Write an indicator snapshot every this many events.
    pub snapshot_every: u64,
    /// The checkpoint signing key's file; `<data>/audit-signing.key` when `None` (made there on first start).
    pub audit_key: Option<PathBuf>,
    /// The log's origin (its name in checkpoints), used only when a new key is made.
    pub audit_origin: Option<String>,
    /// Sign a checkpoint when this many seconds have passed since the last one and events have arrived (0: never
    /// by time).
    pub checkpoint_every_secs: u64,
    /// Sign a checkpoint when this many events have arrived since the last one (0: never by count).
    pub checkpoint_every_events: u64,
    /// How long a request may take to arrive whole, its body included.
    pub request_timeout_secs: u64,
    /// Connections served at once (lowered to fit the file-descriptor limit); beyond it: 503 and close.
    pub max_connections: usize,
    /// Live-stream subscribers at once; beyond it: 503 with Retry-After.
    pub max_subscribers: usize,
}

impl Settings {
    pub fn new(data: impl Into<PathBuf>) -> Settings {
        Settings {
            listen: "127.0.0.1:8080".parse().expect("a valid address"),
            data: data.into(),
            cache_mb: 512,
            clock_skew_secs: domain::stream::DEFAULT_CLOCK_SKEW_SECS,
            body_limit_bytes: 1024 * 1024,
            public_indicators: true,
            workers: 2,
            shutdown_timeout_secs: 30,
            cut: domain::calendar::Cut::Calendar,
            scorecard: None,
            snapshot_every: 250_000,
            audit_key: None,
            audit_origin: None,
            checkpoint_every_secs: 60,
            checkpoint_every_events: 10_000,
            request_timeout_secs: 30,
            max_connections: 1_000,
            max_subscribers: 1_000,
        }
    }

    /// Where the checkpoint signing key is read from (and made, on first start).
    pub fn audit_key_path(&self) -> PathBuf {
        self.audit_key
            .clone()
            .unwrap_or_else(|| self.data.join(AUDIT_KEY_FILE))
    }

    pub fn store_config(&self) -> store::Config {
        let mut config = store::Config::new(&self.data);
        config.cache_capacity_bytes = self.cache_mb * 1024 * 1024;
        config.clock_skew = chrono::Duration::seconds(self.clock_skew_secs);
        config
    }
}
