//! What sled 0.34 costs per key and per byte on this machine, and what zstd makes of events: the measurements behind
//! format 2's layout (`docs/storage.md`, "Format 2: what is on disk, and why").
//!
//!     casetrail generate --seed 7 --dossiers 100000 > /tmp/events.ndjson
//!     cargo run --release -p store --example probe -- /tmp/events.ndjson          # compression, then sled keys
//!     cargo run --release -p store --example probe -- /tmp/events.ndjson blocks   # blocks only
//!
//! Run the block measurement alone for its rate: sled's threads of the databases dropped before it keep a core
//! busy for a while.

use std::io::BufRead;
use std::time::Instant;
fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: probe EVENTS.ndjson [blocks]");
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let lines: Vec<Vec<u8>> = f
        .lines()
        .take(300_000)
        .map(|l| l.unwrap().into_bytes())
        .collect();
    let raw: usize = lines.iter().map(|l| l.len()).sum();
    println!("{} events, {} B/event raw", lines.len(), raw / lines.len());
    let only = std::env::args().nth(2).unwrap_or_default();
    if only.is_empty() {
        for block in [32usize, 128, 512] {
            for level in [1, 3] {
                let t = Instant::now();
                let mut out = 0usize;
                let mut blocks = Vec::new();
                for chunk in lines.chunks(block) {
                    let mut buf = Vec::new();
                    for l in chunk {
                        buf.extend_from_slice(&(l.len() as u32).to_le_bytes());
                        buf.extend_from_slice(l);
                    }
                    let c = zstd::bulk::compress(&buf, level).unwrap();
                    out += c.len();
                    blocks.push((c, buf.len()));
                }
                let ct = t.elapsed();
                let t = Instant::now();
                for (c, n) in &blocks {
                    let d = zstd::bulk::decompress(c, *n).unwrap();
                    std::hint::black_box(d);
                }
                let dt = t.elapsed();
                println!("block {block} level {level}: {:.1} B/event, compress {:.0}k ev/s, decompress {:.0}k ev/s",
                out as f64 / lines.len() as f64, lines.len() as f64 / ct.as_secs_f64() / 1e3, lines.len() as f64 / dt.as_secs_f64() / 1e3);
            }
        }
    }
    if only.is_empty() {
        // sled costs
        for (name, keylen) in [("ids random16", 16usize), ("seq8", 8)] {
            let dir = tempfile::tempdir().unwrap();
            let db = open_sled(dir.path());
            let t = db.open_tree("x").unwrap();
            let n = 300_000u64;
            let start = Instant::now();
            for g in 0..(n / 10_000) {
                let mut b = sled::Batch::default();
                for i in 0..10_000u64 {
                    let p = g * 10_000 + i;
                    let k: Vec<u8> = if keylen == 16 {
                        let mut x = rand::random::<[u8; 16]>().to_vec();
                        x.truncate(16);
                        x
                    } else {
                        p.to_be_bytes().to_vec()
                    };
                    b.insert(k, &p.to_be_bytes());
                }
                t.apply_batch(b).unwrap();
            }
            db.flush().unwrap();
            let el = start.elapsed();
            drop(t);
            drop(db);
            let du = du(dir.path());
            println!(
                "{name}: {:.0}k keys/s, du {}",
                n as f64 / el.as_secs_f64() / 1e3,
                du
            );
        }
    }
    for bs in [128usize, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let db = open_sled(dir.path());
        let t = db.open_tree("log").unwrap();
        let file = std::fs::File::open(dir.path().join("db")).unwrap();
        let start = Instant::now();
        let (mut tc, mut ta, mut tf, mut ts) = (0f64, 0f64, 0f64, 0f64);
        let mut pos = 1u64;
        let mut comp = zstd::bulk::Compressor::new(1).unwrap();
        for group in lines.chunks(1000) {
            let s0 = Instant::now();
            let mut b = sled::Batch::default();
            for chunk in group.chunks(bs) {
                let mut buf = Vec::new();
                for l in chunk {
                    buf.extend_from_slice(&(l.len() as u32).to_le_bytes());
                    buf.extend_from_slice(l);
                }
                let c = comp.compress(&buf).unwrap();
                let mut k = vec![b'b'];
                k.extend_from_slice(&pos.to_be_bytes());
                b.insert(k, c);
                pos += chunk.len() as u64;
            }
            let s1 = Instant::now();
            t.apply_batch(b).unwrap();
            let s2 = Instant::now();
            db.flush().unwrap();
            let s3 = Instant::now();
            file.sync_data().unwrap();
            let s4 = Instant::now();
            tc += (s1 - s0).as_secs_f64();
            ta += (s2 - s1).as_secs_f64();
            tf += (s3 - s2).as_secs_f64();
            ts += (s4 - s3).as_secs_f64();
        }
        let el = start.elapsed();
        drop(t);
        drop(db);
        let du = du(dir.path());
        let g = (lines.len() / 1000) as f64;
        println!("blocks of {bs}: {:.0}k events/s, du {} ; per group ms: compress {:.2} apply {:.2} flush {:.2} fsync {:.2}", lines.len() as f64 / el.as_secs_f64() / 1e3, du, tc/g*1e3, ta/g*1e3, tf/g*1e3, ts/g*1e3);
    }
}

fn open_sled(dir: &std::path::Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .cache_capacity(256 << 20)
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap()
}

/// `du -sb` of a directory: bytes on disk.
fn du(dir: &std::path::Path) -> String {
    let out = std::process::Command::new("du")
        .arg("-sb")
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}
