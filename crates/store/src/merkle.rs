//! The audit tree over the log: an RFC 6962 Merkle tree whose leaves are the stored events' canonical bytes,
//! kept as `tlog_tiles` stored hashes (dense indexes, written in the same atomic batch as the group's blocks, in the
//! same `log` tree under keys `h ‖ index`).

use tlog_tiles::HashReader;
pub use tlog_tiles::{record_hash, Hash};

/// Stored hashes in a sled tree, with the hashes of a group not yet written on top.
///
/// sled 0.34 pays about the same for every key it writes, whatever its size, so the hashes a group adds (about
/// two per event) are written as one value: key = `h` ‖ the stored-hash index of the first (8 bytes,
/// big-endian), value = the hashes concatenated, 32 bytes each.
pub(crate) struct Hashes<'a> {
    pub tree: &'a sled::Tree,
    /// Index of `pending[0]`.
    pub pending_from: u64,
    pub pending: &'a [Hash],
}

impl HashReader for Hashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                if i >= self.pending_from {
                    self.pending
                        .get((i - self.pending_from) as usize)
                        .copied()
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                } else {
                    read_stored(self.tree, i)
                }
            })
            .collect()
    }
}

/// The key prefix of hash runs in the `log` tree.
pub(crate) const PREFIX: u8 = b'h';

/// The key of the hash run starting at stored-hash `index`.
pub(crate) fn key(index: u64) -> [u8; 9] {
    let mut k = [PREFIX; 9];
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Reads one stored hash from the packed runs of the `log` tree.
pub(crate) fn read_stored(tree: &sled::Tree, index: u64) -> Result<Hash, tlog_tiles::Error> {
    let (key, run) = tree
        .range(key(0)..=key(index))
        .next_back()
        .transpose()
        .map_err(|e| tlog_tiles::Error::InvalidInput(format!("sled: {e}")))?
        .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
    let start = u64::from_be_bytes(
        key.get(1..)
            .and_then(|k| k.try_into().ok())
            .ok_or(tlog_tiles::Error::MalformedHash)?,
    );
    let offset = ((index - start) as usize)
        .checked_mul(32)
        .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
    let bytes = run
        .get(offset..offset + 32)
        .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
    Ok(Hash(bytes.try_into().expect("32 bytes")))
}

/// The stored-hash index one past the last stored hash.
pub(crate) fn stored_end(tree: &sled::Tree) -> Result<u64, sled::Error> {
    Ok(
        match tree.range(key(0)..=key(u64::MAX)).next_back().transpose()? {
            None => 0,
            Some((key, run)) => {
                u64::from_be_bytes(key[1..].try_into().unwrap_or([0xff; 8]))
                    + (run.len() / 32) as u64
            }
        },
    )
}

/// Packs hashes into one run value.
pub(crate) fn pack(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

pub(crate) fn serialize_hash<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(h)
}

/// Stored hashes in memory: an independent tree for tests and for checking a log from outside.
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

    /// The reference tree stored as the writer stores it: groups of three records, each group's hashes packed
    /// under the index of its first hash; the last group left in flight.
    fn stored(dir: &std::path::Path) -> (sled::Db, u64, Vec<Hash>) {
        let db = sled::open(dir).unwrap();
        let tree = db.open_tree("hashes").unwrap();
        let (mut pending_from, mut pending) = (0u64, Vec::new());
        for (n, input) in INPUTS.iter().enumerate() {
            let reader = Hashes {
                tree: &tree,
                pending_from,
                pending: &pending,
            };
            let more = tlog_tiles::stored_hashes(n as u64, &bytes(input), &reader).unwrap();
            pending.extend(more);
            if n % 3 == 2 {
                tree.insert(key(pending_from), pack(&pending)).unwrap();
                pending_from += pending.len() as u64;
                pending.clear();
            }
        }
        assert_eq!(stored_end(&tree).unwrap(), pending_from);
        (db, pending_from, pending)
    }

    #[test]
    fn roots_and_proofs_match_the_certificate_transparency_reference() {
        let dir = tempfile::tempdir().unwrap();
        let (db, pending_from, pending) = stored(dir.path());
        let tree = db.open_tree("hashes").unwrap();
        let reader = Hashes {
            tree: &tree,
            pending_from,
            pending: &pending,
        };
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
