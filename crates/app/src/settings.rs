//! The service's settings: one typed struct, layered once (`Settings::layered`): the defaults, then a TOML file,
//! then what the environment and the flags give.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The data directory when none is named.
pub const DEFAULT_DATA: &str = "casetrail-data";

/// A node's own directory when the log is on PostgreSQL and none is named (`--state`).
pub const DEFAULT_STATE: &str = "casetrail-state";

/// Whether a `data` setting names a PostgreSQL database rather than a directory.
pub fn is_database_url(data: &str) -> bool {
    data.starts_with("postgres://") || data.starts_with("postgresql://")
}

/// The signing key's file name in the data directory (beside sled's files, which never use this name).
pub const AUDIT_KEY_FILE: &str = "audit-signing.key";

/// The service's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The sled data directory; with the log on PostgreSQL, this node's own state directory (indicator snapshots,
    /// and by default its signing key's file): derived data, never required.
    pub data: PathBuf,
    /// The log's PostgreSQL database (`data = "postgres://…"`, or `CASETRAIL_DATA`); `None`: the log is on sled in
    /// `data`.
    pub database: Option<String>,
    /// sled's page cache, in MiB.
    pub cache_mb: u64,
    /// How the process logs: `text` or `json` lines on stderr.
    pub log_format: LogFormat,
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
    /// How long a write to the disk may go unfinished before the disk is taken as stalled (writes answered 503
    /// from then on, until restart); also what the work at stop gets, after requests in flight.
    pub stall_secs: u64,
    /// With the log on PostgreSQL: where the other nodes reach this one to hand it their batches when it is the
    /// elected writer (`http://host:port`); `auto` (default) derives it from the listen address when that names
    /// one host (not `0.0.0.0`); `off`: this node writes its own batches and never takes the role.
    pub advertise: String,
    /// The reporting cut of months, quarters and years: calendar (default), decree-09, month-before or day-N.
    /// A report profile that names its own cut is computed under that one.
    pub cut: domain::calendar::Cut,
    /// A scorecard TOML file; the default scorecard when `None`.
    pub scorecard: Option<PathBuf>,
    /// A directory of report-profile TOML files, offered beside the built-in ones.
    pub profiles: Option<PathBuf>,
    /// Write an indicator snapshot every this many events.
    pub snapshot_every_events: u64,
    /// The DVCQG sync adapter's mapping file (`docs/integration.md`); the portal's own codes when `None`.
    pub dvcqg_mapping: Option<PathBuf>,
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
            database: None,
            cache_mb: 512,
            log_format: LogFormat::Text,
            clock_skew_secs: domain::stream::DEFAULT_CLOCK_SKEW_SECS,
            body_limit_bytes: 1024 * 1024,
            public_indicators: true,
            workers: 2,
            shutdown_timeout_secs: 30,
            stall_secs: 30,
            advertise: "auto".into(),
            cut: domain::calendar::Cut::Calendar,
            scorecard: None,
            profiles: None,
            snapshot_every_events: 250_000,
            dvcqg_mapping: None,
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

    /// The DVCQG adapter's mapping: the file named, read and checked, or the portal's own codes.
    pub fn dvcqg_mapping(&self) -> Result<dvcqg::Mapping, String> {
        match &self.dvcqg_mapping {
            None => Ok(dvcqg::Mapping::portal()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                dvcqg::Mapping::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }

    pub fn store_config(&self) -> store::Config {
        let mut config = store::Config::new(&self.data);
        config.cache_capacity_bytes = self.cache_mb * 1024 * 1024;
        config.clock_skew = chrono::Duration::seconds(self.clock_skew_secs);
        config.stall = std::time::Duration::from_secs(self.stall_secs.max(1));
        config
    }

    /// How long a stop may take at most, from the signal to the process's end: requests in flight get
    /// `shutdown_timeout_secs`, then the work at stop (a snapshot, a last checkpoint, the log's close)
    /// `stall_secs`. Past it the process exits anyway (status 1), saying what did not finish; everything
    /// acknowledged is on disk already.
    pub fn stop_bound(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.shutdown_timeout_secs + self.stall_secs.max(1))
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::new(DEFAULT_DATA)
    }
}

/// How the process logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log_format must be text or json, not {other:?}")),
        }
    }
}

/// One layer of settings: what a file, or the environment and the flags, give. A setting left out keeps the value
/// of the layer below. In a file, keys are the long flags with `_` for `-`; unknown keys are refused, so that a
/// typo is an error and not a silent default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub listen: Option<SocketAddr>,
    /// A directory (sled) or a `postgres://` connection string.
    pub data: Option<PathBuf>,
    /// With the log on PostgreSQL: the node's own state directory.
    pub state: Option<PathBuf>,
    pub cache_mb: Option<u64>,
    pub log_format: Option<LogFormat>,
    pub clock_skew_secs: Option<i64>,
    pub body_limit_bytes: Option<usize>,
    pub public_indicators: Option<bool>,
    pub workers: Option<usize>,
    pub cut: Option<domain::calendar::Cut>,
    pub scorecard: Option<PathBuf>,
    pub profiles: Option<PathBuf>,
    #[serde(alias = "snapshot_every")]
    pub snapshot_every_events: Option<u64>,
    pub dvcqg_mapping: Option<PathBuf>,
    pub audit_key: Option<PathBuf>,
    pub audit_origin: Option<String>,
    pub checkpoint_every_secs: Option<u64>,
    pub checkpoint_every_events: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_subscribers: Option<usize>,
    pub shutdown_timeout_secs: Option<u64>,
    pub stall_secs: Option<u64>,
    pub advertise: Option<String>,
}

impl Layer {
    /// The layer a TOML file gives.
    pub fn from_file(path: &Path) -> Result<Layer, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Settings {
    /// The defaults, then `file`'s layer, then `given` (the environment and the flags): the one place settings
    /// are layered.
    pub fn layered(file: Option<&Path>, given: Layer) -> Result<Settings, String> {
        let mut settings = Settings::default();
        let mut state = None;
        if let Some(path) = file {
            let layer = Layer::from_file(path)?;
            state = layer.state.clone().or(state);
            settings.apply(layer);
        }
        state = given.state.clone().or(state);
        settings.apply(given);
        settings.place(state);
        Ok(settings)
    }

    /// Settles where things are: a `data` that names a database moves to `database`, and `data` becomes the node's
    /// state directory (`state`, or [`DEFAULT_STATE`]). A state directory given with a sled log is refused.
    pub fn place(&mut self, state: Option<PathBuf>) {
        let url = self
            .data
            .to_str()
            .filter(|d| is_database_url(d))
            .map(str::to_owned);
        if let Some(url) = url {
            self.database = Some(url);
            self.data = state.unwrap_or_else(|| DEFAULT_STATE.into());
        }
    }

    /// The settings that change what is accepted or counted, one per line, each file by its content's SHA-256:
    /// what every node on one database must share (a node whose lines differ from the log's refuses to start).
    pub fn decision_rules(&self) -> Result<String, String> {
        use sha2::Digest;
        let file = |name: &str, path: &Option<PathBuf>| -> Result<String, String> {
            Ok(match path {
                None => format!("{name} = built-in"),
                Some(p) if p.is_dir() => {
                    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                        .map_err(|e| format!("{}: {e}", p.display()))?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                        .collect();
                    entries.sort();
                    let mut digest = sha2::Sha256::new();
                    for e in &entries {
                        digest.update(e.file_name().unwrap_or_default().as_encoded_bytes());
                        digest.update(
                            std::fs::read(e).map_err(|err| format!("{}: {err}", e.display()))?,
                        );
                    }
                    format!("{name} sha256 = {:x}", digest.finalize())
                }
                Some(p) => {
                    let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    format!("{name} sha256 = {:x}", sha2::Sha256::digest(&bytes))
                }
            })
        };
        Ok([
            format!("clock_skew_secs = {}", self.clock_skew_secs),
            format!("cut = {}", self.cut),
            file("scorecard", &self.scorecard)?,
            file("profiles", &self.profiles)?,
            file("dvcqg_mapping", &self.dvcqg_mapping)?,
        ]
        .join("\n"))
    }

    fn apply(&mut self, layer: Layer) {
        macro_rules! apply {
            ($($field:ident),*) => {$(
                if let Some(v) = layer.$field {
                    self.$field = v;
                }
            )*};
            // Settings that are optional themselves: a layer that names one sets it.
            (optional: $($field:ident),*) => {$(
                if layer.$field.is_some() {
                    self.$field = layer.$field;
                }
            )*};
        }
        apply!(
            listen,
            data,
            cache_mb,
            log_format,
            clock_skew_secs,
            body_limit_bytes,
            public_indicators,
            workers,
            cut,
            snapshot_every_events,
            checkpoint_every_secs,
            checkpoint_every_events,
            request_timeout_secs,
            max_connections,
            max_subscribers,
            shutdown_timeout_secs,
            stall_secs,
            advertise
        );
        apply!(optional: scorecard, profiles, dvcqg_mapping, audit_key, audit_origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layer_overrides_the_one_below_and_only_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("casetrail.toml");
        std::fs::write(
            &file,
            "workers = 7\nbody_limit_bytes = 600\nsnapshot_every = 9\nlog_format = \"json\"\ncut = \"decree-09\"\n",
        )
        .unwrap();
        let given = Layer {
            body_limit_bytes: Some(100_000),
            data: Some("elsewhere".into()),
            ..Layer::default()
        };
        let s = Settings::layered(Some(&file), given).unwrap();
        let defaults = Settings::default();
        // The file over the defaults.
        assert_eq!(s.workers, 7);
        assert_eq!(s.snapshot_every_events, 9);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.cut, domain::calendar::Cut::Decree09);
        // The flags over the file.
        assert_eq!(s.body_limit_bytes, 100_000);
        assert_eq!(s.data, PathBuf::from("elsewhere"));
        // Whatever nobody named stays at its default.
        assert_eq!(s.listen, defaults.listen);
        assert_eq!(s.max_subscribers, defaults.max_subscribers);
        assert_eq!(
            s.audit_key_path(),
            PathBuf::from("elsewhere").join(AUDIT_KEY_FILE)
        );
        // No file, nothing given: the defaults.
        let plain = Settings::layered(None, Layer::default()).unwrap();
        assert_eq!(plain.data, PathBuf::from(DEFAULT_DATA));
        assert_eq!(plain.workers, defaults.workers);
    }

    #[test]
    fn an_unknown_key_or_a_bad_value_in_the_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("casetrail.toml");
        std::fs::write(&file, "worker = 3\n").unwrap();
        let why = Settings::layered(Some(&file), Layer::default()).unwrap_err();
        assert!(why.contains("worker"), "{why}");
        std::fs::write(&file, "log_format = \"yaml\"\n").unwrap();
        let why = Settings::layered(Some(&file), Layer::default()).unwrap_err();
        assert!(why.contains("yaml"), "{why}");
        let missing = dir.path().join("none.toml");
        let why = Settings::layered(Some(&missing), Layer::default()).unwrap_err();
        assert!(why.contains("none.toml"), "{why}");
    }

    #[test]
    fn the_dvcqg_mapping_is_the_portals_or_the_file_named_and_a_broken_one_is_refused_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::new(dir.path());
        assert_eq!(settings.dvcqg_mapping().unwrap().id, "portal");
        let file = dir.path().join("site.toml");
        std::fs::write(
            &file,
            dvcqg::mapping::PORTAL.replace("id = \"portal\"", "id = \"site\""),
        )
        .unwrap();
        settings.dvcqg_mapping = Some(file.clone());
        assert_eq!(settings.dvcqg_mapping().unwrap().id, "site");
        std::fs::write(&file, "id = \"site\"\n").unwrap();
        let why = settings.dvcqg_mapping().unwrap_err();
        assert!(why.contains("site.toml"), "{why}");
        settings.dvcqg_mapping = Some(dir.path().join("none.toml"));
        assert!(settings.dvcqg_mapping().unwrap_err().contains("none.toml"));
    }
}
