//! For tests that play someone with write access to the disk: change what format 2 stores, through sled directly,
//! the way such a person could. Nothing here is used by casetrail itself.

use crate::block::{self, Block};
use crate::trees::block_key;

/// The block at or before `position` in a data directory's database: (its first position, its stored value).
fn stored_block(db: &sled::Db, position: u64) -> (u64, sled::IVec) {
    let log = db.open_tree("log").expect("the log tree");
    crate::trees::block_entry(&log, position)
        .expect("readable")
        .expect("a block at or before the position")
}

/// The block holding `position` in a data directory's database: (its key's first position, its events' bytes).
pub fn block_events(db: &sled::Db, position: u64) -> (u64, Vec<Vec<u8>>) {
    let (first, value) = stored_block(db, position);
    let block = Block::decode(first, &value).expect("a sound block");
    (first, block.into_events())
}

/// The stored value (header and compressed frame) of the block holding `position`.
pub fn raw_block(db: &sled::Db, position: u64) -> Vec<u8> {
    stored_block(db, position).1.to_vec()
}

/// The stored bytes of the event at `position`.
pub fn event_bytes(db: &sled::Db, position: u64) -> Vec<u8> {
    let (first, events) = block_events(db, position);
    events[(position - first) as usize].clone()
}

/// Lets `edit` change the events of the block holding `position` (their bytes, how many, their order), then
/// writes the block back under its key with a valid checksum. Audit hashes and indexes are left alone.
pub fn edit_block(db: &sled::Db, position: u64, edit: impl FnOnce(u64, &mut Vec<Vec<u8>>)) {
    let (first, mut events) = block_events(db, position);
    edit(first, &mut events);
    let value = block::encode(&events, &mut zstd::bulk::Compressor::new(1).expect("zstd"))
        .expect("encodes");
    db.open_tree("log")
        .expect("the log tree")
        .insert(block_key(first), value)
        .expect("written");
}

/// Replaces the stored bytes of the event at `position`.
pub fn set_event(db: &sled::Db, position: u64, bytes: Vec<u8>) {
    edit_block(db, position, |first, events| {
        events[(position - first) as usize] = bytes
    });
}

/// Removes an event id from the id index, in every run that holds it.
pub fn remove_id(db: &sled::Db, id: uuid::Uuid) {
    let tree = db.open_tree("index").expect("the index tree");
    let removed =
        crate::lsm::remove_everywhere(&tree, &crate::index::id_key(id)).expect("rewritten");
    assert!(removed > 0, "the id {id} was not in the index");
}

/// Removes the first stream head of the index (every copy of it), and returns its stream key.
pub fn remove_first_head(db: &sled::Db) -> String {
    let tree = db.open_tree("index").expect("the index tree");
    let key = crate::lsm::first_key_of(&tree, crate::index::HEAD)
        .expect("readable")
        .expect("a head");
    crate::lsm::remove_everywhere(&tree, &key).expect("rewritten");
    String::from_utf8_lossy(&key[1..]).into_owned()
}
