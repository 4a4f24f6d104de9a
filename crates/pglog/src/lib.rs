//! casetrail's log on PostgreSQL: the same [`store::Store`] as the sled log, over one database that several
//! casetrail nodes share (and a synchronous standby replicates).
//!
//! - **One order.** Every node's writer groups its appends as sled's does and commits each group in one
//!   transaction that first locks the one-row `log_head` and last moves it (`WHERE size = $old`): positions come
//!   from that row, never from a sequence, so they are gapless and commit order is position order. A writer whose
//!   cached size differs from the row's re-reads what the others wrote (the open audit tile, the stream heads they
//!   touched) before it decides anything.
//! - **The same decisions.** The group is decided by `store::decide`, the code sled's writer runs, against rows read
//!   under the lock: the same events are accepted, refused, numbered and hashed alike, and a log moved between the
//!   two keeps its bytes and its root.
//! - **Durable means committed.** Every session runs with `synchronous_commit = on`; with a synchronous standby
//!   configured, a commit returns once the standby has it. A connection lost while `COMMIT` is under way is
//!   resolved by asking the database (after the old transaction has ended) whether the group's ids are at their
//!   positions; only if it stays unreachable past the deadline is the answer
//!   [`store::AppendError::OutcomeUnknown`].
//! - **Followers.** A listener per node (`LISTEN casetrail_head`, and a poll) moves the node's head; it never goes
//!   backwards. A head found below one this node saw (a restore, a failover onto a standby that was not
//!   synchronous) makes the node refuse writes until an operator acts.
//!
//! The reads of [`store::EventLog`] are synchronous: [`PgLog`] runs its own tokio runtime and hands each read to
//! it, so they may be called from any thread, inside another runtime too.

pub mod cluster;
mod credentials;
mod elect;
mod hashes;
mod listen;
mod maintenance;
pub mod schema;
mod writer;

use chrono::{DateTime, Utc};
use domain::{StoredEvent, StreamHead};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use store::{
    AppendError, AppendOutcome, AppendRequest, Boxed, EventLog, Hash, Head, RawEvent, StoreError,
    WriterMetrics,
};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// The server clock, when not the database's (tests that set the time).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How to open a log on PostgreSQL.
#[derive(Clone)]
pub struct Config {
    /// `postgres://user@host[:port][,host2[:port2]…]/database[?target_session_attrs=read-write…]`.
    pub url: String,
    /// How far ahead of the clock a business time may be (must be the same on every node).
    pub clock_skew: chrono::Duration,
    /// The most events the writer takes into one group.
    pub group_events_max: usize,
    /// `None`: the database's clock (`clock_timestamp()`, one clock for every node).
    pub clock: Option<Clock>,
    /// How long the database may stay unreachable, or one group's commit unfinished, before the answer says so
    /// (`unavailable`, or `outcome_unknown` for a commit under way).
    pub stall: Duration,
    /// Connections of the read pool.
    pub read_connections: usize,
    /// How often the listener reads the head when no notification comes.
    pub poll: Duration,
    /// This node's name (in `application_name`, `log_head.writer`, messages).
    pub node: String,
    /// Open to look, not to write: every append is refused and nothing is created.
    pub inspection: bool,
}

impl Config {
    pub fn new(url: impl Into<String>) -> Config {
        Config {
            url: url.into(),
            clock_skew: chrono::Duration::seconds(domain::stream::DEFAULT_CLOCK_SKEW_SECS),
            group_events_max: 8_192,
            clock: None,
            stall: Duration::from_secs(30),
            read_connections: 8,
            poll: Duration::from_millis(250),
            node: format!("node-{}", &Uuid::new_v4().simple().to_string()[..8]),
            inspection: false,
        }
    }

    /// The connection settings every session of this node uses: durable commits, no statement timeout (a
    /// cancelled commit waiting for the standby would be committed locally, not acknowledged), a transaction left
    /// idle (a node cut off mid-group) ended within seconds, so that its lock on the head is released.
    fn session(&self, role: &str) -> Result<tokio_postgres::Config, StoreError> {
        let mut c: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e| StoreError::Format(format!("{}: {e}", redact(&self.url))))?;
        c.application_name(format!("casetrail-{}-{role}", self.node));
        // Every session on the primary, whatever the connection string says: a standby that lags would show a
        // smaller head (taken for a log gone backwards) and refuses writes anyway.
        c.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
        c.options(
            "-c synchronous_commit=on -c statement_timeout=0 -c idle_in_transaction_session_timeout=10000 \
             -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
        );
        c.keepalives(true);
        c.keepalives_idle(Duration::from_secs(5));
        c.connect_timeout(self.stall.min(Duration::from_secs(10)));
        Ok(c)
    }
}

/// A connection string with its password left out, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Whether a `--data` value names a database rather than a directory.
pub fn is_database_url(data: &str) -> bool {
    data.starts_with("postgres://") || data.starts_with("postgresql://")
}

/// What the node's parts share: the head it has seen, the audit tree's upper hashes, why it refuses writes.
pub(crate) struct Shared {
    head: watch::Sender<Head>,
    /// Bumped when the credentials may have changed (a notification, a changed count, a reconnection).
    pub credentials: watch::Sender<u64>,
    /// Whether this node's listener session holds the periodic signer's advisory lock.
    pub signer: std::sync::atomic::AtomicBool,
    pub upper: hashes::UpperCache,
    failed: OnceLock<String>,
    pub metrics: WriterMetrics,
    pub election: elect::Election,
}

impl Shared {
    /// Moves the node's head forward to `head` (never back).
    pub fn advance(&self, head: Head) {
        self.head.send_if_modified(|h| {
            let moved = head.size > h.size;
            if moved {
                *h = head;
            }
            moved
        });
    }

    /// `read` is the database's head, read after the node's head was `before`: a smaller one means the log went
    /// backwards under the node (a restore, a failover onto a standby that lacked commits). The node refuses
    /// writes from then on; its head stays where it was.
    pub fn observe(&self, before: u64, read: Head) {
        if read.size < before {
            self.fail(format!(
                "the database's log has {} events, fewer than the {before} this node saw: it went backwards (a restore, or a failover onto a standby that lacked commits); this node refuses writes until an operator has checked the log and restarted it",
                read.size
            ));
            return;
        }
        self.advance(read);
    }

    pub fn fail(&self, why: String) {
        if self.failed.set(why.clone()).is_ok() {
            tracing::error!(why, "the log refuses writes");
        }
    }

    pub fn failed(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    pub fn size(&self) -> u64 {
        self.head.borrow().size
    }
}

pub(crate) use store::queue::Job;

/// The log on PostgreSQL. Dropping it (or `close`) stops the writer after it has answered what was queued.
pub struct PgLog {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    pool: deadpool_postgres::Pool,
    shared: Arc<Shared>,
    head: watch::Receiver<Head>,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    location: String,
    stall: Duration,
    /// The settings of this node's maintenance sessions.
    session: tokio_postgres::Config,
}

/// A database error as the store reports it: a connection that failed or closed is the storage not answering
/// (503), anything else the database refusing a statement.
pub(crate) fn db(e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() {
        StoreError::Unavailable(format!("the database does not answer: {e}"))
    } else {
        StoreError::Database(e.to_string())
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("no connection to the database: {e}"))
}

/// Connects one session on the log's runtime (its connection driven there).
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl PgLog {
    /// Opens (on an empty database: creates) the log.
    pub fn open(config: Config) -> Result<PgLog, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("casetrail-pg")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let session = config.session("read")?;
        let location = redact(&config.url);
        let mut opened = run_on(&handle, {
            let (config, session) = (config.clone(), session.clone());
            async move { maintenance::prepare(&config, &session).await }
        })?;
        let manager = deadpool_postgres::Manager::from_config(
            session,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(config.read_connections.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(config.stall))
            .wait_timeout(Some(config.stall))
            .build()
            .map_err(|e| StoreError::Format(format!("the read pool: {e}")))?;
        let (head_tx, head) = watch::channel(opened.head);
        let shared = Arc::new(Shared {
            head: head_tx,
            credentials: watch::channel(0).0,
            signer: std::sync::atomic::AtomicBool::new(false),
            upper: hashes::UpperCache::new(std::mem::take(&mut opened.upper)),
            failed: OnceLock::new(),
            metrics: WriterMetrics::default(),
            election: elect::Election::new(),
        });
        if config.inspection {
            shared.fail("the log was opened for inspection; it accepts no writes".into());
        }
        let (stop, stopped) = watch::channel(false);
        handle.spawn(listen::follow(
            config.session("listen")?,
            config.poll,
            shared.clone(),
            config.node.clone(),
            stopped,
        ));
        let (sender, receiver) = mpsc::channel(16_384);
        let writer = writer::Writer::new(&config, handle.clone(), shared.clone(), opened)?;
        let writer = std::thread::Builder::new()
            .name("casetrail-pg-writer".into())
            .spawn(move || writer.run(receiver))?;
        Ok(PgLog {
            runtime: Mutex::new(Some(runtime)),
            handle,
            pool,
            shared,
            head,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            stop,
            location,
            stall: config.stall,
            session: config.session("maintenance")?,
        })
    }

    /// Runs `work` on the log's runtime and waits for it, from any thread.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        run_on(&self.handle, work)
    }

    /// Runs `query` on a connection of the read pool.
    pub(crate) fn read<T: Send + 'static, F>(
        &self,
        query: impl FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pool_error)?;
            query(client).await
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, AppendError> {
        if let Some(why) = self.shared.failed() {
            return Err(AppendError::Unavailable(why.to_owned()));
        }
        self.sender
            .lock()
            .expect("sender lock")
            .clone()
            .ok_or_else(|| AppendError::Unavailable("the log is shutting down".into()))
    }

    /// Events at positions `after + 1 ..= to`, at most `limit`, in order, as stored.
    fn raw_range(&self, after: u64, to: u64, limit: usize) -> Result<Vec<RawEvent>, StoreError> {
        if after >= to || limit == 0 {
            return Ok(Vec::new());
        }
        let limit = limit.min((to - after) as usize) as i64;
        self.read(move |c| async move {
            let rows = c
                .query(
                    "SELECT position, bytes FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
                    &[&(after as i64), &(to as i64), &limit],
                )
                .await
                .map_err(db)?;
            Ok(rows.iter().map(raw).collect())
        })
    }

    /// A stream's events up to position `to`, as stored, in version order.
    fn stream_range(&self, stream: &str, to: u64) -> Result<Vec<RawEvent>, StoreError> {
        let stream = stream.to_owned();
        self.read(move |c| async move {
            let rows = c
                .query(
                    "SELECT position, bytes FROM events WHERE stream = $1 AND position <= $2 ORDER BY version",
                    &[&stream, &(to as i64)],
                )
                .await
                .map_err(db)?;
            Ok(rows.iter().map(raw).collect())
        })
    }
}

/// Runs `work` on `handle`'s runtime and waits: directly outside a runtime, else through a task and a channel
/// (a runtime's thread may not block on another runtime).
pub(crate) fn run_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return handle.block_on(work);
    }
    let (done, answer) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = done.send(work.await);
    });
    answer
        .recv()
        .map_err(|_| StoreError::Unavailable("the database task ended".into()))?
}

pub(crate) fn raw(row: &tokio_postgres::Row) -> RawEvent {
    RawEvent {
        position: row.get::<_, i64>(0) as u64,
        bytes: row.get(1),
    }
}

fn decode(raw: RawEvent) -> Result<StoredEvent, StoreError> {
    store::decode_stored(raw.position, &raw.bytes)
}

fn decode_all(raw: Vec<RawEvent>) -> Result<Vec<StoredEvent>, StoreError> {
    raw.into_iter().map(decode).collect()
}

/// A stream head as the `streams` table keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct HeadRow {
    pub version: u64,
    pub dossier: Option<domain::DossierState>,
}

impl HeadRow {
    pub fn encode(head: &StreamHead) -> Vec<u8> {
        postcard::to_stdvec(&HeadRow {
            version: head.version,
            dossier: head.dossier.clone(),
        })
        .expect("heads serialize")
    }

    pub fn decode(stream: &str, bytes: &[u8]) -> Result<StreamHead, StoreError> {
        let row: HeadRow = postcard::from_bytes(bytes)
            .map_err(|e| StoreError::IndexMismatch(format!("the head of {stream}: {e}")))?;
        Ok(StreamHead {
            version: row.version,
            dossier: row.dossier,
        })
    }
}

pub(crate) fn hash_of(bytes: &[u8]) -> Result<Hash, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(Hash)
        .map_err(|_| StoreError::Format(format!("a stored hash of {} bytes", bytes.len())))
}

impl Drop for PgLog {
    fn drop(&mut self) {
        store::Maintenance::close(self);
    }
}

impl EventLog for PgLog {
    fn append(&self, request: AppendRequest) -> Boxed<Result<AppendOutcome, AppendError>> {
        if self.shared.election.elsewhere() {
            // Handed to the elected writer when that is another node; written here otherwise, or when it could
            // not be handed on (`elect`). The HTTP exchange runs on the log's own runtime.
            let (shared, sender) = (self.shared.clone(), self.sender());
            let handle = self.handle.clone();
            return Box::pin(async move {
                let handed = handle.spawn(async move { shared.forward(request).await });
                match handed.await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(request)) => store::queue::send(sender?, request).await,
                    Err(_) => Err(AppendError::Unavailable("the log's runtime stopped".into())),
                }
            });
        }
        self.append_here(request)
    }

    fn append_here(&self, request: AppendRequest) -> Boxed<Result<AppendOutcome, AppendError>> {
        // Queued now, not when first polled: appends are taken in the order they were made.
        let answered = self.sender().map(|s| store::queue::send(s, request));
        Box::pin(async move { answered?.await })
    }

    fn append_blocking(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        store::queue::send_blocking(&self.sender()?, request)
    }

    fn head(&self) -> Head {
        *self.head.borrow()
    }

    fn fresh_head(&self) -> Result<Head, StoreError> {
        let before = self.head().size;
        let read = self.read(|c| async move { listen::read_head(&**c).await })?;
        self.shared.observe(before, read);
        Ok(self.head())
    }

    fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        let head = self.head();
        store::merkle::check_size(size, head.size)?;
        if size == head.size {
            return Ok(head.root);
        }
        self.with_hashes(size, move |h| tlog_tiles::tree_hash(size, h))
    }

    fn prove_inclusion(&self, position: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        store::merkle::check_inclusion(position, size, self.head().size)?;
        self.with_hashes(size, move |h| {
            tlog_tiles::prove_record(size, position - 1, h)
        })
    }

    fn prove_consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        store::merkle::check_consistency(from, to, self.head().size)?;
        if from == 0 {
            return Ok(Vec::new());
        }
        self.with_hashes(to, move |h| tlog_tiles::prove_tree(to, from, h))
    }

    fn event(&self, position: u64) -> Result<Option<StoredEvent>, StoreError> {
        if position == 0 || position > self.head().size {
            return Ok(None);
        }
        Ok(self
            .raw_range(position - 1, position, 1)?
            .pop()
            .map(decode)
            .transpose()?)
    }

    fn event_by_id(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let size = self.head().size as i64;
        let found = self.read(move |c| async move {
            let row = c
                .query_opt(
                    "SELECT position, bytes FROM events WHERE id = $1 AND position <= $2",
                    &[&id, &size],
                )
                .await
                .map_err(db)?;
            Ok(row.as_ref().map(raw))
        })?;
        found.map(decode).transpose()
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        decode_all(self.read_raw_after(after, limit)?)
    }

    fn read_raw_after(&self, after: u64, limit: usize) -> Result<Vec<RawEvent>, StoreError> {
        self.raw_range(after, self.head().size, limit)
    }

    fn stream(&self, stream: &str) -> Result<Vec<StoredEvent>, StoreError> {
        decode_all(self.stream_raw(stream)?)
    }

    fn stream_raw(&self, stream: &str) -> Result<Vec<RawEvent>, StoreError> {
        self.stream_range(stream, self.head().size)
    }

    fn stream_before(&self, stream: &str, position: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let to = self.head().size.min(position.saturating_sub(1));
        decode_all(self.stream_range(stream, to)?)
    }

    fn stream_head(&self, stream: &str) -> Result<Option<StreamHead>, StoreError> {
        // The row may be newer than this node's head (another node wrote it since): the node then catches up to
        // the database's head, so that what it answers next (the stream's events, a proof) has the same events.
        let key = stream.to_owned();
        let found = self.read(move |c| async move {
            let row = c
                .query_opt(
                    "SELECT s.head, e.position FROM streams s \
                     JOIN events e ON e.stream = s.stream AND e.version = s.version WHERE s.stream = $1",
                    &[&key],
                )
                .await
                .map_err(db)?;
            Ok(row.map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, i64>(1) as u64)))
        })?;
        let Some((bytes, position)) = found else {
            return Ok(None);
        };
        if position > self.head().size {
            self.fresh_head()?;
        }
        HeadRow::decode(stream, &bytes).map(Some)
    }

    fn watch(&self) -> watch::Receiver<Head> {
        self.head.clone()
    }

    fn stream_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Streams sort as bytes (COLLATE "C"): the keys with a prefix are a range of the primary key. A stream
        // whose first event is beyond this node's head is not listed yet, as on sled.
        let from = prefix.to_owned();
        let to = next_prefix(prefix);
        let head = self.head().size as i64;
        self.read(move |c| async move {
            const KNOWN: &str = "EXISTS (SELECT 1 FROM events e WHERE e.stream = s.stream AND e.version = 1 AND e.position <= $1)";
            let rows = match to {
                Some(to) => c
                    .query(
                        &format!("SELECT stream FROM streams s WHERE stream >= $2 AND stream < $3 AND {KNOWN} ORDER BY stream"),
                        &[&head, &from, &to],
                    )
                    .await,
                None => {
                    c.query(
                        &format!("SELECT stream FROM streams s WHERE stream >= $2 AND {KNOWN} ORDER BY stream"),
                        &[&head, &from],
                    )
                    .await
                }
            }
            .map_err(db)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}

/// The smallest string above every string that starts with `prefix`, if any (`None` for the empty prefix).
fn next_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl store::Store for PgLog {}
