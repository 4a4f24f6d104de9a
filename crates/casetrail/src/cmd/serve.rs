//! `casetrail serve` and `casetrail token`.

use crate::cmd::Result;
use clap::{Args, Subcommand};
use domain::{AgencyCode, Role};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// `serve`'s settings: each left out keeps the config file's value, or else the default shown.
#[derive(Args)]
pub struct ServeArgs {
    /// A TOML file of settings (keys as the long flags, with `_` for `-`: listen, data, cache_mb,
    /// clock_skew_secs, body_limit_bytes, public_indicators, workers, log_format, cut, scorecard, profiles,
    /// snapshot_every, audit_key, audit_origin, checkpoint_every_secs, checkpoint_every_events, request_timeout_secs,
    /// max_connections, max_subscribers, dvcqg_mapping, shutdown_timeout_secs, stall_secs). Flags and CASETRAIL_…
    /// variables override it.
    #[arg(long, env = "CASETRAIL_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Address to listen on; port 0 picks a free port (the first line printed says which) [default: 127.0.0.1:8080].
    #[arg(long, env = "CASETRAIL_LISTEN")]
    listen: Option<SocketAddr>,
    /// How far ahead of the server clock an event's occurred_at may be, in seconds [default: 300].
    #[arg(long, env = "CASETRAIL_CLOCK_SKEW_SECS")]
    clock_skew_secs: Option<i64>,
    /// The largest request body accepted, in bytes [default: 1048576].
    #[arg(long, env = "CASETRAIL_BODY_LIMIT_BYTES")]
    body_limit_bytes: Option<usize>,
    /// Whether indicator tables and the dashboard are public [default: true].
    #[arg(long, env = "CASETRAIL_PUBLIC_INDICATORS", action = clap::ArgAction::Set)]
    public_indicators: Option<bool>,
    /// HTTP worker threads [default: 2].
    #[arg(long, env = "CASETRAIL_WORKERS")]
    workers: Option<usize>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "CASETRAIL_LOG_FORMAT")]
    log_format: Option<app::LogFormat>,
    #[command(flatten)]
    pub indicators: IndicatorArgs,
    #[command(flatten)]
    pub key: crate::cmd::audit::KeyArgs,
    /// Sign a checkpoint when this many seconds have passed since the last and events have arrived (0: never by
    /// time) [default: 60].
    #[arg(long, env = "CASETRAIL_CHECKPOINT_EVERY_SECS")]
    checkpoint_every_secs: Option<u64>,
    /// Sign a checkpoint when this many events have arrived since the last (0: never by count) [default: 10000].
    #[arg(long, env = "CASETRAIL_CHECKPOINT_EVERY_EVENTS")]
    checkpoint_every_events: Option<u64>,
    /// Seconds a request may take to arrive whole, its body included; a body still arriving then is answered 408
    /// and its connection closed [default: 30].
    #[arg(long, env = "CASETRAIL_REQUEST_TIMEOUT_SECS")]
    request_timeout_secs: Option<u64>,
    /// Connections served at once; beyond it a request is answered 503 (with Retry-After) and its connection
    /// closed. Kept below the process's file-descriptor limit [default: 1000].
    #[arg(long, env = "CASETRAIL_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Live-stream subscribers served at once; beyond it: 503 with Retry-After [default: 1000].
    #[arg(long, env = "CASETRAIL_MAX_SUBSCRIBERS")]
    max_subscribers: Option<usize>,
    /// The DVCQG sync adapter's mapping, a TOML file of the site's codes (docs/integration.md); the portal's own
    /// codes otherwise.
    #[arg(long, env = "CASETRAIL_DVCQG_MAPPING")]
    dvcqg_mapping: Option<std::path::PathBuf>,
    /// Seconds a graceful stop waits for requests in flight [default: 30].
    #[arg(long, env = "CASETRAIL_SHUTDOWN_TIMEOUT_SECS")]
    shutdown_timeout_secs: Option<u64>,
    /// Seconds a write to the disk may go unfinished before the disk is taken as stalled: writes are answered 503
    /// from then on, until a restart. The work at stop gets as long, after the requests in flight; a stop ends
    /// within the two [default: 30].
    #[arg(long, env = "CASETRAIL_STALL_SECS")]
    stall_secs: Option<u64>,
    /// With the log on PostgreSQL: where the other nodes reach this one (`http://host:port`) to hand it their
    /// batches when it is the elected writer; `auto` derives it from --listen when that names one host; `off`:
    /// this node writes its own batches and never takes the role (docs/scaling.md) [default: auto].
    #[arg(long, env = "CASETRAIL_ADVERTISE")]
    advertise: Option<String>,
}

/// How indicator tables are computed; shared by `serve` and `report`.
#[derive(Args, Clone)]
pub struct IndicatorArgs {
    /// Reporting cut of months, quarters and years: calendar; decree-09 (the 15th of the month before to the
    /// 14th); day-N (from day N of the month before); month-before (= day-1) [default: calendar]. A report
    /// profile that names its own cut uses that one.
    #[arg(long, env = "CASETRAIL_CUT")]
    pub cut: Option<domain::calendar::Cut>,
    /// A scorecard TOML file (criteria, thresholds, points, sources); the built-in default otherwise.
    #[arg(long, env = "CASETRAIL_SCORECARD")]
    pub scorecard: Option<std::path::PathBuf>,
    /// A directory of report-profile TOML files (docs/indicators.md), offered beside the built-in ones.
    #[arg(long, env = "CASETRAIL_PROFILES")]
    pub profiles: Option<std::path::PathBuf>,
    /// Write an indicator snapshot every this many events (time travel replays from the nearest one)
    /// [default: 250000].
    #[arg(long = "snapshot-every", env = "CASETRAIL_SNAPSHOT_EVERY")]
    pub snapshot_every_events: Option<u64>,
}

impl IndicatorArgs {
    /// The settings of the offline commands (`report`, `check-report`): these flags over the defaults, for `data`.
    pub fn settings(
        &self,
        data: &crate::cmd::DataDir,
    ) -> std::result::Result<app::Settings, String> {
        app::Settings::layered(
            None,
            app::Layer {
                data: Some(data.path.clone()),
                ..self.layer()
            },
        )
    }

    /// These flags as a settings layer.
    pub fn layer(&self) -> app::Layer {
        app::Layer {
            cut: self.cut,
            scorecard: self.scorecard.clone(),
            profiles: self.profiles.clone(),
            snapshot_every_events: self.snapshot_every_events,
            ..app::Layer::default()
        }
    }
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

pub fn serve(dir: &crate::cmd::DataDir, args: ServeArgs) -> Result<ExitCode> {
    let given = app::Layer {
        listen: args.listen,
        data: dir.given.then(|| {
            dir.database
                .clone()
                .map_or_else(|| dir.path.clone(), Into::into)
        }),
        state: dir.database.is_some().then(|| dir.path.clone()),
        cache_mb: dir.cache_mb_given,
        log_format: args.log_format,
        clock_skew_secs: args.clock_skew_secs,
        body_limit_bytes: args.body_limit_bytes,
        public_indicators: args.public_indicators,
        workers: args.workers,
        audit_key: args.key.audit_key.clone(),
        audit_origin: args.key.audit_origin.clone(),
        checkpoint_every_secs: args.checkpoint_every_secs,
        checkpoint_every_events: args.checkpoint_every_events,
        request_timeout_secs: args.request_timeout_secs,
        max_connections: args.max_connections,
        max_subscribers: args.max_subscribers,
        dvcqg_mapping: args.dvcqg_mapping.clone(),
        shutdown_timeout_secs: args.shutdown_timeout_secs,
        stall_secs: args.stall_secs,
        advertise: args.advertise.clone(),
        ..args.indicators.layer()
    };
    let settings = app::Settings::layered(args.config.as_deref(), given)?;
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CASETRAIL_LOG")
                .unwrap_or_else(|_| "info".into()),
        );
    if settings.log_format == app::LogFormat::Json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let data = match &settings.database {
        Some(url) => pglog::redact(url),
        None => settings.data.display().to_string(),
    };
    run_until_stopped(settings, |running, log| {
        // The first line says where to connect: tests and scripts that ask for port 0 read it.
        println!(
            "casetrail: listening on http://{} with {} events in {}",
            running.addr,
            log.head().size,
            data
        );
    })
}

/// Where the other nodes reach this one, from `--advertise` (`auto`, `off`, or `http://host:port`) and the
/// address it listens on: `None` for `off`, and for `auto` when it listens on every address.
fn advertised(
    given: &str,
    listen: std::net::SocketAddr,
) -> std::result::Result<Option<String>, String> {
    match given {
        "off" => Ok(None),
        "auto" if listen.ip().is_unspecified() => Ok(None),
        "auto" => Ok(Some(format!("http://{listen}"))),
        url if url.starts_with("http://") && url.len() > "http://".len() => {
            Ok(Some(url.trim_end_matches('/').to_owned()))
        }
        other => Err(format!(
            "--advertise {other:?}: expected auto, off, or http://host:port (where the other nodes reach this one)"
        )),
    }
}

/// Opens the log, starts the server, calls `announce` once it listens, and serves until SIGTERM or Ctrl-C; then
/// stops gracefully (a snapshot of the indicator tables, a last signed checkpoint, the writer drained).
pub fn run_until_stopped(
    settings: app::Settings,
    announce: impl FnOnce(&server::Running, &dyn store::Store),
) -> Result<ExitCode> {
    let log = crate::cmd::open_settings(&settings, false)?;
    let phase = Phase::default();
    let bound = settings.stop_bound();
    actix_web::rt::System::new().block_on(async {
        let advertise = settings.advertise.clone();
        let on_postgres = settings.database.is_some();
        let running = server::start(settings, log.clone())?;
        running.stop_on_signals();
        if on_postgres {
            let address = advertised(&advertise, running.addr).map_err(std::io::Error::other)?;
            if address.is_none() && advertise == "auto" {
                eprintln!("casetrail: listening on every address ({}): give --advertise http://host:port so that the other nodes can hand this one their batches when it is elected; until then it writes its own", running.addr);
            }
            log.elect(address, running.state.app.node_secret().to_owned());
        }
        let mut stopping = running.state.stopping.subscribe();
        let watched = phase.clone();
        actix_web::rt::spawn(async move {
            if stopping.wait_for(|s| *s).await.is_ok() {
                watched.bound(bound);
            }
        });
        announce(&running, &*log);
        use std::io::Write;
        std::io::stdout().flush()?;
        let server::Running { server, state, .. } = running;
        server.await?;
        phase.now("writing an indicator snapshot and signing a last checkpoint");
        for why in state.app.at_stop() {
            eprintln!("casetrail: {why}");
        }
        phase.now("ending the runtime");
        std::io::Result::Ok(())
    })?;
    // The server has stopped accepting and answered what was in flight; the writer now drains and flushes.
    phase.now("closing the log");
    log.close();
    println!(
        "casetrail: stopped; the log has {} events, root {}",
        log.head().size,
        log.head().root
    );
    Ok(ExitCode::SUCCESS)
}

/// What a stop is doing now, for the watchdog that bounds it.
#[derive(Clone)]
struct Phase(Arc<std::sync::Mutex<&'static str>>);

impl Default for Phase {
    fn default() -> Phase {
        Phase(Arc::new(std::sync::Mutex::new(
            "answering the requests in flight",
        )))
    }
}

impl Phase {
    fn now(&self, doing: &'static str) {
        *self.0.lock().expect("phase lock") = doing;
    }

    /// Ends the process if the stop, begun now, has not ended it within `bound` (`Settings::stop_bound`):
    /// whatever the disk does (a flush that never returns), a stop ends. Everything acknowledged was on disk
    /// before it was acknowledged, so exiting loses nothing; what did not finish is said, and the status is 1.
    fn bound(&self, bound: std::time::Duration) {
        let phase = self.0.clone();
        std::thread::spawn(move || {
            std::thread::sleep(bound);
            let doing = *phase.lock().expect("phase lock");
            eprintln!(
                "casetrail: the stop did not finish within {} s (still {doing}); exiting now: everything acknowledged is on disk",
                bound.as_secs()
            );
            std::process::exit(1);
        });
    }
}

pub fn token(data: &crate::cmd::DataDir, what: TokenCommand) -> Result<ExitCode> {
    let log = crate::cmd::open(data)?;
    match what {
        TokenCommand::Create { name, role, agency } => {
            let agency = agency
                .map(|a| AgencyCode::parse(&a))
                .transpose()
                .map_err(|e| format!("--agency {e}"))?;
            let issued = app::tokens::issue(&*log, name, role, agency, chrono::Utc::now())
                .map_err(crate::cmd::explain)?;
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
            match log.revoke_credential(&name, chrono::Utc::now())? {
                store::Revoked::Revoked => {}
                store::Revoked::NoLiveCredential => {
                    return Err(format!("no live token named {name:?}").into())
                }
                store::Revoked::LastAdmin => {
                    return Err(app::Error::LastAdmin(name).to_string().into())
                }
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
