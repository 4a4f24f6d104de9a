//! `verify`: every block decoded, every event re-hashed and folded through its stream's rules, every index and
//! the audit tree checked against the events; the first bad position named, inside a block too.

use super::SledLog;
use crate::block::Block;
use crate::index::{self, SharedTail};
use crate::merkle::Growth;
use crate::trees::Trees;
use crate::StoreError;
use domain::{decide, AgencyCode, Context, EventData, StoredEvent, StreamHead};
use serde::Serialize;
use std::collections::HashMap;
use tlog_tiles::record_hash;

/// What `verify` found.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub size: u64,
    /// Through which position the index trees on disk were complete (the rest was indexed in memory to check).
    pub indexed_through: u64,
    pub streams: u64,
    /// The recomputed root, when everything checked out.
    pub root: Option<String>,
    /// (position, what is wrong), by position; empty when the log is sound.
    pub problems: Vec<(u64, String)>,
}

impl SledLog {
    /// Re-hashes every stored event, recomputes the root, checks every stream against its rules and every index
    /// against the events. Names the first bad position, inside a block too. After an interrupted
    /// `rebuild-indexes` the indexes are partly written: that is the one error then, as an ordinary open says.
    pub fn verify(&self, mut progress: impl FnMut(u64)) -> Result<VerifyReport, StoreError> {
        self.trees.refuse_interrupted_rebuild()?;
        let mut v = Verification {
            trees: &self.trees,
            tail: &self.tail,
            problems: Vec::new(),
            size: 0,
            damaged: false,
            named_in_block: false,
            ids_found_in_trees: 0,
            parents: HashMap::new(),
            streams: HashMap::new(),
            growth: Growth::new(0, Default::default()),
            tiles_in_step: true,
        };
        v.check_events(&mut progress);
        // Whole-tree counts mean nothing when the events could not all be read.
        if !v.damaged {
            v.check_totals(self.stream_keys("")?.len())?;
        }
        v.report(progress)
    }
}

/// The state of one `verify` run, as it reads the log in order.
struct Verification<'a> {
    trees: &'a Trees,
    tail: &'a SharedTail,
    /// (position, what is wrong), in the order found.
    problems: Vec<(u64, String)>,
    /// The last position read.
    size: u64,
    /// The database file itself could not be read past `size`.
    damaged: bool,
    /// A problem was already named inside the block being read.
    named_in_block: bool,
    ids_found_in_trees: u64,
    /// Each agency's parent, as of the events read so far.
    parents: HashMap<AgencyCode, Option<AgencyCode>>,
    /// Every stream folded from its events: its head and its positions by version.
    streams: HashMap<String, (StreamHead, Vec<u64>)>,
    /// The audit tree grown from the events read so far.
    growth: Growth,
    /// Every event so far was read, in order: the tiles' hashes can still be checked. After an event that does not
    /// decode or is out of place, only each event's own prefix is, so that one problem does not make every later
    /// tile look wrong.
    tiles_in_step: bool,
}

impl Verification<'_> {
    fn problem(&mut self, position: u64, what: impl Into<String>) {
        self.problems.push((position, what.into()));
    }

    /// Reads every block in order and checks each event.
    fn check_events(&mut self, progress: &mut impl FnMut(u64)) {
        let mut blocks = self.trees.raw_blocks(1);
        loop {
            let (first, value) = match blocks.next() {
                None => break,
                Some(Ok(found)) => found,
                // Damage below the log tree (a changed byte in the database file itself): sled's own checksum
                // refuses the page. Name the first position not read, and stop: nothing after it can be trusted.
                Some(Err(e)) => {
                    self.problem(
                        self.size + 1,
                        format!("unreadable from here on: the database file is damaged ({e})"),
                    );
                    self.damaged = true;
                    break;
                }
            };
            let block = match Block::decode_unchecked(first, &value) {
                Ok(b) => b,
                Err(e) => {
                    self.problem(first.min(self.size + 1), e.to_string());
                    continue;
                }
            };
            self.named_in_block = false;
            for (at, bytes) in block.iter() {
                self.check_event(first, at, bytes, progress);
            }
            if block.checksum_failed && !self.named_in_block {
                self.problem(first, "the block from here fails its checksum");
            }
        }
    }

    /// One event, stored at `at` in the block from `first`.
    fn check_event(&mut self, first: u64, at: u64, bytes: &[u8], progress: &mut impl FnMut(u64)) {
        let stored = match StoredEvent::from_canonical_bytes(bytes) {
            Ok(s) => s,
            Err(e) => {
                self.problem(at, format!("does not decode: {e}"));
                self.named_in_block = true;
                self.tiles_in_step = false;
                self.size = self.size.max(at);
                return;
            }
        };
        if !self.check_order(first, at, stored.position) {
            return;
        }
        let position = stored.position;
        self.size = position;
        if position % 100_000 == 0 {
            progress(position);
        }
        self.check_audit_data(position, bytes);
        self.check_agency_tree(&stored);
        self.fold_stream(&stored);
        self.check_id(&stored);
    }

    /// Positions follow one another from 1, each where its block says; false for an event already passed.
    fn check_order(&mut self, first: u64, at: u64, position: u64) -> bool {
        let size = self.size;
        if position != size + 1 {
            self.problem(
                size + 1,
                if position > size + 1 {
                    format!("missing: the next event stored is at position {position}")
                } else {
                    format!(
                        "out of order: the event of position {position} is stored after position {size}"
                    )
                },
            );
            self.named_in_block = true;
            self.tiles_in_step = false;
        }
        if position != at && !self.named_in_block {
            self.problem(
                at.min(position),
                format!("the block from {first} holds the event of position {position} at {at}"),
            );
            self.named_in_block = true;
        }
        position > size
    }

    /// The leaf's hash against its stored prefix; at the end of each tile, the hashes above it against the stored
    /// ones. Those read only earlier upper hashes, checked already, so by induction every stored hash is checked
    /// against the bytes.
    fn check_audit_data(&mut self, position: u64, bytes: &[u8]) {
        let log = &self.trees.log;
        let leaf = record_hash(bytes);
        match crate::merkle::read_prefix(log, position - 1) {
            Ok(Some(p)) if p[..] == leaf.0[..crate::merkle::PREFIX_BYTES] => {}
            _ => {
                self.problem(position, "its audit hash does not match its bytes");
                self.named_in_block = true;
            }
        }
        if !self.tiles_in_step {
            return;
        }
        if let Err(e) = self.growth.push(position - 1, leaf, log) {
            self.problem(position, format!("audit hashes unreadable: {e}"));
            self.tiles_in_step = false;
            return;
        }
        if self.growth.upper.is_empty() {
            return;
        }
        let first_wrong = self.growth.upper.iter().enumerate().find_map(|(i, h)| {
            let index = self.growth.upper_from + i as u64;
            (crate::merkle::read_stored(log, crate::merkle::UPPER, index).ok() != Some(*h))
                .then_some(index)
        });
        if let Some(index) = first_wrong {
            self.problem(
                position,
                format!("the audit hash over the tile ending here (index {index} above the tiles) does not match the events' bytes"),
            );
        }
        self.growth = Growth::new(position, std::mem::take(&mut self.growth.frontier));
    }

    /// The agency tree, as it stood after each registration: a cycle is named where it was closed.
    fn check_agency_tree(&mut self, stored: &StoredEvent) {
        let (EventData::AgencyRegistered(a), Some(agency)) =
            (&stored.event.data, &stored.event.agency)
        else {
            return;
        };
        if let Some(parent) = &a.parent {
            let parents = &self.parents;
            let tree = domain::stream::check_agency_tree(agency, parent, |code| {
                Ok::<_, std::convert::Infallible>(parents.get(code).cloned().flatten())
            });
            if let Ok(Err(cycle)) = tree {
                self.problem(stored.position, format!("breaks the agency tree: {cycle}"));
            }
        }
        self.parents.insert(agency.clone(), a.parent.clone());
    }

    /// The stream's rules, folded in order.
    fn fold_stream(&mut self, stored: &StoredEvent) {
        let key = stored.event.stream().key();
        let (head, positions) = self.streams.entry(key.clone()).or_default();
        let mut found = Vec::new();
        if stored.version != head.version + 1 {
            found.push(format!(
                "version {} of {key} out of sequence",
                stored.version
            ));
        }
        let ctx = Context {
            now: stored.recorded_at,
            clock_skew: chrono::Duration::days(36_500),
        };
        match decide(head, &stored.event, None, &ctx) {
            Ok(next) => *head = next,
            Err(r) => {
                found.push(format!("breaks a rule of its stream: {r}"));
                domain::apply_in_place(head, &stored.event);
            }
        }
        positions.push(stored.position);
        for what in found {
            self.problem(stored.position, what);
        }
    }

    /// The id index (trees, or the tail for what they lag behind).
    fn check_id(&mut self, stored: &StoredEvent) {
        let (id, position) = (stored.event.id, stored.position);
        if self.trees.index.id(id).ok().flatten() == Some(position) {
            self.ids_found_in_trees += 1;
        }
        match index::id_position(&self.trees.index, self.tail, id) {
            Ok(Some(p)) if p == position => {}
            other => self.problem(
                position,
                format!("the id index points elsewhere ({:?})", other.ok().flatten()),
            ),
        }
    }

    /// What can only be checked once every event was read: the audit data's and the id index's sizes, and every
    /// stream's indexed head and positions against what its events fold to. `indexed_streams`: how many
    /// streams the index knows.
    fn check_totals(&mut self, indexed_streams: usize) -> Result<(), StoreError> {
        let (t, size) = (self.trees, self.size);
        if let Some(wrong) = t.audit_counts(size)? {
            self.problem(size, wrong);
        }
        let ids_in_trees = t.index.count(index::ID)?;
        if ids_in_trees != self.ids_found_in_trees {
            let found = self.ids_found_in_trees;
            self.problem(
                size,
                format!(
                    "the id index has {ids_in_trees} entries, of which {found} name their event"
                ),
            );
        }
        let mut found = Vec::new();
        for (key, (head, positions)) in &self.streams {
            let indexed_head = index::stream_head(&t.index, self.tail, key).ok().flatten();
            let last = *positions.last().expect("a stream has an event");
            match index::stream_positions(&t.index, self.tail, key, size) {
                Ok(p) if p == *positions => {}
                Ok(p) => {
                    let differs = positions
                        .iter()
                        .zip(p.iter().chain(std::iter::repeat(&0)))
                        .find(|(a, b)| a != b)
                        .map_or(last, |(a, _)| *a);
                    found.push((
                        differs,
                        format!("the stream index of {key} points elsewhere"),
                    ));
                    continue;
                }
                Err(e) => {
                    found.push((last, format!("the stream index of {key}: {e}")));
                    continue;
                }
            }
            if indexed_head.as_ref() != Some(head) {
                found.push((
                    last,
                    format!("the stored head of {key} differs from its events"),
                ));
            }
        }
        self.problems.extend(found);
        if indexed_streams != self.streams.len() {
            let n = self.streams.len();
            self.problem(
                size,
                format!("{indexed_streams} stream heads for {n} streams in the events"),
            );
        }
        Ok(())
    }

    /// The report: the root only when nothing was found, the problems by position.
    fn report(mut self, mut progress: impl FnMut(u64)) -> Result<VerifyReport, StoreError> {
        let (t, size) = (self.trees, self.size);
        let root = match self.problems.is_empty() {
            true => Some(t.root(size)?.to_string()),
            false => None,
        };
        self.problems.sort_by_key(|(p, _)| *p);
        progress(size);
        Ok(VerifyReport {
            size,
            indexed_through: t.index.watermark().unwrap_or(0).min(size),
            streams: self.streams.len() as u64,
            root,
            problems: self.problems,
        })
    }
}
