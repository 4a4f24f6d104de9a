//! Reading the log in order: decoded, raw, by block, and folded up to a position.

use super::SledLog;
use crate::trees::Trees;

use crate::block::Block;
use crate::{EventLog, StoreError};
use domain::StoredEvent;

impl SledLog {
    /// Every event from position `after + 1` on, decoded, in order: the replay path.
    /// Every event from position `after + 1` on, decoded, in order (no cap at the head).
    pub fn scan(&self, after: u64) -> impl Iterator<Item = Result<StoredEvent, StoreError>> + '_ {
        SledLog::events_of(&self.trees, after)
    }

    /// Calls `fold` with every event from position `after + 1` to the head, in order, decompressing and decoding
    /// on two threads while this one reads and folds: the replay path. Returns how many events were folded.
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
        const CHUNK_BLOCKS: usize = 8;
        const CHUNKS_IN_FLIGHT: usize = 8;
        const DECODERS: usize = 2;
        let size = self.head().size.min(to);
        if after >= size {
            return Ok(0);
        }
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
                        let decoded = (|| {
                            let mut out = Vec::with_capacity(chunk.len() * 128);
                            for (first, value) in &chunk {
                                let block = Block::decode(*first, value)?;
                                for (p, bytes) in block.iter() {
                                    if p > after && p <= size {
                                        out.push(Trees::decode(p, bytes)?);
                                    }
                                }
                            }
                            Ok(out)
                        })();
                        if result_tx.send(decoded).is_err() {
                            break;
                        }
                    }
                });
                work.push(work_tx);
                results.push(result_rx);
            }
            let mut raw = self.trees.raw_blocks(after + 1);
            let (mut sent, mut received, mut folded, mut exhausted) = (0usize, 0usize, 0u64, false);
            loop {
                while !exhausted && sent - received < CHUNKS_IN_FLIGHT {
                    let mut chunk = Vec::with_capacity(CHUNK_BLOCKS);
                    for item in raw.by_ref() {
                        let (first, value) = item?;
                        if first > size {
                            exhausted = true;
                            break;
                        }
                        chunk.push((first, value));
                        if chunk.len() == CHUNK_BLOCKS {
                            break;
                        }
                    }
                    if chunk.len() < CHUNK_BLOCKS {
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

    /// The decoded blocks holding positions `after + 1` on, in order: the raw canonical bytes, for export.
    pub fn blocks(&self, after: u64) -> impl Iterator<Item = Result<Block, StoreError>> + '_ {
        self.trees
            .raw_blocks(after + 1)
            .map(|item| item.and_then(|(first, value)| Block::decode(first, &value)))
    }

    /// Raw canonical bytes from position `after + 1` on (no cap at the head).
    pub fn scan_raw(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + '_ {
        self.blocks(after).flat_map(move |item| {
            let raw: Vec<Result<(u64, Vec<u8>), StoreError>> = match item {
                Err(e) => vec![Err(e)],
                Ok(block) => block
                    .iter()
                    .filter(|(p, _)| *p > after)
                    .map(|(p, b)| Ok((p, b.to_vec())))
                    .collect(),
            };
            raw
        })
    }
}
