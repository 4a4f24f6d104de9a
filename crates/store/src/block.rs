//! Blocks: how format 2 keeps events. A block is a run of consecutive events of one commit group, stored under one
//! sled key (the position of its first event) as one zstd frame with a checksum.
//!
//! Value layout (integers little-endian):
//!
//! | bytes | what |
//! | --- | --- |
//! | 1 | the block layout, [`LAYOUT`] |
//! | 4 | how many events |
//! | 4 | length of the uncompressed body |
//! | 4 | CRC-32 of the uncompressed body |
//! | rest | the body as one zstd frame |
//!
//! The body is each event's canonical bytes, each preceded by its length (4 bytes). A block never mixes groups, so
//! a group's blocks are written in its one atomic batch, and a block is never rewritten.

use crate::StoreError;

/// The block layout this code writes and reads.
pub const LAYOUT: u8 = 1;
/// The most events in one block: a read of one event decompresses at most this many.
pub const EVENTS_MAX: usize = 256;
/// A block is closed once its body passes this size.
pub const BODY_BYTES_MAX: usize = 128 * 1024;
const HEADER: usize = 13;

/// Splits a group's events (canonical bytes, in order) into the runs that become blocks.
pub fn runs<'a, T: AsRef<[u8]>>(events: &'a [T]) -> impl Iterator<Item = &'a [T]> + 'a {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut n, mut bytes) = (0, 0);
        while n < rest.len() && n < EVENTS_MAX && bytes < BODY_BYTES_MAX {
            bytes += rest[n].as_ref().len() + 4;
            n += 1;
        }
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

/// Encodes one run of events as a block value.
pub fn encode<T: AsRef<[u8]>>(
    events: &[T],
    compressor: &mut zstd::bulk::Compressor<'_>,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.as_ref().len() + 4).sum());
    for e in events {
        let e = e.as_ref();
        body.extend_from_slice(&(e.len() as u32).to_le_bytes());
        body.extend_from_slice(e);
    }
    let frame = compressor.compress(&body)?;
    let mut value = Vec::with_capacity(HEADER + frame.len());
    value.push(LAYOUT);
    value.extend_from_slice(&(events.len() as u32).to_le_bytes());
    value.extend_from_slice(&(body.len() as u32).to_le_bytes());
    value.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    value.extend_from_slice(&frame);
    Ok(value)
}

/// The event count a block's header states, without decompressing it; `None` for an unknown layout.
pub fn count(value: &[u8]) -> Option<u64> {
    match value.get(1..5) {
        Some(c) if value[0] == LAYOUT => {
            Some(u32::from_le_bytes(c.try_into().expect("4 bytes")) as u64)
        }
        _ => None,
    }
}

/// A decoded block: its events' canonical bytes, by position.
#[derive(Debug)]
pub struct Block {
    /// The position of the first event (the block's key).
    pub first: u64,
    body: Vec<u8>,
    /// Where each event's bytes sit in `body`.
    spans: Vec<(u32, u32)>,
    /// The body did not match the checksum (only [`Block::decode_unchecked`] lets such a block through).
    pub checksum_failed: bool,
}

impl Block {
    /// Decodes a block, refusing one whose body does not match its checksum.
    pub fn decode(first: u64, value: &[u8]) -> Result<Block, StoreError> {
        let block = Block::decode_unchecked(first, value)?;
        if block.checksum_failed {
            return Err(StoreError::Corrupt {
                position: first,
                message: format!(
                    "the block of {} events from here fails its checksum",
                    block.len()
                ),
            });
        }
        Ok(block)
    }

    /// Decodes a block whatever its checksum says, for `verify` to find which event differs.
    pub fn decode_unchecked(first: u64, value: &[u8]) -> Result<Block, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            position: first,
            message,
        };
        if value.len() < HEADER || value[0] != LAYOUT {
            return Err(corrupt(format!(
                "the block starting here has an unknown layout ({} bytes, layout {:?})",
                value.len(),
                value.first()
            )));
        }
        let word = |at: usize| u32::from_le_bytes(value[at..at + 4].try_into().expect("4 bytes"));
        let (count, body_len, crc) = (word(1) as usize, word(5) as usize, word(9));
        if count == 0 || count > EVENTS_MAX || body_len > BODY_BYTES_MAX + 64 * 1024 * 1024 {
            return Err(corrupt(format!(
                "the block starting here claims {count} events in {body_len} bytes"
            )));
        }
        let body = zstd::bulk::decompress(&value[HEADER..], body_len)
            .map_err(|e| corrupt(format!("the block starting here does not decompress: {e}")))?;
        if body.len() != body_len {
            return Err(corrupt(format!(
                "the block starting here decompresses to {} bytes, not {body_len}",
                body.len()
            )));
        }
        let mut spans = Vec::with_capacity(count);
        let mut at = 0usize;
        while at < body.len() {
            let len = body
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                .filter(|len| at + 4 + len <= body.len())
                .ok_or_else(|| {
                    corrupt(format!(
                        "event {} of the block starting here is cut short",
                        spans.len() + 1
                    ))
                })?;
            spans.push(((at + 4) as u32, len as u32));
            at += 4 + len;
        }
        if spans.len() != count {
            return Err(corrupt(format!(
                "the block starting here holds {} events, not the {count} it claims",
                spans.len()
            )));
        }
        let checksum_failed = crc32fast::hash(&body) != crc;
        Ok(Block {
            first,
            body,
            spans,
            checksum_failed,
        })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The position of the last event.
    pub fn last(&self) -> u64 {
        self.first + self.spans.len() as u64 - 1
    }

    /// The bytes of the event at `position`, if the block holds it.
    pub fn get(&self, position: u64) -> Option<&[u8]> {
        let i = usize::try_from(position.checked_sub(self.first)?).ok()?;
        self.spans
            .get(i)
            .map(|&(at, len)| &self.body[at as usize..(at + len) as usize])
    }

    /// Every event, as (position, bytes).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.spans.iter().enumerate().map(|(i, &(at, len))| {
            (
                self.first + i as u64,
                &self.body[at as usize..(at + len) as usize],
            )
        })
    }

    /// Every event's bytes, owned: what a test playing an attacker edits before writing the block back.
    pub fn into_events(self) -> Vec<Vec<u8>> {
        self.iter().map(|(_, b)| b.to_vec()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the events, splitting into runs and encoding each gives back the same bytes in order, and no
        /// run breaks the bounds.
        #[test]
        fn runs_round_trip(events in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..600)) {
            let mut compressor = zstd::bulk::Compressor::new(1).unwrap();
            let mut back = Vec::new();
            let mut first = 1u64;
            for run in runs(&events) {
                prop_assert!(!run.is_empty() && run.len() <= EVENTS_MAX);
                let body: usize = run.iter().map(|e| e.len() + 4).sum();
                prop_assert!(body - run.last().unwrap().len() - 4 < BODY_BYTES_MAX);
                let value = encode(run, &mut compressor).unwrap();
                let block = Block::decode(first, &value).unwrap();
                prop_assert_eq!(block.first, first);
                prop_assert_eq!(block.last(), first + run.len() as u64 - 1);
                for (p, e) in block.iter() {
                    prop_assert_eq!(block.get(p).unwrap(), e);
                }
                first += run.len() as u64;
                back.extend(block.into_events());
            }
            prop_assert_eq!(back, events);
        }

        /// A changed byte anywhere in a block is refused (checksum, frame or header), never read as other events.
        /// (A few bits of a zstd frame are padding: a change there decodes to the very same events, which is fine.)
        #[test]
        fn a_changed_byte_is_refused(at in 0usize..10_000, bit in 0u8..8) {
            let events: Vec<Vec<u8>> = (0..40).map(|i| format!("{{\"event\":{i},\"pad\":\"{}\"}}", "x".repeat(i)).into_bytes()).collect();
            let mut value = encode(&events, &mut zstd::bulk::Compressor::new(1).unwrap()).unwrap();
            let at = at % value.len();
            value[at] ^= 1 << bit;
            match Block::decode(1, &value) {
                Err(StoreError::Corrupt { position: 1, .. }) => {}
                Err(e) => prop_assert!(false, "another error: {e}"),
                Ok(block) => prop_assert_eq!(block.into_events(), events, "a changed byte at {} read as other events", at),
            }
        }
    }
}
