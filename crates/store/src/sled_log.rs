//! The sled implementation of [`EventLog`].
//!
//! Trees (keys sort as numbers: big-endian `u64`):
//! - `events`: position → the event's canonical bytes. The only truth.
//! - `streams`: stream key ‖ 0x00 ‖ version → position.
//! - `ids`: event id (16 bytes) → position. Kept for ever: idempotency has no expiry.
//! - `heads`: stream key → the stream's head (last version, dossier state) as JSON.
//! - `hashes`: stored-hash index → 32-byte hash of the audit tree.
//! - `meta`: the format marker, and a flag while indexes are being rebuilt.
//! - `credentials`: name → credential (role, scope, SHA-256 of the token); `credential_hashes`: SHA-256 → name.
//!   Credentials are configuration, not events: they are not in the log nor in its audit tree.
//! - `checkpoints`: tree size → a signed checkpoint issued at that size (`StoredCheckpoint`, JSON). What was
//!   signed cannot be derived again (signatures are made once), so `rebuild-indexes` leaves this tree alone.

use crate::merkle::Hashes;
use crate::writer::{Clock, Job, Writer};
use crate::{AppendError, AppendOutcome, AppendRequest, EventLog, Head, StoreError};
use chrono::{DateTime, Utc};
use domain::{apply, decide, Context, Credential, EventData, StoredEvent, StreamHead};
use serde::Serialize;
use sled::Transactional;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tlog_tiles::{stored_hash_count, stored_hashes, tree_hash, Hash};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

const FORMAT: &[u8] = b"casetrail-log-v1";
const REBUILDING: &[u8] = b"rebuilding";
/// Waiting appends beyond this many make senders wait: a bound on memory under overload.
const QUEUE_REQUESTS_MAX: usize = 16_384;

/// How to open a log.
#[derive(Clone)]
pub struct Config {
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_capacity_bytes: u64,
    /// How far ahead of the server clock a business time may be.
    pub clock_skew: chrono::Duration,
    /// fsync the database file after each group's flush. Off only in benchmarks that measure its cost.
    pub fsync: bool,
    /// The most events the writer takes into one group.
    pub group_events_max: usize,
    /// The server clock; replaceable so that tests and simulations can set the time.
    pub clock: Clock,
    /// Open to look, not to write: skip the open-time index checks (so that `verify` can report what is wrong
    /// and `rebuild-indexes` can mend it), and refuse every append.
    pub inspection: bool,
}

impl Config {
    pub fn new(path: impl Into<PathBuf>) -> Config {
        Config {
            path: path.into(),
            cache_capacity_bytes: 256 * 1024 * 1024,
            clock_skew: chrono::Duration::seconds(domain::stream::DEFAULT_CLOCK_SKEW_SECS),
            fsync: true,
            group_events_max: 8_192,
            clock: Arc::new(Utc::now),
            inspection: false,
        }
    }

    pub fn clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Config {
        self.clock = Arc::new(clock);
        self
    }
}

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
    fn new(bounds: &'static [f64]) -> Buckets {
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
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

/// `stream ‖ 0x00`: every version of a stream, and nothing of another (stream keys contain no NUL).
fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 9);
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k
}

/// `stream ‖ 0x00 ‖ version`, so that a stream's versions sort in order.
pub(crate) fn stream_key(stream: &str, version: u64) -> Vec<u8> {
    let mut k = stream_prefix(stream);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(crate) fn decode_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(
        bytes
            .try_into()
            .expect("index values are 8-byte big-endian numbers"),
    )
}

/// The open trees.
#[derive(Clone)]
pub(crate) struct Trees {
    pub db: sled::Db,
    pub events: sled::Tree,
    pub streams: sled::Tree,
    pub ids: sled::Tree,
    pub heads: sled::Tree,
    pub hashes: sled::Tree,
    pub meta: sled::Tree,
    pub credentials: sled::Tree,
    pub credential_hashes: sled::Tree,
    pub checkpoints: sled::Tree,
}

impl Trees {
    fn open(db: sled::Db) -> Result<Trees, StoreError> {
        Ok(Trees {
            events: db.open_tree("events")?,
            streams: db.open_tree("streams")?,
            ids: db.open_tree("ids")?,
            heads: db.open_tree("heads")?,
            hashes: db.open_tree("hashes")?,
            meta: db.open_tree("meta")?,
            credentials: db.open_tree("credentials")?,
            credential_hashes: db.open_tree("credential_hashes")?,
            checkpoints: db.open_tree("checkpoints")?,
            db,
        })
    }

    /// Decodes a stored event, with the read-side pair assertion (its invariants, and that it sits at its own
    /// position).
    fn decode(position: u64, bytes: &[u8]) -> Result<StoredEvent, StoreError> {
        let stored = StoredEvent::decode(bytes)
            .map_err(|message| StoreError::Corrupt { position, message })?;
        if stored.position != position {
            return Err(StoreError::Corrupt {
                position,
                message: format!("it says it is at position {}", stored.position),
            });
        }
        Ok(stored)
    }

    pub fn event(&self, position: u64) -> Result<Option<StoredEvent>, StoreError> {
        match self.events.get(position.to_be_bytes())? {
            None => Ok(None),
            Some(bytes) => Trees::decode(position, &bytes).map(Some),
        }
    }

    /// The latest committed event of a stream, through its head's version and the stream index.
    pub fn latest(&self, stream: &str) -> Result<Option<StoredEvent>, StoreError> {
        let Some(head) = self.load_head(stream)? else {
            return Ok(None);
        };
        match self.streams.get(stream_key(stream, head.version))? {
            Some(p) => self.event(decode_u64(&p)),
            None => Err(StoreError::IndexMismatch(format!(
                "{stream} has no version {}",
                head.version
            ))),
        }
    }

    pub fn load_head(&self, stream: &str) -> Result<Option<StreamHead>, StoreError> {
        match self.heads.get(stream.as_bytes())? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::IndexMismatch(format!("head of {stream}: {e}"))),
        }
    }

    fn last_position(&self) -> Result<u64, StoreError> {
        Ok(self
            .events
            .last()?
            .map(|(k, _)| decode_u64(&k))
            .unwrap_or(0))
    }

    fn committed_hashes(&self) -> Hashes<'_> {
        Hashes {
            tree: &self.hashes,
            pending_from: u64::MAX,
            pending: &[],
        }
    }

    fn root(&self, size: u64) -> Result<Hash, StoreError> {
        tree_hash(size, &self.committed_hashes()).map_err(|e| StoreError::Tree(e.to_string()))
    }
}

/// The log on sled. Dropping it (or [`SledLog::close`]) stops the writer after it has answered what was queued.
pub struct SledLog {
    trees: Trees,
    dir: PathBuf,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    head: watch::Receiver<Head>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: Arc<WriterMetrics>,
    failed: Arc<std::sync::OnceLock<String>>,
}

fn open_db(config: &Config) -> Result<sled::Db, StoreError> {
    std::fs::create_dir_all(&config.path)?;
    // sled's background flusher keeps the file lock for a moment after its `Db` is dropped, so a reopen in the same
    // process right after a close can find the directory locked; only a lock that outlasts that is another owner.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_WAIT_MS);
    loop {
        // sled 0.34's recovery can panic on a database file damaged where it reads on open (a changed byte in a
        // log segment leaves a page it then fails to serialize). That is damage, not a bug of the caller: say so.
        let opened = quietly(|| {
            sled::Config::new()
                .path(&config.path)
                .cache_capacity(config.cache_capacity_bytes)
                .mode(sled::Mode::HighThroughput)
                .open()
        })
        .map_err(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            StoreError::Damaged(format!(
                "sled cannot recover {}: {why}",
                config.path.join("db").display()
            ))
        })?;
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked(config.path.clone()));
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e) => return Err(StoreError::Sled(e)),
        }
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into an `Err` without the panic hook printing it (on this thread only: the hook
/// installed once here defers to the previous one everywhere else), so that the caller can report it in one line.
fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result
}

/// How long `open` waits for a lock held by a closing `Db` of this process before calling it someone else's.
const LOCK_WAIT_MS: u64 = 1_500;

impl SledLog {
    /// Opens (creating if needed) the log in `config.path`, checks that its indexes end where the events tree
    /// ends, and starts the writer.
    pub fn open(config: Config) -> Result<SledLog, StoreError> {
        let db = open_db(&config)?;
        let trees = Trees::open(db)?;
        match trees.meta.get("format")? {
            Some(f) if f.as_ref() == FORMAT => {}
            Some(f) => {
                return Err(StoreError::Format(format!(
                    "{} holds a log of format {:?}, not {:?}",
                    config.path.display(),
                    String::from_utf8_lossy(&f),
                    String::from_utf8_lossy(FORMAT)
                )))
            }
            None if trees.events.is_empty() => {
                trees.meta.insert("format", FORMAT)?;
                trees.db.flush()?;
            }
            None => {
                return Err(StoreError::Format(format!(
                    "{} is not a casetrail data directory",
                    config.path.display()
                )))
            }
        }
        let size = trees.last_position()?;
        let (last_recorded_at, root) = if config.inspection {
            (
                DateTime::<Utc>::MIN_UTC,
                trees.root(size).unwrap_or(tlog_tiles::EMPTY_HASH),
            )
        } else {
            if trees.meta.get(REBUILDING)?.is_some() {
                return Err(StoreError::IndexMismatch(
                    "an index rebuild was interrupted".into(),
                ));
            }
            let hashes_end = crate::merkle::stored_end(&trees.hashes)?;
            if hashes_end != stored_hash_count(size) {
                return Err(StoreError::IndexMismatch(format!(
                    "{size} events but {hashes_end} audit hashes, where {} were expected",
                    stored_hash_count(size)
                )));
            }
            let last_recorded_at = match size {
                0 => DateTime::<Utc>::MIN_UTC,
                n => {
                    trees
                        .event(n)?
                        .ok_or_else(|| StoreError::IndexMismatch("the last event vanished".into()))?
                        .recorded_at
                }
            };
            (last_recorded_at, trees.root(size)?)
        };
        let (head_tx, head_rx) = watch::channel(Head { size, root });
        let db_file = if config.fsync {
            // The directory entries of a new data directory (sled's `db` and `conf`) must survive power loss too.
            std::fs::File::open(&config.path)?.sync_all()?;
            Some(std::fs::File::open(config.path.join("db"))?)
        } else {
            None
        };
        let metrics = Arc::new(WriterMetrics::default());
        let failed = Arc::new(std::sync::OnceLock::new());
        if config.inspection {
            let _ = failed.set("the log is open for inspection only".to_string());
        }
        let writer = Writer {
            trees: trees.clone(),
            db_file,
            size,
            last_recorded_at,
            head: head_tx,
            clock: config.clock.clone(),
            clock_skew: config.clock_skew,
            group_events_max: config.group_events_max,
            metrics: metrics.clone(),
            failed: failed.clone(),
        };
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let handle = std::thread::Builder::new()
            .name("casetrail-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(SledLog {
            trees,
            dir: config.path,
            sender: Mutex::new(Some(tx)),
            head: head_rx,
            writer: Mutex::new(Some(handle)),
            metrics,
            failed,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn metrics(&self) -> &WriterMetrics {
        &self.metrics
    }

    /// Why the log refuses writes, if it does: a write failed (until the log is reopened), or it was opened for
    /// inspection.
    pub fn write_failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// Stops accepting appends, lets the writer answer everything queued, and waits for it. Idempotent.
    pub fn close(&self) {
        drop(self.sender.lock().expect("sender lock").take());
        if let Some(handle) = self.writer.lock().expect("writer lock").take() {
            if handle.join().is_err() {
                eprintln!("casetrail: the log writer panicked");
            }
        }
        let _ = self.trees.db.flush();
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, AppendError> {
        self.sender
            .lock()
            .expect("sender lock")
            .clone()
            .ok_or_else(|| AppendError::Unavailable("the log is shutting down".into()))
    }

    /// The keys of every stream whose key starts with `prefix` (`agency/`, `procedure/`, `targets/`).
    pub fn stream_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.trees
            .heads
            .scan_prefix(prefix.as_bytes())
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// Stores a new credential, durably. Its name must be new.
    pub fn add_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        credential.check().map_err(StoreError::Format)?;
        let t = &self.trees;
        let value = serde_json::to_vec(credential).expect("credentials serialize");
        let added = (&t.credentials, &t.credential_hashes)
            .transaction(|(names, hashes)| {
                if names.get(credential.name.as_bytes())?.is_some() {
                    return sled::transaction::abort(());
                }
                names.insert(credential.name.as_bytes(), value.as_slice())?;
                hashes.insert(
                    credential.token_sha256.as_bytes(),
                    credential.name.as_bytes(),
                )?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Abort(()) => {
                    StoreError::CredentialExists(credential.name.clone())
                }
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            });
        added?;
        self.sync()
    }

    /// Every credential, revoked ones included, by name.
    pub fn credentials(&self) -> Result<Vec<Credential>, StoreError> {
        self.trees
            .credentials
            .iter()
            .values()
            .map(|v| {
                serde_json::from_slice(&v?)
                    .map_err(|e| StoreError::Format(format!("a stored credential: {e}")))
            })
            .collect()
    }

    /// Revokes a credential; false when there is none of that name or it was revoked already.
    pub fn revoke_credential(&self, name: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(bytes) = self.trees.credentials.get(name.as_bytes())? else {
            return Ok(false);
        };
        let mut credential: Credential =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Format(e.to_string()))?;
        if credential.revoked_at.is_some() {
            return Ok(false);
        }
        credential.revoked_at = Some(at);
        self.trees.credentials.insert(
            name.as_bytes(),
            serde_json::to_vec(&credential).expect("credentials serialize"),
        )?;
        self.trees
            .credential_hashes
            .remove(credential.token_sha256.as_bytes())?;
        self.sync()?;
        Ok(true)
    }

    /// The live credential whose token hashes to `token_sha256`.
    pub fn credential_by_token_sha256(
        &self,
        token_sha256: &str,
    ) -> Result<Option<Credential>, StoreError> {
        let Some(name) = self.trees.credential_hashes.get(token_sha256.as_bytes())? else {
            return Ok(None);
        };
        let Some(bytes) = self.trees.credentials.get(&name)? else {
            return Ok(None);
        };
        let credential: Credential =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Format(e.to_string()))?;
        Ok(credential.revoked_at.is_none().then_some(credential))
    }

    /// Stores a signed checkpoint of the first `checkpoint.size` events, durably. The first one stored at a size
    /// is kept: when one exists already, nothing is written and that one is returned.
    pub fn add_checkpoint(
        &self,
        checkpoint: &StoredCheckpoint,
    ) -> Result<StoredCheckpoint, StoreError> {
        let size = self.head().size;
        if checkpoint.size > size {
            return Err(StoreError::OutOfRange(format!(
                "a checkpoint of size {} is past the log's size {size}",
                checkpoint.size
            )));
        }
        let value = serde_json::to_vec(checkpoint).expect("checkpoints serialize");
        let key = checkpoint.size.to_be_bytes();
        match self
            .trees
            .checkpoints
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))?
        {
            Ok(()) => {
                self.sync()?;
                Ok(checkpoint.clone())
            }
            Err(existing) => decode_checkpoint(
                existing
                    .current
                    .as_deref()
                    .expect("a failed swap from None found a value"),
            ),
        }
    }

    /// The checkpoint stored at `size`, if one was issued there.
    pub fn checkpoint(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.trees
            .checkpoints
            .get(size.to_be_bytes())?
            .map(|v| decode_checkpoint(&v))
            .transpose()
    }

    /// The checkpoint of the largest size.
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.trees
            .checkpoints
            .last()?
            .map(|(_, v)| decode_checkpoint(&v))
            .transpose()
    }

    /// Up to `limit` stored checkpoints of sizes above `after`, by size.
    pub fn checkpoints(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let from = match after {
            None => 0u64,
            Some(a) => match a.checked_add(1) {
                Some(f) => f,
                None => return Ok(Vec::new()),
            },
        };
        self.trees
            .checkpoints
            .range(from.to_be_bytes()..)
            .take(limit)
            .map(|item| decode_checkpoint(&item?.1))
            .collect()
    }

    /// Flush and fsync, for the rare writes outside the writer (credentials).
    fn sync(&self) -> Result<(), StoreError> {
        self.trees.db.flush()?;
        std::fs::File::open(self.dir.join("db"))?.sync_data()?;
        Ok(())
    }

    /// Every event from position `after + 1` on, decoded, in order: the replay path.
    pub fn scan(&self, after: u64) -> impl Iterator<Item = Result<StoredEvent, StoreError>> + '_ {
        self.trees
            .events
            .range((after + 1).to_be_bytes()..)
            .map(|item| {
                let (k, v) = item?;
                Trees::decode(decode_u64(&k), &v)
            })
    }

    /// Calls `fold` with every event from position `after + 1` to the head, in order, decoding on two threads
    /// while this one reads and folds: the replay path. Returns how many events were folded.
    pub fn replay(&self, after: u64, fold: impl FnMut(StoredEvent)) -> Result<u64, StoreError> {
        self.replay_to(after, self.head().size, fold)
    }

    /// [`SledLog::replay`], stopping after position `to` (or at the head, if that comes first).
    pub fn replay_to(
        &self,
        after: u64,
        to: u64,
        mut fold: impl FnMut(StoredEvent),
    ) -> Result<u64, StoreError> {
        const CHUNK_EVENTS: usize = 1_024;
        const CHUNKS_IN_FLIGHT: usize = 8;
        const DECODERS: usize = 2;
        let size = self.head().size.min(to);
        type Chunk = Vec<(u64, sled::IVec)>;
        std::thread::scope(|scope| {
            let mut work = Vec::new();
            let mut results = Vec::new();
            for _ in 0..DECODERS {
                let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
                let (result_tx, result_rx) = std::sync::mpsc::sync_channel::<
                    Result<Vec<StoredEvent>, StoreError>,
                >(CHUNKS_IN_FLIGHT);
                scope.spawn(move || {
                    for chunk in work_rx {
                        let decoded = chunk
                            .iter()
                            .map(|(p, bytes)| Trees::decode(*p, bytes))
                            .collect();
                        if result_tx.send(decoded).is_err() {
                            break;
                        }
                    }
                });
                work.push(work_tx);
                results.push(result_rx);
            }
            let mut raw = self.trees.events.range((after + 1).to_be_bytes()..);
            let (mut sent, mut received, mut folded, mut exhausted) = (0usize, 0usize, 0u64, false);
            loop {
                while !exhausted && sent - received < CHUNKS_IN_FLIGHT {
                    let mut chunk = Vec::with_capacity(CHUNK_EVENTS);
                    for item in raw.by_ref() {
                        let (k, v) = item?;
                        let position = decode_u64(&k);
                        if position > size {
                            exhausted = true;
                            break;
                        }
                        chunk.push((position, v));
                        if chunk.len() == CHUNK_EVENTS {
                            break;
                        }
                    }
                    if chunk.len() < CHUNK_EVENTS {
                        exhausted = true;
                    }
                    if chunk.is_empty() {
                        break;
                    }
                    work[sent % DECODERS]
                        .send(chunk)
                        .expect("decoders outlive the loop");
                    sent += 1;
                }
                if received == sent {
                    break;
                }
                // Chunk i went to decoder i % DECODERS, so reading the decoders in turn keeps the log's order.
                let decoded = results[received % DECODERS]
                    .recv()
                    .expect("a decoder answers every chunk")?;
                received += 1;
                for e in decoded {
                    folded += 1;
                    fold(e);
                }
            }
            Ok(folded)
        })
    }

    /// Raw canonical bytes from position `after + 1` on, for export.
    pub fn scan_raw(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> + '_ {
        self.trees
            .events
            .range((after + 1).to_be_bytes()..)
            .map(|item| {
                let (k, v) = item?;
                Ok((decode_u64(&k), v))
            })
    }

    /// Counts and sizes for `casetrail stats`.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let head = self.head();
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        let (mut first, mut last) = (None, None);
        let mut bytes = 0u64;
        for item in self.scan_raw(0) {
            let (position, raw) = item?;
            let e = Trees::decode(position, &raw)?;
            *by_type.entry(e.event.event_type().to_string()).or_default() += 1;
            first.get_or_insert(e.recorded_at);
            last = Some(e.recorded_at);
            bytes += raw.len() as u64;
        }
        let dossiers = self
            .trees
            .heads
            .iter()
            .keys()
            .filter(|k| k.as_ref().is_ok_and(|k| !k.contains(&b'/')))
            .count() as u64;
        Ok(Stats {
            size: head.size,
            root: head.root.to_string(),
            streams: self.trees.heads.len() as u64,
            dossiers,
            events_by_type: by_type,
            event_bytes: bytes,
            disk_bytes: self.trees.db.size_on_disk()?,
            first_recorded_at: first,
            last_recorded_at: last,
        })
    }

    /// Rebuilds every index tree (streams, ids, heads, hashes) from the events tree alone. Needs the writer idle:
    /// call it on a freshly opened log that nobody else uses.
    pub fn rebuild_indexes(&self, mut progress: impl FnMut(u64)) -> Result<Head, StoreError> {
        let t = &self.trees;
        t.meta.insert(REBUILDING, b"1")?;
        t.db.flush()?;
        for tree in [&t.streams, &t.ids, &t.heads, &t.hashes] {
            tree.clear()?;
        }
        let mut heads: std::collections::HashMap<String, StreamHead> =
            std::collections::HashMap::new();
        let mut pending: Vec<Hash> = Vec::new();
        let mut pending_from = 0u64;
        let mut batch = [sled::Batch::default(), sled::Batch::default()];
        let mut size = 0u64;
        for item in self.scan_raw(0) {
            let (position, bytes) = item?;
            if position != size + 1 {
                return Err(StoreError::Corrupt {
                    position,
                    message: format!("a gap: position {} is missing", size + 1),
                });
            }
            let stored = StoredEvent::from_canonical_bytes(&bytes)
                .map_err(|message| StoreError::Corrupt { position, message })?;
            let stream = stored.event.stream().key();
            let head = heads.entry(stream.clone()).or_default();
            *head = apply(head, &stored.event);
            if head.version != stored.version {
                return Err(StoreError::Corrupt {
                    position,
                    message: format!("version {} where {} was due", stored.version, head.version),
                });
            }
            let pos = position.to_be_bytes();
            batch[0].insert(stream_key(&stream, stored.version), &pos);
            batch[1].insert(stored.event.id.as_bytes(), &pos);
            let reader = Hashes {
                tree: &t.hashes,
                pending_from,
                pending: &pending,
            };
            pending.extend(
                stored_hashes(position - 1, &bytes, &reader)
                    .map_err(|e| StoreError::Tree(e.to_string()))?,
            );
            size = position;
            if pending.len() >= 65_536 {
                flush_rebuild(t, &mut batch, &mut pending, &mut pending_from)?;
                progress(size);
            }
        }
        flush_rebuild(t, &mut batch, &mut pending, &mut pending_from)?;
        let mut head_batch = sled::Batch::default();
        for (k, h) in &heads {
            head_batch.insert(
                k.as_bytes(),
                serde_json::to_vec(h).expect("heads serialize"),
            );
        }
        t.heads.apply_batch(head_batch)?;
        t.meta.remove(REBUILDING)?;
        t.db.flush()?;
        progress(size);
        Ok(Head {
            size,
            root: t.root(size)?,
        })
    }

    /// Re-hashes every stored event, recomputes the root, and checks every index against the events tree and every
    /// stream against its rules. Names the first bad position.
    pub fn verify(&self, mut progress: impl FnMut(u64)) -> Result<VerifyReport, StoreError> {
        let t = &self.trees;
        let mut problems: Vec<(u64, String)> = Vec::new();
        let mut size = 0u64;
        let mut streams_started = 0u64;
        let mut damaged = false;
        let mut parents: std::collections::HashMap<domain::AgencyCode, Option<domain::AgencyCode>> =
            std::collections::HashMap::new();
        for item in self.scan_raw(0) {
            let (position, bytes) = match item {
                Ok(found) => found,
                // Damage below the events tree (a changed byte in the database file itself): sled's own checksum
                // refuses the page. Name the first position not read, and stop: nothing after it can be trusted.
                Err(e) => {
                    problems.push((
                        size + 1,
                        format!("unreadable from here on: the database file is damaged ({e})"),
                    ));
                    damaged = true;
                    break;
                }
            };
            if position != size + 1 {
                problems.push((
                    size + 1,
                    format!("missing: the next event stored is at position {position}"),
                ));
            }
            size = position;
            if position % 100_000 == 0 {
                progress(position);
            }
            let stored = match StoredEvent::from_canonical_bytes(&bytes) {
                Ok(s) if s.position == position => s,
                Ok(s) => {
                    problems.push((
                        position,
                        format!("the event says it is at position {}", s.position),
                    ));
                    continue;
                }
                Err(e) => {
                    problems.push((position, format!("does not decode: {e}")));
                    continue;
                }
            };
            // The audit hashes: recompute this leaf's stored hashes. They read only hashes of earlier leaves, which
            // were checked already, so by induction every stored hash is checked against the events' bytes.
            let reader = Hashes {
                tree: &t.hashes,
                pending_from: u64::MAX,
                pending: &[],
            };
            match stored_hashes(position - 1, &bytes, &reader) {
                Ok(expected) => {
                    let first = tlog_tiles::stored_hash_index(0, position - 1);
                    for (i, h) in expected.iter().enumerate() {
                        let index = first + i as u64;
                        if crate::merkle::read_stored(&t.hashes, index).ok() != Some(*h) {
                            problems.push((
                                position,
                                format!("its audit hash (index {index}) does not match its bytes"),
                            ));
                            break;
                        }
                    }
                }
                Err(e) => problems.push((position, format!("audit hashes unreadable: {e}"))),
            }
            if stored.version == 1 {
                streams_started += 1;
            }
            // The agency tree, as it stood after each registration: a cycle is named where it was closed.
            if let (EventData::AgencyRegistered(a), Some(agency)) =
                (&stored.event.data, &stored.event.agency)
            {
                if let Some(parent) = &a.parent {
                    let tree = domain::stream::check_agency_tree(agency, parent, |code| {
                        Ok::<_, std::convert::Infallible>(parents.get(code).cloned().flatten())
                    });
                    if let Ok(Err(cycle)) = tree {
                        problems.push((position, format!("breaks the agency tree: {cycle}")));
                    }
                }
                parents.insert(agency.clone(), a.parent.clone());
            }
            match t
                .streams
                .get(stream_key(&stored.event.stream().key(), stored.version))?
            {
                Some(p) if decode_u64(&p) == position => {}
                other => problems.push((
                    position,
                    format!(
                        "the stream index points elsewhere ({:?})",
                        other.map(|p| decode_u64(&p))
                    ),
                )),
            }
            match t.ids.get(stored.event.id.as_bytes())? {
                Some(p) if decode_u64(&p) == position => {}
                other => problems.push((
                    position,
                    format!(
                        "the id index points elsewhere ({:?})",
                        other.map(|p| decode_u64(&p))
                    ),
                )),
            }
        }
        // Counts of the whole trees mean nothing when the events could not all be read.
        if !damaged {
            if t.streams.len() as u64 != size {
                problems.push((
                    size,
                    format!(
                        "the stream index has {} entries for {size} events",
                        t.streams.len()
                    ),
                ));
            }
            if t.ids.len() as u64 != size {
                problems.push((
                    size,
                    format!("the id index has {} entries for {size} events", t.ids.len()),
                ));
            }
            let stored_hashes_len = crate::merkle::stored_end(&t.hashes)?;
            if stored_hashes_len != stored_hash_count(size) {
                problems.push((
                    size,
                    format!(
                        "{stored_hashes_len} audit hashes where {} were expected",
                        stored_hash_count(size)
                    ),
                ));
            }
        }
        // Every stream: folding its events through the rules gives its stored head, with versions 1..n.
        let mut streams = 0u64;
        for item in t.heads.iter() {
            let (key, value) = item?;
            streams += 1;
            let stream = String::from_utf8_lossy(&key).into_owned();
            let mut head = StreamHead::default();
            let mut first_bad = None;
            for item in t.streams.scan_prefix(stream_prefix(&stream)) {
                let (k, p) = item?;
                let position = decode_u64(&p);
                let Ok(Some(e)) = t.event(position) else {
                    first_bad.get_or_insert((
                        position,
                        "an indexed event is missing or damaged".to_string(),
                    ));
                    break;
                };
                if decode_u64(&k[k.len() - 8..]) != head.version + 1
                    || e.version != head.version + 1
                {
                    first_bad.get_or_insert((
                        position,
                        format!("version {} of {stream} out of sequence", e.version),
                    ));
                    break;
                }
                let ctx = Context {
                    now: e.recorded_at,
                    clock_skew: chrono::Duration::days(36_500),
                };
                match decide(&head, &e.event, None, &ctx) {
                    Ok(next) => head = next,
                    Err(r) => {
                        first_bad
                            .get_or_insert((position, format!("breaks a rule of its stream: {r}")));
                        head = apply(&head, &e.event);
                    }
                }
            }
            let stored_head: Option<StreamHead> = serde_json::from_slice(&value).ok();
            if first_bad.is_none() && stored_head.as_ref() != Some(&head) {
                first_bad = Some((
                    size,
                    format!("the stored head of {stream} differs from its events"),
                ));
            }
            problems.extend(first_bad);
        }
        if streams != streams_started && !damaged {
            problems.push((
                size,
                format!("{streams} stream heads for {streams_started} streams in the events"),
            ));
        }
        let root = if problems.is_empty() {
            Some(t.root(size)?)
        } else {
            None
        };
        problems.sort_by_key(|(p, _)| *p);
        progress(size);
        Ok(VerifyReport {
            size,
            streams,
            root: root.map(|r| r.to_string()),
            problems,
        })
    }
}

fn flush_rebuild(
    t: &Trees,
    batch: &mut [sled::Batch; 2],
    pending: &mut Vec<Hash>,
    pending_from: &mut u64,
) -> Result<(), StoreError> {
    let [streams, ids] = std::mem::take(batch);
    t.streams.apply_batch(streams)?;
    t.ids.apply_batch(ids)?;
    if !pending.is_empty() {
        t.hashes
            .insert(pending_from.to_be_bytes(), crate::merkle::pack(pending))?;
    }
    *pending_from += pending.len() as u64;
    pending.clear();
    Ok(())
}

/// A signed checkpoint as the log keeps it: the size it commits to, when it was issued, and the signed note
/// (C2SP `tlog-checkpoint` text with its signature lines). The store does not read the note; the `audit` crate
/// makes and checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub issued_at: DateTime<Utc>,
    pub note: String,
}

fn decode_checkpoint(bytes: &[u8]) -> Result<StoredCheckpoint, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Format(format!("a stored checkpoint: {e}")))
}

/// What `verify` found.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub size: u64,
    pub streams: u64,
    /// The recomputed root, when everything checked out.
    pub root: Option<String>,
    /// (position, what is wrong), by position; empty when the log is sound.
    pub problems: Vec<(u64, String)>,
}

/// What `stats` shows.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub size: u64,
    pub root: String,
    pub streams: u64,
    pub dossiers: u64,
    pub events_by_type: BTreeMap<String, u64>,
    pub event_bytes: u64,
    pub disk_bytes: u64,
    pub first_recorded_at: Option<DateTime<Utc>>,
    pub last_recorded_at: Option<DateTime<Utc>>,
}

impl Drop for SledLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl EventLog for SledLog {
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl std::future::Future<Output = Result<AppendOutcome, AppendError>> + Send {
        let sender = self.sender();
        async move {
            let sender = sender?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(Job { request, reply })
                .await
                .map_err(|_| AppendError::Unavailable("the log writer has stopped".into()))?;
            answer
                .await
                .map_err(|_| AppendError::Unavailable("the log writer has stopped".into()))?
        }
    }

    fn append_blocking(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let sender = self.sender()?;
        let (reply, answer) = oneshot::channel();
        sender
            .blocking_send(Job { request, reply })
            .map_err(|_| AppendError::Unavailable("the log writer has stopped".into()))?;
        answer
            .blocking_recv()
            .map_err(|_| AppendError::Unavailable("the log writer has stopped".into()))?
    }

    fn head(&self) -> Head {
        *self.head.borrow()
    }

    fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        let head = self.head();
        if size > head.size {
            return Err(StoreError::Tree(format!(
                "size {size} is past the log's size {}",
                head.size
            )));
        }
        self.trees.root(size)
    }

    fn prove_inclusion(&self, position: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let head = self.head().size;
        if size > head || position == 0 || position > size {
            return Err(StoreError::OutOfRange(format!(
                "no event at position {position} in a tree of size {size} (the log has {head})"
            )));
        }
        tlog_tiles::prove_record(size, position - 1, &self.trees.committed_hashes())
            .map_err(|e| StoreError::Tree(e.to_string()))
    }

    fn prove_consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        let head = self.head().size;
        if from > to || to > head {
            return Err(StoreError::OutOfRange(format!(
                "no consistency proof from size {from} to size {to} (the log has {head})"
            )));
        }
        if from == 0 {
            // Every tree extends the empty tree: nothing to prove.
            return Ok(Vec::new());
        }
        tlog_tiles::prove_tree(to, from, &self.trees.committed_hashes())
            .map_err(|e| StoreError::Tree(e.to_string()))
    }

    fn event(&self, position: u64) -> Result<Option<StoredEvent>, StoreError> {
        if position > self.head().size {
            return Ok(None);
        }
        self.trees.event(position)
    }

    fn event_by_id(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        match self.trees.ids.get(id.as_bytes())? {
            Some(p) if decode_u64(&p) <= self.head().size => self.trees.event(decode_u64(&p)),
            _ => Ok(None),
        }
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let size = self.head().size;
        self.scan(after)
            .take_while(|e| e.as_ref().map_or(true, |e| e.position <= size))
            .take(limit)
            .collect()
    }

    fn stream(&self, stream: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let size = self.head().size;
        let mut out = Vec::new();
        for item in self.trees.streams.scan_prefix(stream_prefix(stream)) {
            let (_, p) = item?;
            let position = decode_u64(&p);
            if position > size {
                break;
            }
            let e = self.trees.event(position)?.ok_or_else(|| {
                StoreError::IndexMismatch(format!("{stream} names missing position {position}"))
            })?;
            out.push(e);
        }
        Ok(out)
    }

    fn stream_head(&self, stream: &str) -> Result<Option<StreamHead>, StoreError> {
        if self.write_failure().is_some() {
            // A failed group may have reached sled's memory (heads included) but not the disk or the committed
            // head; fold the committed events instead, which `stream` caps at the head.
            let events = self.stream(stream)?;
            if events.is_empty() {
                return Ok(None);
            }
            let mut head = StreamHead::default();
            for e in &events {
                domain::apply_in_place(&mut head, &e.event);
            }
            return Ok(Some(head));
        }
        self.trees.load_head(stream)
    }

    fn watch(&self) -> watch::Receiver<Head> {
        self.head.clone()
    }
}

/// For benchmarks: the engine's own ceiling on this machine. Writes `records` under big-endian position keys
/// into a bare sled tree, `group` per batch, each batch flushed and fsynced as the writer does, with no index,
/// no decision and no audit tree. Returns records per second.
pub fn bare_sled_appends_per_sec(
    dir: &Path,
    records: &[Vec<u8>],
    group: usize,
) -> Result<f64, StoreError> {
    let config = Config::new(dir);
    let db = open_db(&config)?;
    let tree = db.open_tree("events")?;
    let file = std::fs::File::open(dir.join("db"))?;
    let started = std::time::Instant::now();
    for (g, chunk) in records.chunks(group.max(1)).enumerate() {
        let mut batch = sled::Batch::default();
        for (i, r) in chunk.iter().enumerate() {
            batch.insert(&((g * group + i + 1) as u64).to_be_bytes(), r.as_slice());
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        file.sync_data()?;
    }
    Ok(records.len() as f64 / started.elapsed().as_secs_f64())
}
