//! The node's writer: group commit into the shared log, one transaction per group, serialised with every other
//! node's writer by the lock on `log_head`.
//!
//! A group is two round trips while the head row is locked, with statements prepared once per session:
//! 1. `BEGIN`; lock the head row (and read the database's clock); then, each statement seeing what was committed
//!    before the lock was granted: the events other nodes wrote since this writer's last group (at most 4,096;
//!    past that the open tile is read again and the cached heads dropped), every id the group's requests name,
//!    and the heads of their streams not cached. The writer takes on the others' leaves, forgets the heads of the
//!    streams they wrote, and reads again any cached head of the group's that they moved.
//! 2. Each request decided with `store::decide` exactly as sled's writer does; then the events inserted, the
//!    heads upserted, the audit runs stored, the head moved (`casetrail_move_head`, which fails the transaction
//!    unless the head is where it was locked), the notification, and `COMMIT`, all sent at once. A statement the
//!    server refuses aborts the transaction, and the `COMMIT` behind it only ends it. A request refused, or a
//!    group rolled back, consumes no position.
//!
//! Outcome unknown: when the connection breaks while `COMMIT` is under way, the writer connects again, locks the
//! head row (which waits until the old transaction has ended, one way or the other: a session left idle in a
//! transaction is ended by the server within `idle_in_transaction_session_timeout`), and looks for the group's
//! ids at their positions. All there: the group landed, the answers stand. None: it did not, and the group is
//! decided again from the start (ids make that safe). Only when the database stays unreachable past the deadline
//! is the answer `OutcomeUnknown`. The writer never cancels or terminates a backend that may be committing: a
//! commit cancelled while it waits for the synchronous standby stays committed locally without the standby.

use crate::hashes::{leaf_hashes, read_runs};
use crate::maintenance::Opened;
use crate::{connect, db, HeadRow, Job, PgLog, Shared};
use chrono::{DateTime, Utc};
use domain::{StoredEvent, StreamHead};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::decide::{CommitGroup, Committed, Decider};
use store::merkle::{pack, pack_prefixes, Frontier, InMemory, UpperHashes, TILE};
use store::{AppendError, AppendOutcome, Hash, Head, StoreError};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Row, Statement};
use uuid::Uuid;

/// How many stream heads the writer keeps between groups.
const HEAD_CACHE_STREAMS: usize = 65_536;

/// A statement's parameter.
type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// How many events another node may have written since this writer's last group for the writer to catch up from
/// the events themselves, read with the lock; past it, the open tile is read again and the stream heads forgotten.
const CATCH_UP_ROWS: i64 = 4_096;

/// The writer's session with its statements, prepared once when it connects (a statement given as text is parsed
/// again on every call, one more round trip each while the head row is locked).
struct Session {
    client: Client,
    st: Statements,
}

struct Statements {
    lock: Statement,
    since: Statement,
    ids: Statement,
    heads: Statement,
    events: Statement,
    upsert_heads: Statement,
    leaves: Statement,
    upper: Statement,
    move_head: Statement,
    notify: Statement,
}

impl Statements {
    async fn prepare(c: &Client) -> Result<Statements, tokio_postgres::Error> {
        let (lock, since, ids, heads, events, upsert_heads, leaves, upper, move_head, notify) = tokio::try_join!(
            c.prepare(
                "SELECT size, root, last_recorded_at, clock_timestamp() FROM log_head WHERE id = 1 FOR UPDATE"
            ),
            c.prepare(
                "SELECT position, stream, bytes FROM events WHERE position > $1 ORDER BY position LIMIT $2"
            ),
            c.prepare("SELECT position, bytes FROM events WHERE id = ANY($1)"),
            c.prepare("SELECT stream, head FROM streams WHERE stream = ANY($1)"),
            c.prepare(
                "INSERT INTO events (position, id, stream, version, bytes) \
                 SELECT * FROM unnest($1::int8[], $2::uuid[], $3::text[], $4::int8[], $5::bytea[])"
            ),
            c.prepare(
                "INSERT INTO streams (stream, version, head) \
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[]) \
                 ON CONFLICT (stream) DO UPDATE SET version = excluded.version, head = excluded.head"
            ),
            c.prepare("INSERT INTO audit_leaves (first_position, prefixes) VALUES ($1, $2)"),
            c.prepare("INSERT INTO audit_upper (first_index, hashes) VALUES ($1, $2)"),
            c.prepare("SELECT casetrail_move_head($1, $2, $3, $4, $5)"),
            c.prepare("SELECT pg_notify('casetrail_head', $1)"),
        )?;
        Ok(Statements {
            lock,
            since,
            ids,
            heads,
            events,
            upsert_heads,
            leaves,
            upper,
            move_head,
            notify,
        })
    }
}

pub struct Writer {
    handle: tokio::runtime::Handle,
    session: tokio_postgres::Config,
    client: Option<Session>,
    shared: Arc<Shared>,
    node: String,
    size: u64,
    root: Hash,
    frontier: Frontier,
    last_recorded_at: DateTime<Utc>,
    /// Committed heads of streams this node wrote or read, valid while no other node has written since `size`.
    heads: quick_cache::unsync::Cache<String, StreamHead>,
    clock_skew: chrono::Duration,
    group_events_max: usize,
    clock: Option<crate::Clock>,
    deadline: Duration,
}

/// The answers of a group, in the order of its jobs.
type Answers = Vec<Result<AppendOutcome, AppendError>>;

/// How one attempt at a group ended.
enum Attempt {
    /// Committed (or nothing to write): the answers stand.
    Done(Answers),
    /// The connection broke while `COMMIT` was under way: the group's new events are at positions
    /// `old + 1 ..= new` if it landed.
    Unsure {
        answers: Answers,
        old: u64,
        new: u64,
        /// The group's events as this node would have stored them, in order.
        bytes: Vec<Vec<u8>>,
        after: Box<Committing>,
    },
}

/// What the writer takes on when a group it could not confirm turns out to have landed.
struct Committing {
    size: u64,
    root: Hash,
    frontier: Frontier,
    last_recorded_at: DateTime<Utc>,
    upper_from: u64,
    upper: Vec<Hash>,
    heads: HashMap<String, StreamHead>,
}

/// The committed state as read under the head row's lock, for one group.
struct Locked<'a> {
    client: &'a Client,
    handle: &'a tokio::runtime::Handle,
    ids: HashMap<Uuid, StoredEvent>,
    heads: HashMap<String, StreamHead>,
    upper: &'a InMemory<'a>,
    deadline: Duration,
    failed_read: RefCell<Option<StoreError>>,
}

impl Committed for Locked<'_> {
    fn by_id(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        // Every id of the group was read under the lock.
        Ok(self.ids.get(&id).cloned())
    }

    fn head(&self, stream: &str) -> Result<StreamHead, StoreError> {
        Ok(self.heads.get(stream).cloned().unwrap_or_default())
    }

    fn latest(&self, stream: &str) -> Result<Option<StoredEvent>, StoreError> {
        let (client, stream) = (self.client, stream.to_owned());
        let deadline = self.deadline;
        let row = self
            .handle
            .block_on(async {
                tokio::time::timeout(
                    deadline,
                    client.query_opt(
                        "SELECT position, bytes FROM events WHERE stream = $1 ORDER BY version DESC LIMIT 1",
                        &[&stream],
                    ),
                )
                .await
            })
            .map_err(|_| StoreError::Unavailable("the database did not answer in time".into()))?
            .map_err(db)?;
        row.map(|r| {
            let raw = crate::raw(&r);
            store::decode_stored(raw.position, &raw.bytes)
        })
        .transpose()
    }

    fn upper(&self) -> &dyn UpperHashes {
        self.upper
    }
}

impl Writer {
    pub fn new(
        config: &crate::Config,
        handle: tokio::runtime::Handle,
        shared: Arc<Shared>,
        opened: Opened,
    ) -> Result<Writer, StoreError> {
        Ok(Writer {
            handle,
            session: config.session("writer")?,
            client: None,
            shared,
            node: config.node.clone(),
            size: opened.head.size,
            root: opened.head.root,
            frontier: opened.frontier,
            last_recorded_at: opened.last_recorded_at,
            heads: quick_cache::unsync::Cache::new(HEAD_CACHE_STREAMS),
            clock_skew: config.clock_skew,
            group_events_max: config.group_events_max,
            clock: config.clock.clone(),
            deadline: config.stall,
        })
    }

    pub fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(jobs) = store::queue::next_group(&mut rx, self.group_events_max) {
            let shared = self.shared.clone();
            let answers = shared.metrics.writing.on(|| self.commit_group(&jobs));
            for (job, answer) in jobs.into_iter().zip(answers) {
                let _ = job.reply.send(answer);
            }
        }
    }

    /// Commits a group, finding out what happened if the connection broke during `COMMIT`; a group that did not
    /// land is decided again, a few times at most.
    fn commit_group(&mut self, jobs: &[Job]) -> Answers {
        let started = Instant::now();
        for round in 0..3 {
            let attempt = match self.attempt(jobs) {
                Ok(attempt) => attempt,
                // A session that died between groups (a restarted server, a failover, a dropped link) fails the
                // first statement: nothing was written, so the group goes again on a new session, once.
                Err(StoreError::Unavailable(_)) if round == 0 && self.client.is_none() => continue,
                Err(e) => {
                    self.client = None;
                    return unavailable(jobs, &e.to_string());
                }
            };
            match attempt {
                Attempt::Done(answers) => {
                    self.record(&answers, started);
                    return answers;
                }
                Attempt::Unsure {
                    mut answers,
                    old,
                    new,
                    bytes,
                    after,
                } => {
                    self.client = None;
                    match self.resolve(old, new, &bytes) {
                        Resolved::Landed => {
                            self.committed(*after);
                            self.record(&answers, started);
                            return answers;
                        }
                        Resolved::NotLanded => continue,
                        Resolved::Unknown(why) => {
                            let why = format!(
                                "the connection to the database broke while the batch was being committed, and the database did not answer within {} s to say whether it landed ({why})",
                                self.deadline.as_secs()
                            );
                            for answer in answers.iter_mut() {
                                if matches!(answer, Ok(o) if o.receipts.iter().any(|r| r.position > old))
                                {
                                    *answer = Err(AppendError::OutcomeUnknown(why.clone()));
                                }
                            }
                            return answers;
                        }
                    }
                }
            }
        }
        unavailable(
            jobs,
            "the batch's commit did not land three times; nothing of it was written",
        )
    }

    /// Waits for `work` on the database, at most the deadline: a database that stops answering is answered for,
    /// not waited on for ever (nothing was committed by a statement before `COMMIT`).
    fn within<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        let deadline = self.deadline;
        match self
            .handle
            .block_on(async { tokio::time::timeout(deadline, work).await })
        {
            Ok(done) => done.map_err(db),
            Err(_) => Err(StoreError::Unavailable(format!(
                "the database did not answer within {} s",
                deadline.as_secs_f64()
            ))),
        }
    }

    /// [`Writer::within`], for work that reports the store's own errors.
    fn within_store<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let deadline = self.deadline;
        self.handle
            .block_on(async { tokio::time::timeout(deadline, work).await })
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "the database did not answer within {} s",
                    deadline.as_secs_f64()
                )))
            })
    }

    fn record(&self, answers: &Answers, started: Instant) {
        let new: usize = answers
            .iter()
            .filter_map(|a| a.as_ref().ok())
            .flat_map(|o| &o.receipts)
            .filter(|r| !r.replayed)
            .count();
        if new > 0 {
            self.shared.metrics.record_group(new, started.elapsed());
        }
    }

    fn client(&mut self) -> Result<&Session, StoreError> {
        if self.client.as_ref().is_some_and(|s| s.client.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            let session = self.session.clone();
            let deadline = self.deadline;
            self.client = Some(self.handle.block_on(async move {
                let client = connect(&session).await?;
                let st = tokio::time::timeout(deadline, Statements::prepare(&client))
                    .await
                    .map_err(|_| {
                        StoreError::Unavailable("the database did not answer in time".into())
                    })?
                    .map_err(db)?;
                Ok::<_, StoreError>(Session { client, st })
            })?);
        }
        Ok(self.client.as_ref().expect("connected"))
    }

    /// One attempt: every statement up to `COMMIT`. An error before `COMMIT` leaves nothing written.
    fn attempt(&mut self, jobs: &[Job]) -> Result<Attempt, StoreError> {
        if let Some(why) = self.shared.failed() {
            return Ok(Attempt::Done(unavailable(jobs, why)));
        }
        self.client()?;
        let session = self.client.take().expect("connected");
        let attempt = self.attempt_on(&session, jobs);
        if attempt.is_err() {
            // Whatever was under way is rolled back (or the session is gone, which rolls it back too).
            let _ = self.within(session.client.batch_execute("ROLLBACK"));
        }
        if !session.client.is_closed() {
            self.client = Some(session);
        }
        attempt
    }

    fn attempt_on(&mut self, session: &Session, jobs: &[Job]) -> Result<Attempt, StoreError> {
        let h = self.handle.clone();
        let (client, st) = (&session.client, &session.st);
        let ids: Vec<Uuid> = jobs
            .iter()
            .flat_map(|j| j.request.events.iter().map(|s| s.event.id))
            .collect();
        let streams: HashSet<String> = jobs
            .iter()
            .flat_map(|j| j.request.events.iter().map(|s| s.event.stream().key()))
            .collect();
        let mut heads = HashMap::with_capacity(streams.len());
        let mut misses = Vec::new();
        for s in streams {
            match self.heads.get(&s) {
                Some(head) => {
                    heads.insert(s, head.clone());
                }
                None => misses.push(s),
            }
        }
        // One round trip: the lock, then (each statement seeing what was committed before the lock was granted)
        // what other nodes wrote since this writer's last group, the group's ids, the heads not cached.
        let (after, limit) = (self.size as i64, CATCH_UP_ROWS + 1);
        let (since_args, ids_args, heads_args): ([Param; 2], [Param; 1], [Param; 1]) =
            ([&after, &limit], [&ids], [&misses]);
        let (_, row, since, id_rows, head_rows) = self.within(async {
            tokio::try_join!(
                client.batch_execute("BEGIN"),
                client.query_one(&st.lock, &[]),
                client.query(&st.since, &since_args),
                client.query(&st.ids, &ids_args),
                client.query(&st.heads, &heads_args),
            )
        })?;
        let size = row.get::<_, i64>(0) as u64;
        if size < self.size {
            self.shared.observe(
                self.size,
                Head {
                    size,
                    root: crate::hash_of(row.get::<_, &[u8]>(1))?,
                },
            );
            self.within(client.batch_execute("ROLLBACK"))?;
            let why = self
                .shared
                .failed()
                .unwrap_or("the log went backwards")
                .to_owned();
            return Ok(Attempt::Done(unavailable(jobs, &why)));
        }
        if size > self.size {
            let head = Head {
                size,
                root: crate::hash_of(row.get::<_, &[u8]>(1))?,
            };
            let last: Option<DateTime<Utc>> = row.get(2);
            let last = last.unwrap_or(DateTime::<Utc>::MIN_UTC);
            let written = if since.len() as i64 > CATCH_UP_ROWS {
                self.catch_up(client, head, last, None)?
            } else {
                self.catch_up(client, head, last, Some(&since))?
            };
            // A cached head of the group's that another node has moved since: read again.
            let stale: Vec<String> = heads
                .keys()
                .filter(|s| written.as_ref().is_none_or(|w| w.contains(s.as_str())))
                .cloned()
                .collect();
            if !stale.is_empty() {
                for s in &stale {
                    heads.remove(s);
                }
                for r in &self.within(client.query(&st.heads, &[&stale]))? {
                    let stream: String = r.get(0);
                    let head = HeadRow::decode(&stream, r.get::<_, &[u8]>(1))?;
                    heads.insert(stream, head);
                }
            }
        }
        let db_now: DateTime<Utc> = row.get(3);
        let now = StoredEvent::truncate_recorded_at(self.clock.as_ref().map_or(db_now, |c| c()));
        let mut by_id = HashMap::with_capacity(id_rows.len());
        for r in &id_rows {
            let raw = crate::raw(r);
            let e = store::decode_stored(raw.position, &raw.bytes)?;
            by_id.insert(e.event.id, e);
        }
        for r in &head_rows {
            let stream: String = r.get(0);
            let head = HeadRow::decode(&stream, r.get::<_, &[u8]>(1))?;
            heads.insert(stream, head);
        }
        let (answers, group, failed_read) = self.shared.upper.with(|upper| {
            let locked = Locked {
                client,
                handle: &h,
                ids: by_id,
                heads,
                upper,
                deadline: self.deadline,
                failed_read: RefCell::new(None),
            };
            let read_failed = |e: StoreError| {
                let why = format!(
                    "a read of the database failed ({e}); nothing of the batch was written"
                );
                locked.failed_read.borrow_mut().get_or_insert(e);
                AppendError::Unavailable(why)
            };
            let decider = Decider {
                committed: &locked,
                size: self.size,
                clock_skew: self.clock_skew,
                read_failed: &read_failed,
            };
            let mut group =
                CommitGroup::new(self.size, self.frontier.clone(), self.last_recorded_at);
            let mut answers = Vec::with_capacity(jobs.len());
            for job in jobs {
                let n = job.request.events.len();
                answers.push(if n == 0 || n > domain::parse::BATCH_EVENTS_MAX {
                    Err(AppendError::BatchSize(n))
                } else {
                    decider.decide_request(&mut group, &job.request, now)
                });
            }
            let failed = locked.failed_read.borrow_mut().take();
            (answers, group, failed)
        });
        // A read that failed while deciding: nothing of the group is written (its answers say so).
        if let Some(e) = failed_read {
            return Err(e);
        }
        if group.records.is_empty() {
            self.within(client.batch_execute("COMMIT"))?;
            return Ok(Attempt::Done(answers));
        }
        let new = self.size + group.records.len() as u64;
        let root = self.root_of(client, &group, new)?;
        let written = self.write(session, &group, new, root)?;
        let after = Committing {
            size: new,
            root,
            frontier: group.growth.frontier.clone(),
            last_recorded_at: group.last_recorded_at,
            upper_from: group.growth.upper_from,
            upper: group.growth.upper.clone(),
            heads: group.heads.clone(),
        };
        match written {
            Written::Committed => {
                self.committed(after);
                Ok(Attempt::Done(answers))
            }
            Written::Unsure => {
                let bytes = group.records.iter().map(|r| r.bytes.clone()).collect();
                Ok(Attempt::Unsure {
                    answers,
                    old: self.size,
                    new,
                    bytes,
                    after: Box::new(after),
                })
            }
        }
    }

    /// The root after the group, from the upper hashes (stored and the group's) and the open tile.
    fn root_of(&self, client: &Client, group: &CommitGroup, new: u64) -> Result<Hash, StoreError> {
        self.shared.upper.with(|upper| {
            let source = |from: u64, to: u64| {
                self.within_store(crate::hashes::leaf_hashes(client, from, to.min(self.size)))
            };
            let reader = group.growth.reader(upper, new, &source);
            tlog_tiles::tree_hash(new, &reader).map_err(|e| reader.explain(e))
        })
    }

    /// Every statement of the group's write and `COMMIT`, sent at once (one round trip). The head moves through
    /// `casetrail_move_head`, which fails the transaction unless the head row is still at this writer's size, so
    /// a `COMMIT` that follows a failed statement only ends a rolled-back transaction. An error the server
    /// answered means nothing was written (`Err`); an answer that did not come (a broken connection, the
    /// deadline) leaves the outcome to be found out (`Unsure`, see `resolve`).
    fn write(
        &self,
        session: &Session,
        group: &CommitGroup,
        new: u64,
        root: Hash,
    ) -> Result<Written, StoreError> {
        let n = group.records.len();
        let (mut positions, mut ids, mut streams, mut versions, mut bytes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for r in &group.records {
            positions.push(r.stored.position as i64);
            ids.push(r.stored.event.id);
            streams.push(r.stream.as_str());
            versions.push(r.stored.version as i64);
            bytes.push(r.bytes.as_slice());
        }
        let (head_streams, head_versions, head_bytes): (Vec<&str>, Vec<i64>, Vec<Vec<u8>>) = group
            .heads
            .iter()
            .map(|(s, h)| (s.as_str(), h.version as i64, HeadRow::encode(h)))
            .fold(
                (Vec::new(), Vec::new(), Vec::new()),
                |mut acc, (s, v, b)| {
                    acc.0.push(s);
                    acc.1.push(v);
                    acc.2.push(b);
                    acc
                },
            );
        let growth = &group.growth;
        let (first, prefixes) = ((self.size + 1) as i64, pack_prefixes(&growth.leaves));
        let (upper_from, upper) = (growth.upper_from as i64, pack(&growth.upper));
        let (old, new, root, writer) = (self.size as i64, new as i64, root.0.to_vec(), &self.node);
        let last_recorded_at = group.last_recorded_at;
        let new_text = new.to_string();
        let events: [Param; 5] = [&positions, &ids, &streams, &versions, &bytes];
        let heads: [Param; 3] = [&head_streams, &head_versions, &head_bytes];
        let leaves: [Param; 2] = [&first, &prefixes];
        let uppers: [Param; 2] = [&upper_from, &upper];
        let head: [Param; 5] = [&old, &new, &root, &last_recorded_at, writer];
        let notify: [Param; 1] = [&new_text];
        let (client, st) = (&session.client, &session.st);
        let deadline = self.deadline;
        let answered = self.handle.block_on(async {
            let upper = async {
                if growth.upper.is_empty() {
                    return Ok(0);
                }
                client.execute(&st.upper, &uppers).await
            };
            let statements = async {
                let (events, heads, leaves, upper, head, notify, commit) = tokio::join!(
                    client.execute(&st.events, &events),
                    client.execute(&st.upsert_heads, &heads),
                    client.execute(&st.leaves, &leaves),
                    upper,
                    client.execute(&st.move_head, &head),
                    client.execute(&st.notify, &notify),
                    client.batch_execute("COMMIT"),
                );
                [
                    events,
                    heads,
                    leaves,
                    upper,
                    head,
                    notify,
                    commit.map(|()| 0),
                ]
            };
            tokio::time::timeout(deadline, statements).await
        });
        let Ok(answers) = answered else {
            return Ok(Written::Unsure);
        };
        // A statement the server refused: the transaction was rolled back, `COMMIT` only ended it.
        if let Some(refused) = answers
            .iter()
            .filter_map(|a| a.as_ref().err())
            .find(|e| e.as_db_error().is_some())
        {
            return Err(StoreError::Database(refused.to_string()));
        }
        if answers.iter().any(Result::is_err) {
            return Ok(Written::Unsure);
        }
        Ok(Written::Committed)
    }

    /// Takes on a committed group.
    fn committed(&mut self, c: Committing) {
        self.size = c.size;
        self.root = c.root;
        self.frontier = c.frontier;
        self.last_recorded_at = c.last_recorded_at;
        self.shared.upper.extend(c.upper_from, &c.upper);
        for (stream, head) in c.heads {
            self.heads.insert(stream, head);
        }
        self.shared.advance(Head {
            size: c.size,
            root: c.root,
        });
    }

    /// Other nodes wrote since this writer's last group: takes on their leaves, the upper hashes of any tile they
    /// completed and the last `recorded_at`, and forgets the heads of the streams they wrote. `since` are their
    /// events (position, stream, bytes) when there were few enough to read with the lock; without them, the open
    /// tile is read again and every cached head forgotten. Answers the streams written, when known.
    fn catch_up(
        &mut self,
        client: &Client,
        head: Head,
        last_recorded_at: DateTime<Utc>,
        since: Option<&[Row]>,
    ) -> Result<Option<HashSet<String>>, StoreError> {
        let size = head.size;
        let contiguous = |rows: &[Row]| {
            rows.len() as u64 == size - self.size
                && rows
                    .iter()
                    .zip(self.size + 1..)
                    .all(|(r, p)| r.get::<_, i64>(0) as u64 == p)
        };
        let (tile, written) = match since {
            Some(rows) if self.frontier.tile.len() as u64 == self.size % TILE => {
                if !contiguous(rows) {
                    return Err(StoreError::IndexMismatch(format!(
                        "the events after position {} are not the {} the head row counts",
                        self.size,
                        size - self.size
                    )));
                }
                let mut tile = self.frontier.tile.clone();
                let mut written = HashSet::new();
                for r in rows {
                    let stream: &str = r.get(1);
                    self.heads.remove(stream);
                    written.insert(stream.to_owned());
                    tile.push(tlog_tiles::record_hash(r.get::<_, &[u8]>(2)));
                }
                let keep = (size % TILE) as usize;
                (tile.split_off(tile.len() - keep), Some(written))
            }
            _ => {
                self.heads.clear();
                (
                    self.within_store(leaf_hashes(client, size - size % TILE, size))?,
                    None,
                )
            }
        };
        // The upper hashes of any tile the others completed.
        let needed = store::merkle::stored_hash_count(size / TILE);
        let have = self.shared.upper.len();
        if have < needed {
            for (first, hashes) in self.within_store(read_runs(client, have))? {
                self.shared.upper.extend(first, &hashes);
            }
        }
        if self.shared.upper.len() < needed {
            return Err(StoreError::IndexMismatch(format!(
                "the audit tree's stored hashes stop at {} of the {needed} a log of {size} events has",
                self.shared.upper.len()
            )));
        }
        self.frontier = Frontier { tile };
        self.size = size;
        self.root = head.root;
        self.last_recorded_at = last_recorded_at;
        self.shared.advance(head);
        Ok(written)
    }

    /// Finds out whether a group whose `COMMIT` got no answer landed.
    /// Landed only if the events at `old + 1 ..= new` are exactly this group's bytes: another node that wrote the
    /// same ids meanwhile (a client that retried elsewhere) wrote other bytes (its own `recorded_at`, `source`),
    /// and this group then did not land; deciding it again answers with that node's receipts.
    fn resolve(&mut self, old: u64, new: u64, bytes: &[Vec<u8>]) -> Resolved {
        let deadline = Instant::now() + self.deadline;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            let session = self.session.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            let found = self.handle.block_on(async move {
                let mut client = tokio::time::timeout(left, connect(&session))
                    .await
                    .map_err(|_| StoreError::Unavailable("connecting timed out".into()))??;
                let tx = client.transaction().await.map_err(db)?;
                tx.batch_execute(&format!("SET LOCAL lock_timeout = {}", left.as_millis().max(1)))
                    .await
                    .map_err(db)?;
                // Waits for the old transaction, if it is still running: it holds this row until it ends.
                tx.query_one("SELECT size FROM log_head WHERE id = 1 FOR UPDATE", &[])
                    .await
                    .map_err(db)?;
                let rows = tx
                    .query(
                        "SELECT bytes FROM events WHERE position > $1 AND position <= $2 ORDER BY position",
                        &[&(old as i64), &(new as i64)],
                    )
                    .await
                    .map_err(db)?;
                tx.rollback().await.map_err(db)?;
                Ok::<_, StoreError>(rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect::<Vec<_>>())
            });
            match found {
                Ok(stored) if stored == bytes => return Resolved::Landed,
                Ok(_) => return Resolved::NotLanded,
                Err(e) => {
                    last = e.to_string();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        Resolved::Unknown(last)
    }
}

/// How a group's write and `COMMIT` ended, when the server refused none of it.
enum Written {
    Committed,
    /// No answer (a broken connection, the deadline): the group may have landed.
    Unsure,
}

enum Resolved {
    Landed,
    NotLanded,
    Unknown(String),
}

/// Every job answered `Unavailable`: nothing of the group was written.
fn unavailable(jobs: &[Job], why: &str) -> Answers {
    jobs.iter()
        .map(|_| Err(AppendError::Unavailable(why.to_owned())))
        .collect()
}

/// `rebuild-indexes` on PostgreSQL: the stream heads, the audit runs and the head's root recomputed from the
/// events alone, in one transaction that holds the head row (no writer of any node moves meanwhile).
pub fn rebuild(log: &PgLog, progress: &mut dyn FnMut(u64)) -> Result<Head, StoreError> {
    const PAGE: i64 = 20_000;
    let session = log.session.clone();
    // This process's own writer session does not count: it writes nothing while this runs.
    let own_writer = session
        .get_application_name()
        .and_then(|a| a.strip_suffix("-maintenance"))
        .map(|node| format!("{node}-writer"))
        .unwrap_or_default();
    let (done, seen) = std::sync::mpsc::channel::<u64>();
    let work = async move {
        let mut client = connect(&session).await?;
        // Every node keeps a copy of the audit hashes and the head it has seen: a rebuild under running nodes
        // would be undone by them. Stop them first.
        let running: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name LIKE 'casetrail-%-writer' AND application_name <> $1",
                &[&own_writer],
            )
            .await
            .map_err(db)?
            .get(0);
        if running > 0 {
            return Err(StoreError::Format(format!(
                "{running} casetrail node(s) are connected to this log; stop every node before rebuild-indexes"
            )));
        }
        let tx = client.transaction().await.map_err(db)?;
        let size: i64 = tx
            .query_one("SELECT size FROM log_head WHERE id = 1 FOR UPDATE", &[])
            .await
            .map_err(db)?
            .get(0);
        let mut heads: HashMap<String, StreamHead> = HashMap::new();
        let mut growth = store::merkle::Growth::new(0, Frontier::default());
        let none = InMemory(&[]);
        let mut at = 0i64;
        while at < size {
            let rows = tx
                .query(
                    "SELECT position, bytes FROM events WHERE position > $1 ORDER BY position LIMIT $2",
                    &[&at, &PAGE],
                )
                .await
                .map_err(db)?;
            if rows.is_empty() {
                return Err(StoreError::IndexMismatch(format!(
                    "the events stop at position {at}, the head says {size}"
                )));
            }
            for r in &rows {
                let raw = crate::raw(r);
                if raw.position != at as u64 + 1 {
                    return Err(StoreError::IndexMismatch(format!(
                        "position {} follows {at}",
                        raw.position
                    )));
                }
                growth.push(raw.position - 1, tlog_tiles::record_hash(&raw.bytes), &none)?;
                let e = store::decode_stored(raw.position, &raw.bytes)?;
                domain::apply_in_place(
                    heads.entry(e.event.stream_key().to_string()).or_default(),
                    &e.event,
                );
                at = raw.position as i64;
            }
            let _ = done.send(at as u64);
        }
        let outside = |_, _| Err(StoreError::Tree("a leaf outside the last tile".into()));
        let root = {
            let reader = growth.reader(&none, size as u64, &outside);
            tlog_tiles::tree_hash(size as u64, &reader).map_err(|e| reader.explain(e))?
        };
        tx.batch_execute("TRUNCATE streams, audit_upper, audit_leaves")
            .await
            .map_err(db)?;
        let heads: Vec<(String, StreamHead)> = heads.into_iter().collect();
        for chunk in heads.chunks(PAGE as usize) {
            let streams: Vec<&str> = chunk.iter().map(|(s, _)| s.as_str()).collect();
            let versions: Vec<i64> = chunk.iter().map(|(_, h)| h.version as i64).collect();
            let bytes: Vec<Vec<u8>> = chunk.iter().map(|(_, h)| HeadRow::encode(h)).collect();
            tx.execute(
                "INSERT INTO streams (stream, version, head) SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[])",
                &[&streams, &versions, &bytes],
            )
            .await
            .map_err(db)?;
        }
        for (i, leaves) in growth.leaves.chunks(65_536).enumerate() {
            tx.execute(
                "INSERT INTO audit_leaves (first_position, prefixes) VALUES ($1, $2)",
                &[&(i as i64 * 65_536 + 1), &pack_prefixes(leaves)],
            )
            .await
            .map_err(db)?;
        }
        for (i, upper) in growth.upper.chunks(4_096).enumerate() {
            tx.execute(
                "INSERT INTO audit_upper (first_index, hashes) VALUES ($1, $2)",
                &[&(i as i64 * 4_096), &pack(upper)],
            )
            .await
            .map_err(db)?;
        }
        tx.execute(
            "UPDATE log_head SET root = $1 WHERE id = 1",
            &[&root.0.as_slice()],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Head {
            size: size as u64,
            root,
        })
    };
    let handle = log.handle.clone();
    let running = std::thread::spawn(move || crate::run_on(&handle, work));
    for n in seen {
        progress(n);
    }
    let head = running
        .join()
        .map_err(|_| StoreError::Unavailable("the rebuild panicked".into()))??;
    progress(head.size);
    Ok(head)
}
