//! The derived indexes as a small log-structured merge tree on sled: sorted, immutable *runs*, each stored as
//! chunks of a few kilobytes under one sled key per chunk, with a Bloom filter per run in memory.
//!
//! Why: sled 0.34 pays about 10 µs for every key it writes, whatever its size, and rewrites whole leaves as they
//! change, so one key per event id (format 1) bounds indexing near 95,000 ids a second and costs ~170 bytes of disk
//! per id. A run of 32,768 entries costs a few hundred keys.
//!
//! - The `index` tree: run id (8 bytes, big-endian) ‖ the first key of a chunk → the chunk: entries sorted by key,
//!   each `key length (2 bytes LE) ‖ key ‖ value length (4 bytes LE) ‖ value`, about [`CHUNK_BYTES`] in all,
//!   stored as its length (4 bytes LE) and one zstd frame (stream heads repeat codes and dates: about 3× smaller).
//! - The `filters` tree: run id → the run's Bloom filter ([`Bloom`]).
//! - `meta/index`: the manifest ([`Manifest`]): the runs, newest first, and the watermark: the position through
//!   which the runs hold every entry. It is one sled value, so a new run and the watermark become visible together.
//!
//! A lookup asks the runs newest first; the first that holds the key answers (a key written again later, like a
//! stream's head, is newest in the newest run). When [`FANOUT`] runs share a level they are merged into one run of
//! the next level (newest entry of each key kept), the manifest is swapped, and the merged runs' keys are removed
//! once no reader holds them. A crash between the writes of a run and the manifest leaves keys of a run the
//! manifest does not name: they are removed at open.

use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, RwLock};

/// The size a chunk is closed at (sled leaves hold up to 16 values; 16 chunks stay under sled's 128 KiB blob
/// threshold).
pub const CHUNK_BYTES: usize = if cfg!(test) { 256 } else { 8 * 1024 };
/// Runs of one level merged together.
pub const FANOUT: usize = 4;
const MANIFEST: &[u8] = b"index";
const BITS_PER_KEY: u64 = 10;
const HASHES: u32 = 7;

/// A Bloom filter with a fixed, documented hash (FNV-1a 64 finished by splitmix64, double hashing), so that a
/// filter written to disk reads the same with any later build. 10 bits and 7 probes per key: about 1 % false
/// positives, never a false negative.
#[derive(Clone, Debug, PartialEq)]
pub struct Bloom {
    bits: Vec<u64>,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hashes(key: &[u8]) -> (u64, u64) {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let h1 = splitmix64(h);
    (h1, splitmix64(h1 ^ 0x5851_f42d_4c95_7f2d) | 1)
}

impl Bloom {
    pub fn new(keys: u64) -> Bloom {
        Bloom {
            bits: vec![0; (keys * BITS_PER_KEY).div_ceil(64).max(1) as usize],
        }
    }

    fn probes(&self, key: &[u8]) -> impl Iterator<Item = (usize, u64)> {
        let (h1, h2) = hashes(key);
        let m = self.bits.len() as u64 * 64;
        (0..HASHES as u64).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % m;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    pub fn insert(&mut self, key: &[u8]) {
        for (word, mask) in self.probes(key).collect::<Vec<_>>() {
            self.bits[word] |= mask;
        }
    }

    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.probes(key)
            .all(|(word, mask)| self.bits[word] & mask != 0)
    }

    pub fn encode(&self) -> Vec<u8> {
        self.bits.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    pub fn decode(bytes: &[u8]) -> Option<Bloom> {
        if bytes.is_empty() || bytes.len() % 8 != 0 {
            return None;
        }
        Some(Bloom {
            bits: bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        })
    }
}

/// A run as the manifest names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub id: u64,
    pub level: u8,
    /// Entries in the run.
    pub count: u64,
}

/// What `meta/index` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The runs hold every entry of the events up to this position.
    pub watermark: u64,
    pub next_run: u64,
    /// Newest first.
    pub runs: Vec<RunMeta>,
}

/// An open run: its manifest entry and its filter.
#[derive(Debug)]
pub struct Run {
    pub meta: RunMeta,
    filter: Bloom,
}

type Entry = (Vec<u8>, Vec<u8>);

fn run_prefix(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn chunk_key(run: u64, first: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + first.len());
    k.extend_from_slice(&run_prefix(run));
    k.extend_from_slice(first);
    k
}

fn encode_entry(chunk: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    chunk.extend_from_slice(&(key.len() as u16).to_le_bytes());
    chunk.extend_from_slice(key);
    chunk.extend_from_slice(&(value.len() as u32).to_le_bytes());
    chunk.extend_from_slice(value);
}

thread_local! {
    static ZSTD: std::cell::RefCell<(zstd::bulk::Compressor<'static>, zstd::bulk::Decompressor<'static>)> =
        std::cell::RefCell::new((
            zstd::bulk::Compressor::new(1).expect("a zstd context"),
            zstd::bulk::Decompressor::new().expect("a zstd context"),
        ));
}

/// A chunk's body as stored: its length, then one zstd frame.
fn seal(body: &[u8]) -> Vec<u8> {
    let frame = ZSTD.with(|z| {
        z.borrow_mut()
            .0
            .compress(body)
            .expect("compressing to memory")
    });
    let mut value = Vec::with_capacity(4 + frame.len());
    value.extend_from_slice(&(body.len() as u32).to_le_bytes());
    value.extend_from_slice(&frame);
    value
}

/// A stored chunk's body.
fn open_chunk(value: &[u8]) -> Result<Vec<u8>, StoreError> {
    let damaged =
        |why: String| StoreError::IndexMismatch(format!("an index chunk is damaged: {why}"));
    let len = value
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .filter(|&len| len <= 64 * CHUNK_BYTES)
        .ok_or_else(|| damaged("no length".into()))?;
    let body = ZSTD
        .with(|z| z.borrow_mut().1.decompress(&value[4..], len))
        .map_err(|e| damaged(e.to_string()))?;
    if body.len() != len {
        return Err(damaged(format!("{} bytes, not {len}", body.len())));
    }
    Ok(body)
}

/// The entries of a chunk's body, in order.
fn decode_chunk(bytes: &[u8]) -> Result<Vec<(&[u8], &[u8])>, StoreError> {
    let damaged = || StoreError::IndexMismatch("an index chunk is damaged".into());
    // A length of `width` bytes (little-endian) at `at`, then that many bytes.
    let field = |at: usize, width: usize| -> Result<(&[u8], usize), StoreError> {
        let mut len = [0u8; 8];
        len[..width].copy_from_slice(bytes.get(at..at + width).ok_or_else(damaged)?);
        let end = at + width + u64::from_le_bytes(len) as usize;
        Ok((bytes.get(at + width..end).ok_or_else(damaged)?, end))
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (key, next) = field(at, 2)?;
        let (value, next) = field(next, 4)?;
        at = next;
        out.push((key, value));
    }
    Ok(out)
}

/// Writes sorted, distinct entries as the chunks of run `id`, and returns its filter.
fn write_run(
    tree: &sled::Tree,
    id: u64,
    entries: impl Iterator<Item = Result<Entry, StoreError>>,
    expected: u64,
) -> Result<(Bloom, u64), StoreError> {
    let mut filter = Bloom::new(expected.max(1));
    let mut batch = sled::Batch::default();
    let (mut in_batch, mut count) = (0, 0u64);
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 256);
    let mut first: Option<Vec<u8>> = None;
    for entry in entries {
        let (key, value) = entry?;
        filter.insert(&key);
        if first.is_none() {
            first = Some(key.clone());
        }
        encode_entry(&mut chunk, &key, &value);
        count += 1;
        if chunk.len() >= CHUNK_BYTES {
            batch.insert(
                chunk_key(id, &first.take().expect("a first key")),
                seal(&std::mem::take(&mut chunk)),
            );
            in_batch += 1;
            if in_batch == 256 {
                tree.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
    }
    if let Some(first) = first {
        batch.insert(chunk_key(id, &first), seal(&chunk));
    }
    tree.apply_batch(batch)?;
    Ok((filter, count))
}

/// The entries of one run from `from` (inclusive), in key order.
struct RunIter<'a> {
    chunks: sled::Iter,
    current: Vec<Entry>,
    at: usize,
    from: &'a [u8],
}

impl<'a> RunIter<'a> {
    fn new(tree: &sled::Tree, run: u64, from: &'a [u8]) -> RunIter<'a> {
        let start = chunk_key(run, from);
        // The chunk that may hold `from` starts at or before it.
        let first = tree
            .range(chunk_key(run, &[])..=start.clone())
            .next_back()
            .and_then(|r| r.ok())
            .map(|(k, _)| k.to_vec())
            .unwrap_or(start);
        RunIter {
            chunks: tree.range(first..(run + 1).to_be_bytes().to_vec()),
            current: Vec::new(),
            at: 0,
            from,
        }
    }
}

impl Iterator for RunIter<'_> {
    type Item = Result<Entry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.current.get(self.at) {
                self.at += 1;
                if e.0.as_slice() < self.from {
                    continue;
                }
                return Some(Ok(e.clone()));
            }
            let (_, value) = match self.chunks.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            let entries = open_chunk(&value).and_then(|body| {
                Ok(decode_chunk(&body)?
                    .into_iter()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect())
            });
            match entries {
                Ok(entries) => {
                    self.current = entries;
                    self.at = 0;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Several runs' entries merged in key order; of equal keys, the one from the run listed first (the newest).
pub struct Merged<'a> {
    runs: Vec<std::iter::Peekable<RunIter<'a>>>,
    /// The runs being read: held so that a merge meanwhile does not remove their keys under the iterators.
    _held: Arc<Vec<Arc<Run>>>,
}

impl Iterator for Merged<'_> {
    type Item = Result<Entry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<(usize, Vec<u8>)> = None;
        for (i, run) in self.runs.iter_mut().enumerate() {
            match run.peek() {
                None => {}
                Some(Err(_)) => return run.next(),
                Some(Ok((k, _))) => {
                    if best.as_ref().is_none_or(|(_, b)| k < b) {
                        best = Some((i, k.clone()));
                    }
                }
            }
        }
        let (i, key) = best?;
        let entry = self.runs[i].next();
        for run in self.runs.iter_mut() {
            while matches!(run.peek(), Some(Ok((k, _))) if *k == key) {
                run.next();
            }
        }
        entry
    }
}

/// The merge tree.
pub struct Lsm {
    tree: sled::Tree,
    filters: sled::Tree,
    meta: sled::Tree,
    /// Newest first. Readers clone the `Arc` and read without a lock held.
    runs: RwLock<Arc<Vec<Arc<Run>>>>,
    /// The manifest as last written (only the indexer writes).
    manifest: Mutex<Manifest>,
    /// Runs merged away whose keys wait until no reader holds them.
    retired: Mutex<Vec<Arc<Run>>>,
}

impl Lsm {
    /// Opens the merge tree: reads the manifest and the filters, and (unless `read_only`) removes what a crash
    /// left of runs the manifest does not name.
    pub fn open(
        tree: sled::Tree,
        filters: sled::Tree,
        meta: sled::Tree,
        read_only: bool,
    ) -> Result<Lsm, StoreError> {
        let manifest: Manifest = match meta.get(MANIFEST)? {
            None => Manifest::default(),
            Some(v) => postcard::from_bytes(&v)
                .map_err(|e| StoreError::IndexMismatch(format!("the index manifest: {e}")))?,
        };
        let mut runs = Vec::with_capacity(manifest.runs.len());
        for meta in &manifest.runs {
            let filter = filters
                .get(run_prefix(meta.id))?
                .and_then(|f| Bloom::decode(&f))
                .ok_or_else(|| {
                    StoreError::IndexMismatch(format!(
                        "the filter of index run {} is missing",
                        meta.id
                    ))
                })?;
            runs.push(Arc::new(Run {
                meta: meta.clone(),
                filter,
            }));
        }
        let lsm = Lsm {
            tree,
            filters,
            meta,
            runs: RwLock::new(Arc::new(runs)),
            manifest: Mutex::new(manifest),
            retired: Mutex::new(Vec::new()),
        };
        if !read_only {
            lsm.remove_unnamed_runs()?;
        }
        Ok(lsm)
    }

    fn remove_unnamed_runs(&self) -> Result<(), StoreError> {
        let named: std::collections::HashSet<u64> = self
            .manifest
            .lock()
            .expect("manifest lock")
            .runs
            .iter()
            .map(|r| r.id)
            .collect();
        let mut seen = Vec::new();
        let mut from = 0u64;
        while let Some(item) = self.tree.range(from.to_be_bytes()..).next() {
            let (k, _) = item?;
            let id = crate::index::decode_u64(&k[..8]).unwrap_or(u64::MAX);
            seen.push(id);
            match id.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
        for k in self.filters.iter().keys() {
            seen.push(crate::index::decode_u64(&k?).unwrap_or(u64::MAX));
        }
        for id in seen {
            if !named.contains(&id) {
                self.remove_run(id)?;
            }
        }
        Ok(())
    }

    fn remove_run(&self, id: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for k in self
            .tree
            .range(run_prefix(id).to_vec()..(id.saturating_add(1)).to_be_bytes().to_vec())
            .keys()
        {
            batch.remove(k?);
        }
        self.tree.apply_batch(batch)?;
        self.filters.remove(run_prefix(id))?;
        Ok(())
    }

    /// The bytes of every run's chunks and filters, keys included.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for tree in [&self.tree, &self.filters] {
            for item in tree.iter() {
                let (k, v) = item?;
                n += (k.len() + v.len()) as u64;
            }
        }
        Ok(n)
    }

    pub fn watermark(&self) -> u64 {
        self.manifest.lock().expect("manifest lock").watermark
    }

    pub fn manifest(&self) -> Manifest {
        self.manifest.lock().expect("manifest lock").clone()
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Run>>> {
        self.runs.read().expect("runs lock").clone()
    }

    /// The newest value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        for run in self.snapshot().iter() {
            if !run.filter.may_contain(key) {
                continue;
            }
            let id = run.meta.id;
            let found = self
                .tree
                .range(chunk_key(id, &[])..=chunk_key(id, key))
                .next_back()
                .transpose()?;
            if let Some((_, chunk)) = found {
                let body = open_chunk(&chunk)?;
                for (k, v) in decode_chunk(&body)? {
                    if k == key {
                        return Ok(Some(v.to_vec()));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Every key from `from` on, newest value each, in key order.
    pub fn scan<'a>(&self, from: &'a [u8]) -> Merged<'a> {
        let held = self.snapshot();
        let runs = held
            .iter()
            .map(|r| RunIter::new(&self.tree, r.meta.id, from).peekable())
            .collect();
        Merged { runs, _held: held }
    }

    /// Adds a run of `entries` (sorted by key, distinct) holding every entry through `watermark`, then merges
    /// levels that are full. Only the indexer calls this.
    pub fn add(&self, entries: Vec<Entry>, watermark: u64) -> Result<(), StoreError> {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        let mut manifest = self.manifest.lock().expect("manifest lock");
        if !entries.is_empty() {
            let id = manifest.next_run;
            let n = entries.len() as u64;
            let (filter, count) = write_run(&self.tree, id, entries.into_iter().map(Ok), n)?;
            self.filters.insert(run_prefix(id), filter.encode())?;
            let meta = RunMeta {
                id,
                level: 0,
                count,
            };
            manifest.next_run += 1;
            manifest.runs.insert(0, meta.clone());
            manifest.watermark = manifest.watermark.max(watermark);
            self.commit(&manifest)?;
            let mut runs: Vec<Arc<Run>> = self.snapshot().iter().cloned().collect();
            runs.insert(0, Arc::new(Run { meta, filter }));
            *self.runs.write().expect("runs lock") = Arc::new(runs);
        } else if watermark > manifest.watermark {
            manifest.watermark = watermark;
            self.commit(&manifest)?;
        }
        self.compact(&mut manifest)?;
        self.remove_retired()
    }

    fn commit(&self, manifest: &Manifest) -> Result<(), StoreError> {
        self.meta.insert(
            MANIFEST,
            postcard::to_stdvec(manifest).expect("manifests serialize"),
        )?;
        Ok(())
    }

    /// Merges every level holding [`FANOUT`] runs or more into one run of the next level.
    fn compact(&self, manifest: &mut Manifest) -> Result<(), StoreError> {
        loop {
            let Some(level) = (0..=u8::MAX)
                .find(|l| manifest.runs.iter().filter(|r| r.level == *l).count() >= FANOUT)
            else {
                return Ok(());
            };
            let runs = self.snapshot();
            let merging: Vec<Arc<Run>> = runs
                .iter()
                .filter(|r| r.meta.level == level)
                .cloned()
                .collect();
            let id = manifest.next_run;
            let expected: u64 = merging.iter().map(|r| r.meta.count).sum();
            let merged = Merged {
                runs: merging
                    .iter()
                    .map(|r| RunIter::new(&self.tree, r.meta.id, &[]).peekable())
                    .collect(),
                _held: runs.clone(),
            };
            let (filter, count) = write_run(&self.tree, id, merged, expected)?;
            self.filters.insert(run_prefix(id), filter.encode())?;
            let meta = RunMeta {
                id,
                level: level + 1,
                count,
            };
            // The merged run sits where the merged ones were: newer than every run of the next level.
            let at = manifest
                .runs
                .iter()
                .position(|r| r.level == level)
                .expect("a merged level has runs");
            manifest.runs.retain(|r| r.level != level);
            manifest.runs.insert(at, meta.clone());
            manifest.next_run += 1;
            self.commit(manifest)?;
            let mut next: Vec<Arc<Run>> = runs
                .iter()
                .filter(|r| r.meta.level != level)
                .cloned()
                .collect();
            next.insert(at, Arc::new(Run { meta, filter }));
            *self.runs.write().expect("runs lock") = Arc::new(next);
            self.retired.lock().expect("retired lock").extend(merging);
        }
    }

    /// Removes the keys of merged runs no reader holds any more.
    fn remove_retired(&self) -> Result<(), StoreError> {
        let mut retired = self.retired.lock().expect("retired lock");
        let mut kept = Vec::new();
        for run in retired.drain(..) {
            if Arc::strong_count(&run) == 1 {
                self.remove_run(run.meta.id)?;
            } else {
                kept.push(run);
            }
        }
        *retired = kept;
        Ok(())
    }

    /// Forgets every run (for a rebuild).
    pub fn clear(&self) -> Result<(), StoreError> {
        let mut manifest = self.manifest.lock().expect("manifest lock");
        *manifest = Manifest {
            next_run: manifest.next_run,
            ..Manifest::default()
        };
        self.commit(&manifest)?;
        *self.runs.write().expect("runs lock") = Arc::new(Vec::new());
        self.retired.lock().expect("retired lock").clear();
        self.tree.clear()?;
        self.filters.clear()?;
        Ok(())
    }
}

/// For tests that play someone with the disk: removes `key` from every run of an `index` tree, rewriting the
/// chunks that held it. Returns how many entries were removed.
#[doc(hidden)]
pub fn remove_everywhere(tree: &sled::Tree, key: &[u8]) -> Result<usize, StoreError> {
    let mut removed = 0;
    let chunks: Vec<(sled::IVec, sled::IVec)> = tree.iter().collect::<Result<_, _>>()?;
    for (chunk_key_bytes, value) in chunks {
        let body = open_chunk(&value)?;
        let entries = decode_chunk(&body)?;
        if !entries.iter().any(|(k, _)| *k == key) {
            continue;
        }
        removed += 1;
        let kept: Vec<_> = entries.into_iter().filter(|(k, _)| *k != key).collect();
        tree.remove(&chunk_key_bytes)?;
        if let Some((first, _)) = kept.first() {
            let mut chunk = Vec::new();
            for (k, v) in &kept {
                encode_entry(&mut chunk, k, v);
            }
            tree.insert(
                chunk_key(
                    u64::from_be_bytes(chunk_key_bytes[..8].try_into().expect("8")),
                    first,
                ),
                seal(&chunk),
            )?;
        }
    }
    Ok(removed)
}

/// For tests: the first key of a kind (its first byte) in any run.
#[doc(hidden)]
pub fn first_key_of(tree: &sled::Tree, kind: u8) -> Result<Option<Vec<u8>>, StoreError> {
    let mut best: Option<Vec<u8>> = None;
    for item in tree.iter() {
        let (_, value) = item?;
        let body = open_chunk(&value)?;
        for (k, _) in decode_chunk(&body)? {
            if k.first() == Some(&kind) && best.as_deref().is_none_or(|b| k < b) {
                best = Some(k.to_vec());
            }
        }
    }
    Ok(best)
}

impl Drop for Lsm {
    fn drop(&mut self) {
        let _ = self.remove_retired();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// The filter never forgets a key it was given.
        #[test]
        fn no_false_negatives(keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..500)) {
            let mut f = Bloom::new(keys.len() as u64);
            for k in &keys { f.insert(k); }
            let f = Bloom::decode(&f.encode()).unwrap();
            for k in &keys { prop_assert!(f.may_contain(k)); }
        }

        /// Writes of random keys in random runs, reopened at random points, against a BTreeMap: every lookup and
        /// the merged scan answer as the map, however the runs were merged.
        #[test]
        fn answers_as_a_map(batches in proptest::collection::vec(proptest::collection::vec((0u16..600, any::<u32>()), 0..120), 1..40), reopen in proptest::collection::vec(any::<bool>(), 40)) {
            let dir = tempfile::tempdir().unwrap();
            let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
            let open = || Lsm::open(db.open_tree("index").unwrap(), db.open_tree("filters").unwrap(), db.open_tree("meta").unwrap(), false).unwrap();
            let mut lsm = open();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (i, batch) in batches.iter().enumerate() {
                let mut entries: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
                for (k, v) in batch {
                    entries.insert(format!("k{k:05}").into_bytes(), v.to_le_bytes().to_vec());
                }
                model.extend(entries.clone());
                lsm.add(entries.into_iter().collect(), i as u64 + 1).unwrap();
                if reopen[i] {
                    drop(lsm);
                    lsm = open();
                }
                prop_assert_eq!(lsm.watermark(), i as u64 + 1);
            }
            for k in 0u16..600 {
                let key = format!("k{k:05}").into_bytes();
                prop_assert_eq!(lsm.get(&key).unwrap(), model.get(&key).cloned());
            }
            let scanned: Vec<Entry> = lsm.scan(&[]).collect::<Result<_, _>>().unwrap();
            let expected: Vec<Entry> = model.into_iter().collect();
            prop_assert_eq!(scanned, expected);
            // Levels stay bounded: fewer than FANOUT runs per level after every add.
            let manifest = lsm.manifest();
            for level in 0..8u8 {
                prop_assert!(manifest.runs.iter().filter(|r| r.level == level).count() < FANOUT);
            }
        }
    }

    #[test]
    fn about_one_percent_false_positives() {
        let mut f = Bloom::new(10_000);
        for i in 0u32..10_000 {
            f.insert(&i.to_le_bytes());
        }
        let false_positives = (10_000u32..110_000)
            .filter(|i| f.may_contain(&i.to_le_bytes()))
            .count();
        assert!(false_positives < 2_000, "{false_positives} in 100,000");
    }
}
