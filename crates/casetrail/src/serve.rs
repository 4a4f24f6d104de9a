//! `casetrail serve` and `casetrail token`.

use crate::commands::Result;
use clap::{Args, Subcommand};
use domain::{AgencyCode, Role};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use store::{EventLog, SledLog};

#[derive(Args)]
pub struct ServeArgs {
    /// A TOML file of settings (keys as the long flags, with `_` for `-`: listen, data, cache_mb,
    /// clock_skew_secs, body_limit_bytes, public_indicators, workers, log_format, cut, scorecard,
    /// snapshot_every, audit_key, audit_origin, checkpoint_every_secs, checkpoint_every_events, request_timeout_secs,
    /// max_connections, max_subscribers). Flags and CASETRAIL_…
    /// variables override it.
    #[arg(long, env = "CASETRAIL_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Address to listen on; port 0 picks a free port (the first line printed says which).
    #[arg(long, env = "CASETRAIL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How far ahead of the server clock an event's occurred_at may be, in seconds.
    #[arg(long, env = "CASETRAIL_CLOCK_SKEW_SECS", default_value_t = 300)]
    clock_skew_secs: i64,
    /// The largest request body accepted, in bytes.
    #[arg(long, env = "CASETRAIL_BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    body_limit_bytes: usize,
    /// Whether indicator tables and the dashboard are public.
    #[arg(long, env = "CASETRAIL_PUBLIC_INDICATORS", default_value_t = true, action = clap::ArgAction::Set)]
    public_indicators: bool,
    /// HTTP worker threads.
    #[arg(long, env = "CASETRAIL_WORKERS", default_value_t = 2)]
    workers: usize,
    /// Log format: text or json.
    #[arg(long, env = "CASETRAIL_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(flatten)]
    pub indicators: IndicatorArgs,
    #[command(flatten)]
    pub key: crate::audit_cmd::KeyArgs,
    /// Sign a checkpoint when this many seconds have passed since the last and events have arrived (0: never by
    /// time).
    #[arg(long, env = "CASETRAIL_CHECKPOINT_EVERY_SECS", default_value_t = 60)]
    checkpoint_every_secs: u64,
    /// Sign a checkpoint when this many events have arrived since the last (0: never by count).
    #[arg(
        long,
        env = "CASETRAIL_CHECKPOINT_EVERY_EVENTS",
        default_value_t = 10_000
    )]
    checkpoint_every_events: u64,
    /// Seconds a request may take to arrive whole, its body included; a body still arriving then is answered 408
    /// and its connection closed.
    #[arg(long, env = "CASETRAIL_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    request_timeout_secs: u64,
    /// Connections served at once; beyond it a request is answered 503 (with Retry-After) and its connection
    /// closed. Kept below the process's file-descriptor limit.
    #[arg(long, env = "CASETRAIL_MAX_CONNECTIONS", default_value_t = 1_000)]
    max_connections: usize,
    /// Live-stream subscribers served at once; beyond it: 503 with Retry-After.
    #[arg(long, env = "CASETRAIL_MAX_SUBSCRIBERS", default_value_t = 1_000)]
    max_subscribers: usize,
}

/// How indicator tables are computed; shared by `serve` and `report`.
#[derive(Args, Clone)]
pub struct IndicatorArgs {
    /// Reporting cut of quarters and years: calendar, or decree-09 (the 15th of the month before to the 14th).
    #[arg(long, env = "CASETRAIL_CUT", default_value = "calendar")]
    pub cut: domain::calendar::Cut,
    /// A scorecard TOML file (criteria, thresholds, points, sources); the built-in default otherwise.
    #[arg(long, env = "CASETRAIL_SCORECARD")]
    pub scorecard: Option<std::path::PathBuf>,
    /// Write an indicator snapshot every this many events (time travel replays from the nearest one).
    #[arg(long, env = "CASETRAIL_SNAPSHOT_EVERY", default_value_t = 250_000)]
    pub snapshot_every: u64,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once, alone on the last line, and stored only as a hash.
    Create {
        /// The token's name, recorded as `source` on every event it writes.
        #[arg(long)]
        name: String,
        /// ingest, analyst, auditor or admin.
        #[arg(long)]
        role: Role,
        /// For ingest tokens: the agency whose subtree it may write.
        #[arg(long)]
        agency: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by name.
    Revoke { name: String },
}

/// Settings a config file may give. Unknown keys are refused, so a typo is an error, not a silent default.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data: Option<std::path::PathBuf>,
    cache_mb: Option<u64>,
    clock_skew_secs: Option<i64>,
    body_limit_bytes: Option<usize>,
    public_indicators: Option<bool>,
    workers: Option<usize>,
    log_format: Option<String>,
    cut: Option<domain::calendar::Cut>,
    scorecard: Option<std::path::PathBuf>,
    snapshot_every: Option<u64>,
    audit_key: Option<std::path::PathBuf>,
    audit_origin: Option<String>,
    checkpoint_every_secs: Option<u64>,
    checkpoint_every_events: Option<u64>,
    request_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_subscribers: Option<usize>,
}

/// True when `id` was neither given as a flag nor in the environment.
fn defaulted(matches: &clap::ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        None | Some(clap::parser::ValueSource::DefaultValue)
    )
}

pub fn serve(
    data: &Path,
    cache_mb: u64,
    mut args: ServeArgs,
    top: &clap::ArgMatches,
) -> Result<ExitCode> {
    let sub = top.subcommand_matches("serve").expect("serve was matched");
    let file: FileSettings = match &args.config {
        None => FileSettings::default(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    // Flags and environment first, then the file, then the defaults.
    let data = match file.data {
        Some(d) if defaulted(top, "data") => d,
        _ => data.to_path_buf(),
    };
    let data = data.as_path();
    let cache_mb = match file.cache_mb {
        Some(c) if defaulted(top, "cache_mb") => c,
        _ => cache_mb,
    };
    macro_rules! from_file {
        ($($field:ident),*) => {$(
            if let Some(v) = file.$field {
                if defaulted(sub, stringify!($field)) {
                    args.$field = v;
                }
            }
        )*};
    }
    from_file!(
        listen,
        clock_skew_secs,
        body_limit_bytes,
        public_indicators,
        workers,
        log_format,
        checkpoint_every_secs,
        checkpoint_every_events,
        request_timeout_secs,
        max_connections,
        max_subscribers
    );
    if let (Some(v), true) = (file.audit_key, defaulted(sub, "audit_key")) {
        args.key.audit_key = Some(v);
    }
    if let (Some(v), true) = (file.audit_origin, defaulted(sub, "audit_origin")) {
        args.key.audit_origin = Some(v);
    }
    if let (Some(v), true) = (file.cut, defaulted(sub, "cut")) {
        args.indicators.cut = v;
    }
    if let (Some(v), true) = (file.scorecard, defaulted(sub, "scorecard")) {
        args.indicators.scorecard = Some(v);
    }
    if let (Some(v), true) = (file.snapshot_every, defaulted(sub, "snapshot_every")) {
        args.indicators.snapshot_every = v;
    }
    if !["text", "json"].contains(&args.log_format.as_str()) {
        return Err(format!("log_format must be text or json, not {:?}", args.log_format).into());
    }
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CASETRAIL_LOG")
                .unwrap_or_else(|_| "info".into()),
        );
    if args.log_format == "json" {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let mut settings = app::Settings::new(data);
    settings.listen = args.listen;
    settings.cache_mb = cache_mb;
    settings.clock_skew_secs = args.clock_skew_secs;
    settings.body_limit_bytes = args.body_limit_bytes;
    settings.public_indicators = args.public_indicators;
    settings.workers = args.workers;
    settings.cut = args.indicators.cut;
    settings.scorecard = args.indicators.scorecard.clone();
    settings.snapshot_every = args.indicators.snapshot_every;
    settings.audit_key = Some(args.key.path(data));
    settings.audit_origin = args.key.audit_origin.clone();
    settings.checkpoint_every_secs = args.checkpoint_every_secs;
    settings.checkpoint_every_events = args.checkpoint_every_events;
    settings.request_timeout_secs = args.request_timeout_secs;
    settings.max_connections = args.max_connections;
    settings.max_subscribers = args.max_subscribers;
    run_until_stopped(settings, |running, log| {
        // The first line says where to connect: tests and scripts that ask for port 0 read it.
        println!(
            "casetrail: listening on http://{} with {} events in {}",
            running.addr,
            log.head().size,
            data.display()
        );
    })
}

/// Opens the log, starts the server, calls `announce` once it listens, and serves until SIGTERM or Ctrl-C; then
/// stops gracefully (a snapshot of the indicator tables, a last signed checkpoint, the writer drained).
pub fn run_until_stopped(
    settings: app::Settings,
    announce: impl FnOnce(&server::Running, &SledLog),
) -> Result<ExitCode> {
    let log = Arc::new(SledLog::open(settings.store_config())?);
    actix_web::rt::System::new().block_on(async {
        let running = server::start(settings, log.clone())?;
        running.stop_on_signals();
        announce(&running, &log);
        use std::io::Write;
        std::io::stdout().flush()?;
        let server::Running { server, state, .. } = running;
        server.await?;
        for why in state.app.at_stop() {
            eprintln!("casetrail: {why}");
        }
        std::io::Result::Ok(())
    })?;
    // The server has stopped accepting and answered what was in flight; the writer now drains and flushes.
    log.close();
    println!(
        "casetrail: stopped; the log has {} events, root {}",
        log.head().size,
        log.head().root
    );
    Ok(ExitCode::SUCCESS)
}

pub fn token(data: &Path, what: TokenCommand) -> Result<ExitCode> {
    let log = crate::commands::open(data)?;
    match what {
        TokenCommand::Create { name, role, agency } => {
            let agency = agency
                .map(|a| AgencyCode::parse(&a))
                .transpose()
                .map_err(|e| format!("--agency {e}"))?;
            let issued = app::tokens::issue(&log, name, role, agency, chrono::Utc::now())
                .map_err(crate::commands::explain)?;
            let (credential, token) = (issued.credential, issued.token);
            let scope = credential
                .agency
                .as_ref()
                .map(|a| format!(" for {a} and below"))
                .unwrap_or_default();
            println!(
                "created {} token {:?}{scope}; it is shown once, keep it safe:",
                credential.role, credential.name
            );
            println!("{token}");
        }
        TokenCommand::List => {
            for c in log.credentials()? {
                let state = c
                    .revoked_at
                    .map(|t| format!("revoked {t}"))
                    .unwrap_or_else(|| "live".into());
                let scope = c
                    .agency
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<24} {:<8} {:<16} created {}  {state}",
                    c.name, c.role, scope, c.created_at
                );
            }
        }
        TokenCommand::Revoke { name } => {
            if !log.revoke_credential(&name, chrono::Utc::now())? {
                return Err(format!("no live token named {name:?}").into());
            }
            println!("revoked {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A minimal HTTP/1.0 GET over a plain socket: enough for a health check, with no client library.
pub fn probe(url: &str) -> Result<ExitCode> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let timeout = std::time::Duration::from_secs(3);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .ok_or("--url names no address")?;
    let mut conn = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    let status = answer.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        println!("ok: {url}");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("{url} answered {:?}", answer.lines().next().unwrap_or("")).into())
    }
}
