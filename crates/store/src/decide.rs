//! What every store's writer decides, and how: a group of requests judged in order against the committed log plus
//! what the group has accepted so far, each request all or nothing. The writers differ only in where committed
//! state comes from ([`Committed`]: sled's index and caches, or PostgreSQL rows read under the head row's lock)
//! and in how a group is written; so both backends accept, refuse, number and hash exactly alike.

use crate::merkle::{Frontier, Growth, UpperHashes};
use crate::{
    AppendError, AppendOutcome, AppendRequest, EventRefusal, Receipt, Refusal, StoreError,
};
use chrono::{DateTime, Utc};
use domain::{decide, AgencyCode, Context, EventData, StoredEvent, Stream, StreamHead};
use std::collections::HashMap;
use tlog_tiles::record_hash;
use uuid::Uuid;

/// The committed state a writer decides against.
pub trait Committed {
    /// The committed event with this id.
    fn by_id(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError>;
    /// A stream's committed head (the default head when it has no events).
    fn head(&self, stream: &str) -> Result<StreamHead, StoreError>;
    /// A stream's last committed event.
    fn latest(&self, stream: &str) -> Result<Option<StoredEvent>, StoreError>;
    /// The upper audit tree's committed stored hashes.
    fn upper(&self) -> &dyn UpperHashes;
}

/// Judges requests for one group.
pub struct Decider<'a> {
    pub committed: &'a dyn Committed,
    /// The committed size the group starts after.
    pub size: u64,
    pub clock_skew: chrono::Duration,
    /// What a failed read makes of the request being decided.
    pub read_failed: &'a dyn Fn(StoreError) -> AppendError,
}

/// A new event of the current group, ready to write.
pub struct Record {
    pub stored: StoredEvent,
    pub bytes: Vec<u8>,
    pub stream: String,
}

/// What the group has decided so far, on top of what is committed.
pub struct CommitGroup {
    pub heads: HashMap<String, StreamHead>,
    pub ids: HashMap<Uuid, usize>,
    pub records: Vec<Record>,
    /// What the group adds to the audit tree.
    pub growth: Growth,
    pub last_recorded_at: DateTime<Utc>,
}

impl CommitGroup {
    /// An empty group after `size` committed events, whose audit tile is `frontier`.
    pub fn new(size: u64, frontier: Frontier, last_recorded_at: DateTime<Utc>) -> CommitGroup {
        CommitGroup {
            heads: HashMap::new(),
            ids: HashMap::new(),
            records: Vec::new(),
            growth: Growth::new(size, frontier),
            last_recorded_at,
        }
    }
}

/// What one request has decided so far, on top of the group: joins the group only if the whole request is
/// accepted.
struct Pending {
    heads: HashMap<String, StreamHead>,
    ids: HashMap<Uuid, usize>,
    records: Vec<Record>,
    last_recorded_at: DateTime<Utc>,
}

/// The answer to an event whose id was stored before: its original receipt for the same content, else a refusal.
pub fn replay(earlier: &StoredEvent, event: &domain::Event) -> Result<Receipt, Refusal> {
    if earlier.event == *event {
        Ok(Receipt {
            id: event.id,
            position: earlier.position,
            version: earlier.version,
            replayed: true,
        })
    } else {
        Err(Refusal::IdReused {
            position: earlier.position,
        })
    }
}

/// The times and source an event is judged and stored with: now (never before the log's last record) and the
/// request's source for a new event; for a restored one, those it was exported with, which must fit where it
/// would land. Returns (the time its rules are judged at, `recorded_at`, `source`).
fn when_recorded(
    submitted: &domain::Submitted,
    position: u64,
    last_recorded_at: DateTime<Utc>,
    now: DateTime<Utc>,
    source: &str,
) -> Result<(DateTime<Utc>, DateTime<Utc>, String), Refusal> {
    let Some(f) = &submitted.stored else {
        let source = submitted.source.as_deref().unwrap_or(source);
        return Ok((now, now.max(last_recorded_at), source.to_owned()));
    };
    if f.position != position {
        return Err(Refusal::StoredFields(format!(
            "it was exported at position {}, but would be stored at {position}",
            f.position
        )));
    }
    if f.recorded_at < last_recorded_at {
        return Err(Refusal::StoredFields(format!(
            "its recorded_at {} is before the log's last, {}",
            f.recorded_at, last_recorded_at
        )));
    }
    // A restored event is judged as it was when it was recorded.
    Ok((f.recorded_at, f.recorded_at, f.source.clone()))
}

/// Turns into `unavailable` every answer that names a position past `committed`: the group holding it was not
/// written. (A replay of an event that an earlier request of the same group added names such a position too.)
pub fn unwritten<R>(
    answers: &mut [(R, Result<AppendOutcome, AppendError>)],
    why: &str,
    committed: u64,
) {
    for (_, answer) in answers.iter_mut() {
        if matches!(answer, Ok(outcome) if outcome.receipts.iter().any(|r| r.position > committed))
        {
            *answer = Err(AppendError::Unavailable(why.to_owned()));
        }
    }
}

impl Decider<'_> {
    /// Decides one request against the committed log plus the group so far; on success adds its new events to
    /// the group. A refused request leaves the group as it was.
    pub fn decide_request(
        &self,
        group: &mut CommitGroup,
        request: &AppendRequest,
        now: DateTime<Utc>,
    ) -> Result<AppendOutcome, AppendError> {
        let n = request.events.len();
        let mut pending = Pending {
            heads: HashMap::with_capacity(n),
            ids: HashMap::with_capacity(n),
            records: Vec::with_capacity(n),
            last_recorded_at: group.last_recorded_at,
        };
        let mut receipts = Vec::with_capacity(n);
        let mut refusals = Vec::new();
        for (index, submitted) in request.events.iter().enumerate() {
            let event = &submitted.event;
            if let Err(why) = event.check() {
                panic!(
                    "the parser let through an event that breaks the envelope invariants: {why}"
                );
            }
            let decided = match self
                .earlier(group, &pending, event.id)
                .map_err(|e| self.read_failed(e))?
            {
                Some(earlier) => replay(&earlier, event),
                None => self
                    .decide_new(group, &mut pending, submitted, &request.source, now)
                    .map_err(|e| self.read_failed(e))?,
            };
            match decided {
                Ok(receipt) => receipts.push(receipt),
                Err(refusal) => refusals.push(EventRefusal {
                    index,
                    id: event.id,
                    refusal,
                }),
            }
        }
        if !refusals.is_empty() {
            return Err(AppendError::Refused(refusals));
        }
        self.merge(group, pending)
            .map_err(|e| self.read_failed(e))?;
        Ok(AppendOutcome { receipts })
    }

    /// What a failed read makes of the request: the store's own answer (sled refuses writes until it is
    /// reopened, so that no later append can succeed past a failure whose extent is unknown).
    fn read_failed(&self, e: StoreError) -> AppendError {
        (self.read_failed)(e)
    }

    /// The event stored earlier with this id, if any: in this request, in the group, or in the log.
    fn earlier(
        &self,
        group: &CommitGroup,
        pending: &Pending,
        id: Uuid,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let decided = pending
            .ids
            .get(&id)
            .map(|&i| &pending.records[i])
            .or_else(|| group.ids.get(&id).map(|&i| &group.records[i]));
        match decided {
            Some(r) => Ok(Some(r.stored.clone())),
            None => self.committed.by_id(id),
        }
    }

    /// Decides an event whose id is new: its stream's rules, its stored fields if it is restored, the agency
    /// tree. Accepted, it joins `pending`; the outer error is a failed read, the inner a refusal.
    fn decide_new(
        &self,
        group: &CommitGroup,
        pending: &mut Pending,
        submitted: &domain::Submitted,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Receipt, Refusal>, StoreError> {
        let event = &submitted.event;
        let stream = event.stream().key();
        let head = match pending
            .heads
            .get(&stream)
            .or_else(|| group.heads.get(&stream))
        {
            Some(h) => h.clone(),
            None => self.committed.head(&stream)?,
        };
        let position = self.size + (group.records.len() + pending.records.len()) as u64 + 1;
        let (ctx_now, recorded_at, source) =
            match when_recorded(submitted, position, pending.last_recorded_at, now, source) {
                Ok(when) => when,
                Err(refusal) => return Ok(Err(refusal)),
            };
        let ctx = Context {
            now: ctx_now,
            clock_skew: self.clock_skew,
        };
        let next = match decide(&head, event, submitted.expected_version, &ctx) {
            Ok(next) => next,
            Err(rejection) => return Ok(Err(Refusal::Rule(rejection))),
        };
        if let Err(cycle) = self.agency_tree_kept(event, group, &pending.records)? {
            return Ok(Err(Refusal::Rule(cycle)));
        }
        if let Some(f) = submitted
            .stored
            .as_ref()
            .filter(|f| f.version != next.version)
        {
            return Ok(Err(Refusal::StoredFields(format!(
                "it was exported as version {} of its stream, but would be version {}",
                f.version, next.version
            ))));
        }
        let stored = StoredEvent {
            position,
            version: next.version,
            recorded_at,
            source,
            event: event.clone(),
        };
        // Pair assertion, write side: what we are about to store satisfies the stored invariants.
        if let Err(why) = stored.check() {
            panic!("about to store an event that breaks the stored invariants: {why}");
        }
        let receipt = Receipt {
            id: event.id,
            position,
            version: next.version,
            replayed: false,
        };
        pending.ids.insert(event.id, pending.records.len());
        pending.records.push(Record {
            bytes: stored.canonical_bytes(),
            stored,
            stream: stream.clone(),
        });
        pending.heads.insert(stream, next);
        pending.last_recorded_at = recorded_at;
        Ok(Ok(receipt))
    }

    /// The agency tree stays a tree, whatever the distance (registrations earlier in this request and in the group
    /// count): a check of the whole tree, which only the writer sees.
    fn agency_tree_kept(
        &self,
        event: &domain::Event,
        group: &CommitGroup,
        records: &[Record],
    ) -> Result<Result<(), domain::Rejection>, StoreError> {
        match (&event.data, &event.agency) {
            (EventData::AgencyRegistered(a), Some(agency)) => match &a.parent {
                Some(parent) => domain::stream::check_agency_tree(agency, parent, |code| {
                    self.parent_of(code, group, records)
                }),
                None => Ok(Ok(())),
            },
            _ => Ok(Ok(())),
        }
    }

    /// Adds an accepted request's events to the group: their leaves hashed into the audit tree in order, their
    /// ids, their streams' heads.
    fn merge(&self, group: &mut CommitGroup, pending: Pending) -> Result<(), StoreError> {
        for record in pending.records {
            group.growth.push(
                record.stored.position - 1,
                record_hash(&record.bytes),
                self.committed.upper(),
            )?;
            group
                .ids
                .insert(record.stored.event.id, group.records.len());
            group.records.push(record);
        }
        group.heads.extend(pending.heads);
        group.last_recorded_at = pending.last_recorded_at;
        Ok(())
    }

    /// The current parent of `agency`: its latest registration in this request, the group, or the log.
    fn parent_of(
        &self,
        agency: &AgencyCode,
        group: &CommitGroup,
        records: &[Record],
    ) -> Result<Option<AgencyCode>, StoreError> {
        let stream = Stream::Agency(agency.clone()).key();
        let pending = records
            .iter()
            .rev()
            .chain(group.records.iter().rev())
            .find(|r| r.stream == stream);
        let latest = match pending {
            Some(r) => Some(r.stored.event.data.clone()),
            None => self.committed.latest(&stream)?.map(|e| e.event.data),
        };
        Ok(match latest {
            Some(EventData::AgencyRegistered(a)) => a.parent,
            _ => None,
        })
    }
}
