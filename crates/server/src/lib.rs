//! casetrail's HTTP service (`api.md`), on actix-web.
//!
//! `start` binds and returns a running server that tests drive on port 0; `casetrail serve` calls it and waits.
//! Handlers stay thin: parse, check the caller, call the log, map the answer. The write path is the store's single
//! writer; this crate only queues appends and waits for their answers.

pub mod auth;
mod dashboard;
pub mod errors;
mod extract;
mod limits;

mod metrics;
pub mod openapi;
mod routes;
mod schemas;
mod wire;

use actix_web::web;
use app::{App, Settings};
use std::net::SocketAddr;
use std::sync::Arc;
use store::Store;

/// How many live streams read and encode a page of catch-up at once.
const CATCH_UP_AT_ONCE: usize = 2;

/// What every handler shares: the application, and what only HTTP needs (metrics, connection and subscriber
/// bounds). It dereferences to the [`App`], so `state.log` is the app's log.
pub struct State {
    pub app: Arc<App>,
    pub metrics: metrics::Metrics,
    /// Connections open now, and how many may be (`Settings::max_connections`, fitted under the descriptor limit).
    pub connections: Arc<limits::Connections>,
    pub max_connections: usize,
    /// Live subscribers now (`Settings::max_subscribers` at most).
    subscribers: Arc<std::sync::atomic::AtomicUsize>,
    /// Turns for live streams catching up: a page read and encoded at a time each, a few at once.
    pub catch_up_turns: tokio::sync::Semaphore,
}

impl std::ops::Deref for State {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
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
}

/// Runs store work on the blocking pool, never on the async workers: a sled read can wait on the disk, a credential
/// write flushes, and the two async workers answer everyone (health checks, writes, live streams).
///
/// The caller is answered whatever the disk does: once the disk has stopped answering (a write of the log waited
/// past the stall bound, see `Maintenance::unresponsive`), work still unfinished a stall bound later is answered 503
/// `unavailable`; its thread goes on waiting for the disk, the request does not.
pub(crate) async fn off_workers<T, E>(
    state: &web::Data<State>,
    work: impl FnOnce(&State) -> Result<T, E> + Send + 'static,
) -> Result<T, errors::ApiError>
where
    T: Send + 'static,
    E: Into<errors::ApiError> + Send + 'static,
{
    let (unresponsive, grace) = (state.log.unresponsive(), state.log.stall_bound());
    let state = state.clone();
    let done = web::block(move || work(&state));
    let given_up = async move {
        let why = unresponsive.await;
        tokio::time::sleep(grace).await;
        why
    };
    tokio::select! {
        done = done => done
            .map_err(|e| errors::Error::Internal(format!("a blocking task failed: {e}")))?
            .map_err(Into::into),
        why = given_up => Err(errors::Error::Unavailable(format!(
            "{why}; this request waited {} s more for the store and was given up",
            grace.as_secs_f64()
        ))
        .into()),
    }
}

/// A bound, running server.
pub struct Running {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub state: web::Data<State>,
}

/// Builds the catalogue from the log's reference streams, binds `settings.listen`, and starts serving. The
/// returned server must be awaited (or spawned) on an actix or tokio runtime.
pub fn start(settings: Settings, log: Arc<dyn Store>) -> std::io::Result<Running> {
    let app = Arc::new(App::open(settings.clone(), log).map_err(std::io::Error::other)?);
    let state = web::Data::new(State {
        app,
        metrics: metrics::Metrics::new(),
        connections: Default::default(),
        max_connections: limits::connection_bound(settings.max_connections),
        subscribers: Default::default(),
        catch_up_turns: tokio::sync::Semaphore::new(CATCH_UP_AT_ONCE),
    });
    let app_state = state.clone();
    let app = move || {
        actix_web::App::new()
            .app_data(app_state.clone())
            .app_data(web::PathConfig::default().error_handler(extract::path_error))
            .wrap(actix_web::middleware::from_fn(extract::contain_panics))
            .wrap(actix_web::middleware::from_fn(auth::revocable))
            .wrap(actix_web::middleware::from_fn(limits::bounded))
            .wrap(actix_web::middleware::from_fn(extract::problems))
            .wrap(actix_web::middleware::from_fn(metrics::observe))
            .configure(routes::configure)
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
    actix_web::rt::spawn(app::follow::follow(state.app.clone()));
    actix_web::rt::spawn(app::follow::sign_periodically(state.app.clone()));
    actix_web::rt::spawn(app::follow::follow_credentials(state.app.clone()));
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
