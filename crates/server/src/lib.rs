//! casetrail's HTTP service (`api.md`), on actix-web.
//!
//! `start` binds and returns a running server that tests drive on port 0; `casetrail serve` calls it and waits.
//! Handlers stay thin: parse, check the caller, call the log, map the answer. The write path is the store's single
//! writer; this crate only queues appends and waits for their answers.

mod audit_routes;
pub mod auth;
mod dashboard;
pub mod errors;
mod extract;
mod indicator_routes;
pub mod indicators;
mod limits;

pub use indicator_routes::parse_known_at as indicator_time;
mod metrics;
pub mod openapi;
mod routes;
mod wire;

use actix_web::{web, App};
use projections::Catalogue;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use store::{EventLog, SledLog};

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

/// How many live streams read and encode a page of catch-up at once.
const CATCH_UP_AT_ONCE: usize = 2;

/// The signing key's file name in the data directory (beside sled's files, which never use this name).
pub const AUDIT_KEY_FILE: &str = "audit-signing.key";

/// What every handler shares.
pub struct State {
    pub log: Arc<SledLog>,
    pub catalogue: RwLock<Catalogue>,
    /// The indicator tables, kept current by the follower.
    pub indicators: indicators::Indicators,
    pub settings: Settings,
    /// Signs checkpoints with the log's key and builds bundles.
    pub notary: audit::Notary,
    pub metrics: metrics::Metrics,
    /// Turns true when a stop begins: live streams end, so that a graceful stop need not wait for them.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Connections open now, and how many may be (`Settings::max_connections`, fitted under the descriptor limit).
    pub connections: Arc<limits::Connections>,
    pub max_connections: usize,
    /// Token revocations, one at a time (the last admin token is never revoked).
    pub revocations: std::sync::Mutex<()>,
    /// Live credentials by their token's SHA-256: every request is authenticated from memory, not from the store.
    /// Tokens change only through this server while it runs (the command line cannot open a log in use).
    credentials: RwLock<std::collections::HashMap<String, domain::Credential>>,
    /// Live subscribers now (`Settings::max_subscribers` at most).
    subscribers: Arc<std::sync::atomic::AtomicUsize>,
    /// Turns for live streams catching up: a page read and encoded at a time each, a few at once.
    pub catch_up_turns: tokio::sync::Semaphore,
}

/// One live subscriber, counted while its stream lives.
pub struct Subscriber(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl State {
    /// A place among the live subscribers, unless `max_subscribers` are connected already.
    pub fn subscribe(&self) -> Option<Subscriber> {
        use std::sync::atomic::Ordering;
        let max = self.settings.max_subscribers;
        self.subscribers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Subscriber(self.subscribers.clone()))
    }

    /// The live credential whose token hashes to `sha256`.
    pub fn credential(&self, sha256: &str) -> Option<domain::Credential> {
        self.credentials
            .read()
            .expect("credentials lock")
            .get(sha256)
            .cloned()
    }

    /// Keeps the credentials in memory as the store has them: one added, or one revoked by name.
    pub fn credentials_changed(&self, added: Option<&domain::Credential>, revoked: Option<&str>) {
        let mut live = self.credentials.write().expect("credentials lock");
        if let Some(c) = added {
            live.insert(c.token_sha256.clone(), c.clone());
        }
        if let Some(name) = revoked {
            live.retain(|_, c| c.name != name);
        }
    }

    /// Folds newly stored events into the catalogue (reference events only; applying one twice changes nothing).
    pub fn catch_up(&self, events: &[domain::StoredEvent]) {
        let mut catalogue = self.catalogue.write().expect("catalogue lock");
        for e in events {
            catalogue.apply(e);
        }
    }
}

/// Runs store work on the blocking pool, never on the async workers: a sled read can wait on the disk, a credential
/// write flushes, and the two async workers answer everyone (health checks, writes, live streams).
pub(crate) async fn off_workers<T, E>(
    state: &web::Data<State>,
    work: impl FnOnce(&State) -> Result<T, E> + Send + 'static,
) -> Result<T, errors::ApiError>
where
    T: Send + 'static,
    E: Into<errors::ApiError> + Send + 'static,
{
    let state = state.clone();
    web::block(move || work(&state))
        .await
        .map_err(|e| errors::ApiError::Internal(format!("a blocking task failed: {e}")))?
        .map_err(Into::into)
}

/// A bound, running server.
pub struct Running {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub state: web::Data<State>,
}

/// Builds the catalogue from the log's reference streams, binds `settings.listen`, and starts serving. The
/// returned server must be awaited (or spawned) on an actix or tokio runtime.
pub fn start(settings: Settings, log: Arc<SledLog>) -> std::io::Result<Running> {
    let mut catalogue = Catalogue::default();
    for prefix in ["agency/", "procedure/", "targets"] {
        for key in log.stream_keys(prefix).map_err(std::io::Error::other)? {
            for e in log.stream(&key).map_err(std::io::Error::other)? {
                catalogue.apply(&e);
            }
        }
    }
    let card = match &settings.scorecard {
        None => projections::indicators::scorecard::Scorecard::default_card(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
            projections::indicators::scorecard::Scorecard::parse(&text)
                .map_err(std::io::Error::other)?
        }
    };
    let snapshots =
        indicators::Snapshots::new(&settings.data, settings.cut, settings.snapshot_every);
    let indicators = indicators::Indicators::open(&log, settings.cut, card, snapshots)
        .map_err(std::io::Error::other)?;
    let (key, made) = audit::SigningKey::load_or_create(
        &settings.audit_key_path(),
        settings.audit_origin.as_deref(),
    )
    .map_err(std::io::Error::other)?;
    if made {
        tracing::info!(path = %settings.audit_key_path().display(), verifier_key = key.verifier_key(), "made a new checkpoint signing key; back it up with the data");
    }
    let state = web::Data::new(State {
        notary: audit::Notary::new(key),
        log: log.clone(),
        catalogue: RwLock::new(catalogue),
        indicators,
        metrics: metrics::Metrics::new(),
        settings: settings.clone(),
        stopping: tokio::sync::watch::channel(false).0,
        connections: Default::default(),
        max_connections: limits::connection_bound(settings.max_connections),
        revocations: Default::default(),
        subscribers: Default::default(),
        catch_up_turns: tokio::sync::Semaphore::new(CATCH_UP_AT_ONCE),
        credentials: RwLock::new(
            log.credentials()
                .map_err(std::io::Error::other)?
                .into_iter()
                .filter(|c| c.revoked_at.is_none())
                .map(|c| (c.token_sha256.clone(), c))
                .collect(),
        ),
    });
    let app_state = state.clone();
    let app = move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(web::PathConfig::default().error_handler(extract::path_error))
            .wrap(actix_web::middleware::from_fn(extract::contain_panics))
            .wrap(actix_web::middleware::from_fn(limits::bounded))
            .wrap(actix_web::middleware::from_fn(extract::problems))
            .wrap(actix_web::middleware::from_fn(metrics::observe))
            .configure(routes::configure)
            .configure(audit_routes::configure)
            .configure(dashboard::configure)
            .default_service(web::to(extract::route_not_found))
    };
    let listener = limits::listener(settings.listen)?;
    let addr = listener.local_addr()?;
    let workers = settings.workers.max(1);
    let mut builder = actix_server::Server::build();
    let graceful = builder.graceful_shutdown_signal();
    let connections = state.connections.clone();
    // actix-web's `HttpServer`, assembled by hand for one difference: each connection is a `wire::Wire`, which
    // makes the answers actix's parser gives by itself (431, 400, 408 with empty bodies) into problems.
    builder = builder
        .workers(workers)
        // Each connection carries a token that counts it while it is open (beyond the bound: 503 and close), and
        // actix itself accepts no more than the bound plus room to say so, per worker.
        .max_concurrent_connections(state.max_connections.div_ceil(workers) + 64)
        .shutdown_timeout(settings.shutdown_timeout_secs)
        // Signals are ours (`Running::stop_on_signals`): live streams must be told to end before a graceful stop.
        .disable_signals()
        .listen("casetrail", listener, move || {
            use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
            let graceful = graceful.clone();
            let connections = connections.clone();
            let http = actix_http::HttpService::build()
                .graceful_shutdown_signal(move || {
                    let graceful = graceful.clone();
                    async move { graceful.notified().await }
                })
                .client_request_timeout(wire::HEAD_TIMEOUT)
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .local_addr(addr)
                .on_connect_ext(move |io: &wire::Wire, extensions| {
                    extensions.insert(connections.open(io.fd()));
                })
                .h1(map_config(
                    app()
                        .into_factory()
                        .map_err(|e: actix_web::Error| e.error_response()),
                    move |_| actix_web::dev::AppConfig::default(),
                ));
            fn_service(|io: actix_rt::net::TcpStream| async move {
                let wire = wire::Wire::new(io);
                let peer = wire.peer_addr();
                Ok::<_, actix_http::error::DispatchError>((wire, peer))
            })
            .and_then(http)
        })?;
    let server = builder.run();
    // Keep the catalogue current with what other handlers (and other credentials) write.
    let follower_state = state.clone();
    actix_web::rt::spawn(async move { follow(follower_state).await });
    let checkpoint_state = state.clone();
    actix_web::rt::spawn(async move { sign_periodically(checkpoint_state).await });
    Ok(Running {
        addr,
        server,
        state,
    })
}

impl Running {
    /// On SIGTERM or SIGINT: end every live stream, then stop gracefully (no new connections; requests in flight
    /// are answered, so nothing acknowledged is lost). Call from within the runtime that runs the server.
    pub fn stop_on_signals(&self) {
        use actix_rt::signal::unix::{signal, SignalKind};
        let (handle, state) = (self.server.handle(), self.state.clone());
        // The handlers are installed here, before this returns (and before the caller announces that it listens),
        // not in the task below: a SIGTERM that came between the announcement and the task's first poll would
        // otherwise kill the process instead of stopping it gracefully.
        let (mut terminate, mut interrupt) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM and SIGINT");
                return;
            }
        };
        actix_web::rt::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: stopping gracefully"),
                _ = interrupt.recv() => tracing::info!("interrupt: stopping gracefully"),
            }
            state.stopping.send_replace(true);
            handle.stop(true).await;
        });
    }
}

/// Follows commits: folds reference events into the catalogue and every event into the indicator tables. It runs
/// beside the writer and never holds it up.
async fn follow(state: web::Data<State>) {
    let mut watch = state.log.watch();
    loop {
        let size = watch.borrow_and_update().size;
        // From where the indicator engine stands: after a failed fold it is retried (the catalogue folds each event
        // at most once however often it is handed one).
        let mut after = state.indicators.position();
        while after < size {
            match state.log.read_after(after, 1_000) {
                Ok(events) if !events.is_empty() => {
                    after = events.last().expect("not empty").position;
                    if events
                        .iter()
                        .any(|e| !e.event.event_type().is_dossier_event())
                    {
                        state.catch_up(&events);
                    }
                    let worker = state.clone();
                    let folded = actix_web::rt::task::spawn_blocking(move || {
                        worker.indicators.catch_up(&worker.log, &events)
                    })
                    .await;
                    if let Err(why) = folded.map_err(|e| e.to_string()).and_then(|r| r) {
                        tracing::error!(%why, "the indicator tables could not follow the log");
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "the follower could not read the log");
                    break;
                }
            }
        }
        if watch.changed().await.is_err() {
            return;
        }
    }
}

/// Signs a checkpoint of the head when `checkpoint_every_secs` have passed since the last one, or
/// `checkpoint_every_events` events have arrived, whichever comes first, and only when the log has grown. It runs
/// beside the writer: signing reads the committed head and writes only the checkpoints tree.
async fn sign_periodically(state: web::Data<State>) {
    use std::time::{Duration, Instant};
    let every_secs = state.settings.checkpoint_every_secs;
    let every_events = state.settings.checkpoint_every_events;
    if every_secs == 0 && every_events == 0 {
        return;
    }
    let mut commits = state.log.watch();
    let mut stopping = state.stopping.subscribe();
    let mut signed_size = match state.log.latest_checkpoint() {
        Ok(latest) => latest.map(|c| c.size),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the latest checkpoint; periodic checkpoints are off");
            return;
        }
    };
    let mut last_at = Instant::now();
    let period = Duration::from_secs(every_secs.max(1));
    loop {
        let size = commits.borrow_and_update().size;
        let signed = signed_size.unwrap_or(0);
        let grown = size > signed;
        let by_time = every_secs > 0 && last_at.elapsed() >= period;
        let by_count = every_events > 0 && size.saturating_sub(signed) >= every_events;
        if grown && (by_time || by_count) {
            let worker = state.clone();
            let signed = actix_web::rt::task::spawn_blocking(move || {
                worker
                    .notary
                    .checkpoint_head(&worker.log, chrono::Utc::now())
            })
            .await;
            last_at = Instant::now();
            let failure = match signed {
                Ok(Ok(c)) => {
                    signed_size = Some(c.size);
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            // A store that refuses (a full disk) must not be retried in a tight loop: the count rule would say
            // "due" again at once. Wait a period (a second at least), or for the stop.
            tracing::error!(error = %failure, "could not sign a checkpoint; trying again later");
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stopping.changed() => return,
            }
            continue;
        }
        // Nothing due now. The timer is armed only while there is something to sign: with nothing new since the
        // last checkpoint its deadline may lie in the past, and a past deadline is always ready (a spinning loop).
        // A commit wakes the loop instead, and the deadline is then judged again.
        let deadline = tokio::time::Instant::from_std(last_at + period);
        tokio::select! {
            changed = commits.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(deadline), if every_secs > 0 && grown => {}
            _ = stopping.changed() => return,
        }
    }
}
