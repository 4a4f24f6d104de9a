//! Opening (making the schema on an empty database), and what operators run: stats, verify, rebuild.

use crate::hashes::{leaf_hashes, read_runs};
use crate::schema::{FORMAT, LOG_WRITER, MOVE_HEAD, SCHEMA};
use crate::{connect, db, Config, HeadRow, PgLog};
use chrono::{DateTime, Utc};
use domain::{decide, Context, StreamHead};
use std::collections::{BTreeMap, HashMap};
use store::merkle::{stored_hash_count, Frontier, Growth, InMemory, TILE};
use store::{EventLog, Hash, Head, Maintenance, Stats, StoreError, VerifyReport, WriterMetrics};

/// What a node reads of the log when it opens.
pub struct Opened {
    pub head: Head,
    pub last_recorded_at: DateTime<Utc>,
    pub upper: Vec<Hash>,
    pub frontier: Frontier,
}

/// Makes the schema if the database has none (one node at a time, under an advisory lock), checks its format,
/// and reads the head, the upper hashes and the open tile.
pub async fn prepare(
    config: &Config,
    session: &tokio_postgres::Config,
) -> Result<Opened, StoreError> {
    let mut client = connect(session).await?;
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock(7238402919)", &[])
        .await
        .map_err(db)?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('log_head') IS NOT NULL", &[])
        .await
        .map_err(db)?
        .get(0);
    if !exists {
        if config.inspection {
            return Err(StoreError::Format(format!(
                "{} holds no casetrail log",
                crate::redact(&config.url)
            )));
        }
        tx.batch_execute(SCHEMA).await.map_err(db)?;
        tx.execute(
            "INSERT INTO log_meta (id, format) VALUES (1, $1)",
            &[&FORMAT],
        )
        .await
        .map_err(db)?;
        tx.execute(
            "INSERT INTO log_head (id, size, root) VALUES (1, 0, $1)",
            &[&tlog_tiles::EMPTY_HASH.0.as_slice()],
        )
        .await
        .map_err(db)?;
    }
    let format: String = tx
        .query_one("SELECT format FROM log_meta WHERE id = 1", &[])
        .await
        .map_err(db)?
        .get(0);
    if format != FORMAT {
        return Err(StoreError::Format(format!(
            "{} holds a log of format {format:?}; this casetrail reads {FORMAT:?}",
            crate::redact(&config.url)
        )));
    }
    let missing: bool = tx
        .query_one(
            "SELECT to_regprocedure('casetrail_move_head(bigint, bigint, bytea, timestamptz, text)') IS NULL",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    if missing {
        tx.batch_execute(MOVE_HEAD).await.map_err(db)?;
    }
    let missing: bool = tx
        .query_one("SELECT to_regclass('log_writer') IS NULL", &[])
        .await
        .map_err(db)?
        .get(0);
    if missing {
        tx.batch_execute(LOG_WRITER).await.map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    read_state(&client).await
}

/// The committed head with what a writer needs to continue from it.
pub async fn read_state(client: &tokio_postgres::Client) -> Result<Opened, StoreError> {
    let row = client
        .query_one(
            "SELECT size, root, last_recorded_at FROM log_head WHERE id = 1",
            &[],
        )
        .await
        .map_err(db)?;
    let size = row.get::<_, i64>(0) as u64;
    let head = Head {
        size,
        root: crate::hash_of(row.get::<_, &[u8]>(1))?,
    };
    let last_recorded_at: Option<DateTime<Utc>> = row.get(2);
    let mut upper = Vec::new();
    for (first, hashes) in read_runs(client, 0).await? {
        if first as usize != upper.len() {
            return Err(StoreError::IndexMismatch(format!(
                "the audit tree's stored hashes have a gap at index {}",
                upper.len()
            )));
        }
        upper.extend(hashes);
    }
    if upper.len() as u64 != stored_hash_count(size / TILE) {
        return Err(StoreError::IndexMismatch(format!(
            "the audit tree holds {} upper hashes, a log of {size} events {}",
            upper.len(),
            stored_hash_count(size / TILE)
        )));
    }
    let frontier = Frontier {
        tile: leaf_hashes(client, size - size % TILE, size).await?,
    };
    Ok(Opened {
        head,
        last_recorded_at: last_recorded_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
        upper,
        frontier,
    })
}

impl Maintenance for PgLog {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn metrics(&self) -> &WriterMetrics {
        &self.shared.metrics
    }

    fn write_failure(&self) -> Option<String> {
        self.shared.failed().map(str::to_owned)
    }

    fn unresponsive(&self) -> store::Boxed<String> {
        let (shared, bound) = (self.shared.clone(), self.stall);
        Box::pin(async move {
            loop {
                if let Some(t) = shared.metrics.writing.for_how_long() {
                    if t > bound {
                        return format!(
                            "a group's commit did not finish within {} s (the database does not answer)",
                            bound.as_secs_f64()
                        );
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        })
    }

    fn stall_bound(&self) -> std::time::Duration {
        self.stall
    }

    fn close(&self) {
        drop(self.sender.lock().expect("sender lock").take());
        if let Some(handle) = self.writer.lock().expect("writer lock").take() {
            if handle.join().is_err() {
                eprintln!("casetrail: the log writer panicked");
            }
        }
        let _ = self.stop.send(true);
        if let Some(runtime) = self.runtime.lock().expect("runtime lock").take() {
            runtime.shutdown_background();
        }
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        let head = self.head();
        let size = head.size as i64;
        let (types, row) = self.read(move |c| async move {
            let types = c
                .query(
                    "SELECT convert_from(bytes, 'UTF8')::json ->> 'type', count(*), sum(length(bytes))::int8 \
                     FROM events WHERE position <= $1 GROUP BY 1",
                    &[&size],
                )
                .await
                .map_err(db)?;
            let row = c
                .query_one(
                    "SELECT (SELECT count(*) FROM streams), \
                            (SELECT count(*) FROM streams WHERE position('/' in stream) = 0), \
                            pg_table_size('events'), \
                            pg_indexes_size('events') + pg_total_relation_size('streams') \
                              + pg_total_relation_size('audit_upper') + pg_total_relation_size('audit_leaves'), \
                            pg_database_size(current_database()), \
                            (SELECT convert_from(bytes, 'UTF8')::json ->> 'recorded_at' FROM events WHERE position = 1), \
                            (SELECT convert_from(bytes, 'UTF8')::json ->> 'recorded_at' FROM events WHERE position = $1)",
                    &[&size],
                )
                .await
                .map_err(db)?;
            let types: Vec<(String, i64, i64)> =
                types.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
            let row: (i64, i64, i64, i64, i64, Option<String>, Option<String>) = (
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
            );
            Ok((types, row))
        })?;
        let at = |t: Option<String>| {
            t.and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        Ok(Stats {
            size: head.size,
            root: head.root.to_string(),
            streams: row.0 as u64,
            dossiers: row.1 as u64,
            events_by_type: types
                .iter()
                .map(|(t, n, _)| (t.clone(), *n as u64))
                .collect::<BTreeMap<_, _>>(),
            event_bytes: types.iter().map(|(_, _, b)| *b as u64).sum(),
            stored_as: "the events table",
            stored_bytes: row.2 as u64,
            index_bytes: row.3 as u64,
            disk_bytes: row.4 as u64,
            first_recorded_at: at(row.5),
            last_recorded_at: at(row.6),
        })
    }

    fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport, StoreError> {
        let stored = stored(self)?;
        let head = stored.head;
        let mut v = Verification::new();
        let mut at = 0;
        while at < head.size {
            let page = self.read_raw_after(at, 10_000)?;
            let Some(last) = page.last().map(|e| e.position) else {
                v.problem(at + 1, "the event is missing".into());
                break;
            };
            for raw in page {
                v.check(raw)?;
            }
            at = last;
            progress(at);
        }
        v.finish(stored)
    }

    fn rebuild_indexes(&self, progress: &mut dyn FnMut(u64)) -> Result<Head, StoreError> {
        crate::writer::rebuild(self, progress)
    }

    fn elect(&self, address: Option<String>, secret: String) {
        self.shared.election.join(address, secret);
    }

    fn pin(&self, verifier_key: &str, rules: &str) -> Result<(), StoreError> {
        let (key, mine) = (verifier_key.to_owned(), rules.to_owned());
        let (pinned_key, pinned_rules): (String, String) = self.read(move |c| async move {
            let row = c
                .query_one(
                    "UPDATE log_meta SET verifier_key = coalesce(verifier_key, $1), rules = coalesce(rules, $2) \
                     WHERE id = 1 RETURNING verifier_key, rules",
                    &[&key, &mine],
                )
                .await
                .map_err(db)?;
            Ok((row.get(0), row.get(1)))
        })?;
        if pinned_key != verifier_key {
            return Err(StoreError::Format(format!(
                "this node's signing key is not the log's: the log's checkpoints are signed with {pinned_key}, this node's key is {verifier_key}; give every node the same key file (--audit-key)"
            )));
        }
        let differ: Vec<String> = rules
            .lines()
            .filter(|line| !pinned_rules.lines().any(|l| l == *line))
            .map(|line| {
                let name = line.split([' ', '=']).next().unwrap_or(line);
                let theirs = pinned_rules
                    .lines()
                    .find(|l| l.split([' ', '=']).next() == Some(name))
                    .unwrap_or("(not set)");
                format!("{line} here, {theirs} in the log")
            })
            .collect();
        if !differ.is_empty() {
            return Err(StoreError::Format(format!(
                "this node's settings differ from those the log's nodes share, so it would accept or count otherwise: {}",
                differ.join("; ")
            )));
        }
        Ok(())
    }
}

/// What `verify` compares the events with, read in one snapshot (a read-only repeatable-read transaction), so
/// that writes of running nodes during the run are neither seen nor reported as damage: the head, the upper audit
/// hashes, the leaf-hash prefix runs, the stream heads.
struct Stored {
    head: Head,
    upper: Vec<Hash>,
    prefixes: Vec<(u64, Vec<u8>)>,
    heads: Vec<(String, Vec<u8>)>,
}

fn stored(log: &PgLog) -> Result<Stored, StoreError> {
    log.read(|mut c| async move {
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        let head = crate::listen::read_head(&*tx).await?;
        let upper = read_runs(&*tx, 0)
            .await?
            .into_iter()
            .flat_map(|(_, h)| h)
            .collect();
        let prefixes = tx
            .query(
                "SELECT first_position, prefixes FROM audit_leaves ORDER BY first_position",
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1)))
            .collect();
        let heads = tx
            .query("SELECT stream, head FROM streams", &[])
            .await
            .map_err(db)?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1)))
            .collect();
        tx.commit().await.map_err(db)?;
        Ok(Stored {
            head,
            upper,
            prefixes,
            heads,
        })
    })
}

/// One `verify` run over the events in order.
struct Verification {
    problems: Vec<(u64, String)>,
    size: u64,
    growth: Growth,
    heads: HashMap<String, StreamHead>,
    leaves: Vec<Hash>,
}

impl Verification {
    fn new() -> Verification {
        Verification {
            problems: Vec::new(),
            size: 0,
            growth: Growth::new(0, Frontier::default()),
            heads: HashMap::new(),
            leaves: Vec::new(),
        }
    }

    fn problem(&mut self, position: u64, what: String) {
        self.problems.push((position, what));
    }

    /// Decodes, re-hashes and re-decides one event.
    fn check(&mut self, raw: store::RawEvent) -> Result<(), StoreError> {
        let position = raw.position;
        if position != self.size + 1 {
            self.problem(self.size + 1, format!("the next event is at {position}"));
        }
        self.size = position;
        let leaf = tlog_tiles::record_hash(&raw.bytes);
        self.leaves.push(leaf);
        // Every upper hash of this tree is its own (pending in `growth`): none is read from elsewhere.
        self.growth.push(position - 1, leaf, &InMemory(&[]))?;
        let event = match store::decode_stored(position, &raw.bytes) {
            Ok(e) => e,
            Err(e) => {
                self.problem(position, e.to_string());
                return Ok(());
            }
        };
        let key = event.event.stream_key().to_string();
        let head = self.heads.get(&key).cloned().unwrap_or_default();
        let ctx = Context {
            now: event.recorded_at,
            // Judged as when it was recorded; a business time's distance from that clock was judged then.
            clock_skew: chrono::Duration::days(36_500),
        };
        match decide(&head, &event.event, None, &ctx) {
            Ok(next) if next.version == event.version => {
                self.heads.insert(key, next);
            }
            Ok(next) => {
                self.problem(
                    position,
                    format!(
                        "stored as version {}, but it is version {}",
                        event.version, next.version
                    ),
                );
                self.heads.insert(key, next);
            }
            Err(why) => self.problem(position, format!("it breaks its stream's rules: {why}")),
        }
        Ok(())
    }

    /// Compares what was recomputed with what is stored: the root, the upper hashes, the leaf prefixes, the heads.
    fn finish(mut self, snapshot: Stored) -> Result<VerifyReport, StoreError> {
        let head = snapshot.head;
        let stored = snapshot.upper;
        if stored != self.growth.upper {
            let at = stored
                .iter()
                .zip(&self.growth.upper)
                .position(|(a, b)| a != b)
                .unwrap_or(stored.len().min(self.growth.upper.len()));
            self.problem(
                (at as u64 + 1) * TILE,
                "the stored audit hashes differ from the events' (first differing upper hash)"
                    .into(),
            );
        }
        let mut next = 1u64;
        for (first, run) in snapshot.prefixes {
            if first != next {
                self.problem(next, "the leaf-hash prefixes have a gap".into());
            }
            for (i, prefix) in run.chunks(store::merkle::PREFIX_BYTES).enumerate() {
                let position = first + i as u64;
                match self.leaves.get(position as usize - 1) {
                    Some(leaf) if leaf.0[..prefix.len()] == *prefix => {}
                    Some(_) => self.problem(
                        position,
                        "its bytes changed: its leaf hash is not the one stored when it was written".into(),
                    ),
                    None => {}
                }
            }
            next = first + (run.len() / store::merkle::PREFIX_BYTES) as u64;
        }
        let stored_heads = snapshot.heads;
        let streams = stored_heads.len() as u64;
        for (stream, bytes) in &stored_heads {
            let stored = HeadRow::decode(stream, bytes)?;
            if self.heads.get(stream) != Some(&stored) {
                self.problem(
                    head.size,
                    format!("the stored head of {stream} differs from its events"),
                );
            }
        }
        if stored_heads.len() != self.heads.len() {
            self.problem(
                head.size,
                format!(
                    "{} streams are stored, the events have {}",
                    stored_heads.len(),
                    self.heads.len()
                ),
            );
        }
        let none = InMemory(&[]);
        let outside = |_, _| Err(StoreError::Tree("a leaf outside the last tile".into()));
        let reader = self.growth.reader(&none, self.size, &outside);
        let root = tlog_tiles::tree_hash(self.size, &reader).map_err(|e| reader.explain(e))?;
        if self.size == head.size && root != head.root {
            self.problem(
                head.size,
                format!(
                    "the stored root {} is not the events' root {root}",
                    head.root
                ),
            );
        }
        self.problems.sort_by_key(|(p, _)| *p);
        Ok(VerifyReport {
            size: head.size,
            indexed_through: head.size,
            streams,
            root: self.problems.is_empty().then(|| root.to_string()),
            problems: self.problems,
        })
    }
}
