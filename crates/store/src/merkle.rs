//! The audit tree over the log: an RFC 6962 Merkle tree whose leaves are the stored events' canonical bytes.
//!
//! Format 2 stores few of its hashes. The tree is cut at height [`HEIGHT`] into *tiles* of 256 leaves:
//! - the hashes at level 8 and above (one per tile, and every node above) are stored in the `log` tree, written in
//!   the same atomic batch as the group that completes them, under keys `t ‖ first index` (big-endian `u64`):
//!   they are the stored hashes of an *upper tree* whose leaves are the tiles' hashes, numbered as `tlog_tiles`
//!   numbers any tree's stored hashes, so they are dense and append-only;
//! - below level 8 nothing is stored: a hash there is computed from the events of its tile (at most 256 leaves,
//!   one or two blocks). The writer keeps the leaves of the last, unfinished tile in memory;
//! - each event's leaf hash is kept as its first [`PREFIX_BYTES`] bytes under `l ‖ first position`, one run per
//!   group: not part of the tree, but what lets `verify` name the one event of a tile whose bytes changed.
//!
//! That is about 4.25 bytes per event instead of the 64 a dense layout stores (two 32-byte hashes per leaf), and
//! the same tree: roots, proofs, checkpoints and bundles are those of format 1.

use crate::StoreError;
use std::collections::HashMap;
use tlog_tiles::{node_hash, split_stored_hash_index, stored_hash_index, HashReader};
pub use tlog_tiles::{record_hash, stored_hash_count, Hash};

/// Height of a tile: hashes below this level are computed from the events, not stored.
pub const HEIGHT: u8 = 8;
/// Leaves per tile.
pub const TILE: u64 = 1 << HEIGHT;
/// Bytes of each leaf hash kept for `verify`.
pub const PREFIX_BYTES: usize = 4;
/// Key prefix of the upper tree's hash runs in the `log` tree.
pub(crate) const UPPER: u8 = b't';
/// Key prefix of the leaf-hash prefix runs in the `log` tree.
pub(crate) const LEAVES: u8 = b'l';
/// Key prefix of the dense hash runs of format 2's first layout (`casetrail-log-v2`), read only to convert it.
pub(crate) const DENSE: u8 = b'h';

/// A key of the `log` tree (blocks' too): one prefix byte, then a big-endian number, so that keys sort as numbers.
pub(crate) fn key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [prefix; 9];
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn tree_error(e: sled::Error) -> tlog_tiles::Error {
    tlog_tiles::Error::InvalidInput(format!("sled: {e}"))
}

/// The run whose key is the last at or before `key(prefix, n)`: (its first number, its value).
fn run_at(tree: &sled::Tree, prefix: u8, n: u64) -> Result<Option<(u64, sled::IVec)>, sled::Error> {
    Ok(tree
        .range(key(prefix, 0)..=key(prefix, n))
        .next_back()
        .transpose()?
        .map(|(k, v)| {
            (
                u64::from_be_bytes(k[1..].try_into().unwrap_or([0xff; 8])),
                v,
            )
        }))
}

/// Reads item `n` (of `width` bytes) from the packed runs under `prefix`.
fn read_packed(
    tree: &sled::Tree,
    prefix: u8,
    width: usize,
    n: u64,
) -> Result<Option<Vec<u8>>, sled::Error> {
    let Some((start, run)) = run_at(tree, prefix, n)? else {
        return Ok(None);
    };
    let offset = ((n - start) as usize).saturating_mul(width);
    Ok(run
        .get(offset..offset.saturating_add(width))
        .map(<[u8]>::to_vec))
}

/// One past the last item (of `width` bytes) stored under `prefix`.
pub(crate) fn packed_end(tree: &sled::Tree, prefix: u8, width: usize) -> Result<u64, sled::Error> {
    Ok(match run_at(tree, prefix, u64::MAX)? {
        None => 0,
        Some((start, run)) => start + (run.len() / width) as u64,
    })
}

/// Reads one stored hash of the upper tree (`prefix` [`UPPER`]) or of a dense layout ([`DENSE`]).
pub(crate) fn read_stored(
    tree: &sled::Tree,
    prefix: u8,
    index: u64,
) -> Result<Hash, tlog_tiles::Error> {
    stored(tree, prefix, index)
        .map_err(tree_error)?
        .ok_or(tlog_tiles::Error::IndexesNotInTree)
}

fn stored(tree: &sled::Tree, prefix: u8, index: u64) -> Result<Option<Hash>, sled::Error> {
    Ok(read_packed(tree, prefix, 32, index)?.map(|b| Hash(b.try_into().expect("32 bytes"))))
}

/// The storage error behind a reader's failure. `tlog_tiles` carries only its own error type, so a reader that
/// cannot read the store keeps the store's error here and the caller reports that one: a full disk or an IO error
/// is the storage refusing (503), not a broken tree (a bug or tampering).
#[derive(Default)]
pub struct Failure(std::cell::RefCell<Option<StoreError>>);

impl Failure {
    /// Keeps `e` (the first one, if several) and gives what to hand `tlog_tiles`.
    fn keep(&self, e: impl Into<StoreError>) -> tlog_tiles::Error {
        let e = e.into();
        let said = tlog_tiles::Error::InvalidInput(e.to_string());
        self.0.borrow_mut().get_or_insert(e);
        said
    }

    /// What a tree computation that failed with `e` reports: the storage error kept, if any, else `e`.
    pub fn explain(&self, e: tlog_tiles::Error) -> StoreError {
        self.0
            .borrow_mut()
            .take()
            .unwrap_or_else(|| StoreError::Tree(e.to_string()))
    }
}

/// The stored leaf-hash prefix of leaf `n` (position `n + 1`), if stored.
pub(crate) fn read_prefix(
    tree: &sled::Tree,
    n: u64,
) -> Result<Option<[u8; PREFIX_BYTES]>, sled::Error> {
    Ok(read_packed(tree, LEAVES, PREFIX_BYTES, n + 1)?
        .map(|b| b.try_into().expect("PREFIX_BYTES bytes")))
}

/// Packs hashes into one run value.
pub fn pack(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

/// Packs the leaf-hash prefixes of consecutive leaves into one run value.
pub fn pack_prefixes(leaves: &[Hash]) -> Vec<u8> {
    leaves
        .iter()
        .flat_map(|h| h.0[..PREFIX_BYTES].iter().copied())
        .collect()
}

/// The hash of a complete subtree from its leaves (a power of two of them).
pub fn subtree(leaves: &[Hash]) -> Hash {
    debug_assert!(leaves.len().is_power_of_two());
    match leaves.len() {
        1 => leaves[0],
        n => node_hash(subtree(&leaves[..n / 2]), subtree(&leaves[n / 2..])),
    }
}

/// Every hash stored, dense: format 2's first layout, read only to convert it.
pub(crate) struct Dense<'a>(pub &'a sled::Tree);

impl HashReader for Dense<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| read_stored(self.0, DENSE, i))
            .collect()
    }
}

/// Where the upper tree's stored hashes (level 8 and up, numbered as `tlog_tiles` numbers a tree's stored
/// hashes) are kept: runs in a sled tree, or a store's copy in memory.
pub trait UpperHashes {
    /// The stored hash `index`, if it is stored.
    fn upper(&self, index: u64) -> Result<Option<Hash>, StoreError>;
}

impl UpperHashes for sled::Tree {
    fn upper(&self, index: u64) -> Result<Option<Hash>, StoreError> {
        Ok(stored(self, UPPER, index)?)
    }
}

/// Upper hashes in memory: every one from index 0, in order.
pub struct InMemory<'a>(pub &'a [Hash]);

impl UpperHashes for InMemory<'_> {
    fn upper(&self, index: u64) -> Result<Option<Hash>, StoreError> {
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get(i))
            .copied())
    }
}

/// The upper tree's stored hashes: where they are kept, with those of the group in flight on top.
pub struct Upper<'a> {
    pub tree: &'a dyn UpperHashes,
    /// Index of `pending[0]`.
    pub pending_from: u64,
    pub pending: &'a [Hash],
    pub failure: Failure,
}

impl Upper<'_> {
    fn read(&self, i: u64) -> Result<Hash, tlog_tiles::Error> {
        if i >= self.pending_from {
            self.pending
                .get((i - self.pending_from) as usize)
                .copied()
                .ok_or(tlog_tiles::Error::IndexesNotInTree)
        } else {
            self.tree
                .upper(i)
                .map_err(|e| self.failure.keep(e))?
                .ok_or(tlog_tiles::Error::IndexesNotInTree)
        }
    }
}

impl HashReader for Upper<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes.iter().map(|&i| self.read(i)).collect()
    }
}

/// The leaf hashes of leaves `from..to` (0-based), as many of them as exist.
pub type LeafSource<'a> = &'a dyn Fn(u64, u64) -> Result<Vec<Hash>, StoreError>;

/// Every hash of the whole tree, as `tlog_tiles` numbers them: level 8 and up from the upper tree, below from
/// leaves in memory or computed from the events.
pub struct Hashes<'a> {
    pub upper: Upper<'a>,
    /// Leaf hashes in memory: leaves `leaves_from..leaves_from + leaves.len()`.
    pub leaves_from: u64,
    pub leaves: &'a [Hash],
    /// Where other leaves' hashes come from.
    pub source: LeafSource<'a>,
}

impl<'a> Hashes<'a> {
    /// Every hash of a committed tree: the upper hashes where they are kept, the rest from `source`.
    pub fn committed(upper: &'a dyn UpperHashes, source: LeafSource<'a>) -> Hashes<'a> {
        Hashes {
            upper: Upper {
                tree: upper,
                pending_from: u64::MAX,
                pending: &[],
                failure: Failure::default(),
            },
            leaves_from: 0,
            leaves: &[],
            source,
        }
    }

    /// What a tree computation over these hashes that failed with `e` reports (see [`Failure`]).
    pub fn explain(&self, e: tlog_tiles::Error) -> StoreError {
        self.upper.failure.explain(e)
    }
}

impl HashReader for Hashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        // Leaf hashes of the tiles read from the events for this call, by tile.
        let mut tiles: HashMap<u64, Vec<Hash>> = HashMap::new();
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let (level, n) = split_stored_hash_index(i);
            if level >= HEIGHT {
                out.push(self.upper.read(stored_hash_index(level - HEIGHT, n))?);
                continue;
            }
            let (lo, width) = (n << level, 1u64 << level);
            let in_memory = lo
                .checked_sub(self.leaves_from)
                .map(|at| at as usize..(at + width) as usize)
                .and_then(|range| self.leaves.get(range));
            let leaves = match in_memory {
                Some(leaves) => leaves,
                None => {
                    let tile = lo >> HEIGHT;
                    if !tiles.contains_key(&tile) {
                        let read = (self.source)(tile * TILE, (tile + 1) * TILE)
                            .map_err(|e| self.upper.failure.keep(e))?;
                        tiles.insert(tile, read);
                    }
                    let at = (lo - tile * TILE) as usize;
                    tiles[&tile]
                        .get(at..at + width as usize)
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)?
                }
            };
            out.push(subtree(leaves));
        }
        Ok(out)
    }
}

/// The audit state a writer carries from group to group: the leaves of the unfinished tile.
#[derive(Clone, Default)]
pub struct Frontier {
    /// The leaf hashes of the last tile, fewer than [`TILE`].
    pub tile: Vec<Hash>,
}

/// What a run of new leaves adds to the stored audit data: appended to by [`Growth::push`].
pub struct Growth {
    pub frontier: Frontier,
    /// Upper-tree index of `upper[0]`.
    pub upper_from: u64,
    pub upper: Vec<Hash>,
    /// The new leaves' hashes, in order (their prefixes are stored).
    pub leaves: Vec<Hash>,
}

impl Growth {
    /// Starts after `size` leaves, whose unfinished tile is `frontier`.
    pub fn new(size: u64, frontier: Frontier) -> Growth {
        Growth {
            frontier,
            upper_from: stored_hash_count(size / TILE),
            upper: Vec::new(),
            leaves: Vec::new(),
        }
    }

    /// Adds leaf `n` with hash `leaf`, reading earlier upper hashes from `tree`. All or nothing: on an error the
    /// growth is as it was.
    pub fn push(&mut self, n: u64, leaf: Hash, tree: &dyn UpperHashes) -> Result<(), StoreError> {
        if self.frontier.tile.len() as u64 + 1 == TILE {
            let reader = Upper {
                tree,
                pending_from: self.upper_from,
                pending: &self.upper,
                failure: Failure::default(),
            };
            let mut tile = self.frontier.tile.clone();
            tile.push(leaf);
            let more =
                tlog_tiles::stored_hashes_for_record_hash(n >> HEIGHT, subtree(&tile), &reader)
                    .map_err(|e| reader.failure.explain(e))?;
            self.upper.extend(more);
            self.frontier.tile.clear();
        } else {
            self.frontier.tile.push(leaf);
        }
        self.leaves.push(leaf);
        Ok(())
    }

    /// The reader of the tree grown to `size` leaves.
    pub fn reader<'a>(
        &'a self,
        tree: &'a dyn UpperHashes,
        size: u64,
        source: LeafSource<'a>,
    ) -> Hashes<'a> {
        Hashes {
            upper: Upper {
                tree,
                pending_from: self.upper_from,
                pending: &self.upper,
                failure: Failure::default(),
            },
            leaves_from: size - self.frontier.tile.len() as u64,
            leaves: &self.frontier.tile,
            source,
        }
    }
}

/// Stored hashes in memory, every one of them: an independent tree for tests and for checking a log from outside.
#[derive(Default)]
pub struct MemoryHashes(pub Vec<Hash>);

impl MemoryHashes {
    /// Adds the leaf for record `n` (0-based), which must be the next one.
    pub fn push(&mut self, n: u64, data: &[u8]) {
        let more = tlog_tiles::stored_hashes(n, data, self).expect("in-memory hashes are complete");
        self.0.extend(more);
    }

    pub fn root(&self, size: u64) -> Hash {
        tlog_tiles::tree_hash(size, self).expect("in-memory hashes are complete")
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

pub(crate) fn serialize_hash<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(h)
}

/// Known answers: the Certificate Transparency reference tree (RFC 6962's eight test inputs), its roots at every
/// size, and its published inclusion and consistency proofs, computed through the same path the writer and
/// `root_at` use (hashes packed per group in a sled tree, the group in flight read from memory). This checks our
/// use of `tlog_tiles`, not only the crate.
#[cfg(test)]
mod known_answers {
    use super::*;

    const INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    /// (leaf index, tree size, audit path)
    const INCLUSION: [(u64, u64, &[&str]); 2] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    /// (old size, new size, consistency proof)
    const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hash(hex: &str) -> Hash {
        Hash(bytes(hex).try_into().unwrap())
    }

    /// Leaf hashes of `inputs`, as the events would give them.
    fn leaves_of(inputs: &[Vec<u8>]) -> Vec<Hash> {
        inputs.iter().map(|i| record_hash(i)).collect()
    }

    /// `records` stored as the writer stores them: groups of `groups[k]` records (cycled), each group's upper
    /// hashes packed under the index of the first; the last group left in flight. Returns the growth in flight.
    pub(super) fn store(tree: &sled::Tree, records: &[Vec<u8>], groups: &[usize]) -> Growth {
        let leaves = leaves_of(records);
        let mut growth = Growth::new(0, Frontier::default());
        let mut in_group = 0;
        let mut k = 0;
        for (n, leaf) in leaves.iter().enumerate() {
            growth.push(n as u64, *leaf, tree).unwrap();
            in_group += 1;
            if in_group == groups[k % groups.len()] && n + 1 < records.len() {
                if !growth.upper.is_empty() {
                    tree.insert(key(UPPER, growth.upper_from), pack(&growth.upper))
                        .unwrap();
                }
                growth = Growth::new(n as u64 + 1, growth.frontier.clone());
                in_group = 0;
                k += 1;
            }
        }
        growth
    }

    #[test]
    fn roots_and_proofs_match_the_certificate_transparency_reference() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("log").unwrap();
        let inputs: Vec<Vec<u8>> = INPUTS.iter().map(|i| bytes(i)).collect();
        let growth = store(&tree, &inputs, &[3]);
        let all = leaves_of(&inputs);
        let source =
            |from: u64, to: u64| Ok(all[from as usize..(to as usize).min(all.len())].to_vec());
        let reader = growth.reader(&tree, 8, &source);
        for (size, root) in ROOTS.iter().enumerate() {
            let size = size as u64 + 1;
            assert_eq!(
                tlog_tiles::tree_hash(size, &reader).unwrap(),
                hash(root),
                "root of {size}"
            );
        }
        for (index, size, path) in INCLUSION {
            let proof = tlog_tiles::prove_record(size, index, &reader).unwrap();
            let expected: Vec<Hash> = path.iter().map(|h| hash(h)).collect();
            assert_eq!(proof, expected, "inclusion of {index} in {size}");
            let leaf = record_hash(&bytes(INPUTS[index as usize]));
            tlog_tiles::check_record(&proof, size, hash(ROOTS[size as usize - 1]), index, leaf)
                .unwrap();
            // A wrong leaf or a wrong root fails.
            assert!(tlog_tiles::check_record(&proof, size, hash(ROOTS[0]), index, leaf).is_err());
            let other = record_hash(b"not in the tree");
            assert!(tlog_tiles::check_record(
                &proof,
                size,
                hash(ROOTS[size as usize - 1]),
                index,
                other
            )
            .is_err());
        }
        for (old, new, path) in CONSISTENCY {
            let proof = tlog_tiles::prove_tree(new, old, &reader).unwrap();
            let expected: Vec<Hash> = path.iter().map(|h| hash(h)).collect();
            assert_eq!(proof, expected, "consistency of {old} with {new}");
            let (old_root, new_root) =
                (hash(ROOTS[old as usize - 1]), hash(ROOTS[new as usize - 1]));
            tlog_tiles::check_tree(&proof, new, new_root, old, old_root).unwrap();
            if old != new {
                // A rewritten history (another old root) is caught.
                assert!(
                    tlog_tiles::check_tree(&proof, new, new_root, old, hash(ROOTS[7])).is_err()
                );
            }
        }
    }
}

/// The sparse layout answers every root and proof exactly as the dense tree does: any number of leaves across
/// several tiles, any split into groups, the tiles' leaves read back from the "events".
#[cfg(test)]
mod against_dense {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn every_root_and_proof_is_the_dense_trees(
            size in 1u64..1_100,
            groups in proptest::collection::vec(1usize..300, 1..6),
            probes in proptest::collection::vec((0u64..1_100, 0u64..1_100), 8),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("log").unwrap();
            let records: Vec<Vec<u8>> = (0..size).map(|n| format!("event {n}").into_bytes()).collect();
            let mut dense = MemoryHashes::default();
            for (n, r) in records.iter().enumerate() {
                dense.push(n as u64, r);
            }
            let growth = known_answers::store(&tree, &records, &groups);
            let all: Vec<Hash> = records.iter().map(|r| record_hash(r)).collect();
            let source = |from: u64, to: u64| {
                Ok(all[from as usize..(to as usize).min(all.len())].to_vec())
            };
            let sparse = growth.reader(&tree, size, &source);
            prop_assert_eq!(
                packed_end(&tree, UPPER, 32).unwrap() + growth.upper.len() as u64,
                stored_hash_count(size / TILE)
            );
            for (a, b) in probes {
                let (t, n) = (a % size + 1, b % size);
                prop_assert_eq!(tlog_tiles::tree_hash(t, &sparse).unwrap(), dense.root(t));
                if n < t {
                    prop_assert_eq!(
                        tlog_tiles::prove_record(t, n, &sparse).unwrap(),
                        tlog_tiles::prove_record(t, n, &dense).unwrap()
                    );
                    prop_assert_eq!(
                        tlog_tiles::prove_tree(t, n + 1, &sparse).unwrap(),
                        tlog_tiles::prove_tree(t, n + 1, &dense).unwrap()
                    );
                }
            }
        }
    }
}

/// Refuses an inclusion proof of `position` in a tree of `size` events that a log of `head` events cannot give.
pub fn check_inclusion(position: u64, size: u64, head: u64) -> Result<(), StoreError> {
    if size > head || position == 0 || position > size {
        return Err(StoreError::OutOfRange(format!(
            "no event at position {position} in a tree of size {size} (the log has {head})"
        )));
    }
    Ok(())
}

/// Refuses a consistency proof from `from` to `to` events that a log of `head` events cannot give.
pub fn check_consistency(from: u64, to: u64, head: u64) -> Result<(), StoreError> {
    if from > to || to > head {
        return Err(StoreError::OutOfRange(format!(
            "no consistency proof from size {from} to size {to} (the log has {head})"
        )));
    }
    Ok(())
}

/// Refuses a root of more events than a log of `head` events has.
pub fn check_size(size: u64, head: u64) -> Result<(), StoreError> {
    if size > head {
        return Err(StoreError::Tree(format!(
            "size {size} is past the log's size {head}"
        )));
    }
    Ok(())
}
