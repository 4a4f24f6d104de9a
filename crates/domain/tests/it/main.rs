//! The domain's integration tests: parsing, the stream rules, and the agreement of the two decoders.

mod parse;
mod roundtrip;
mod rules;
mod written;

use serde_json::{json, Value};

/// A valid `dossier.received` envelope to start from.
pub fn received(dossier: &str, at: &str) -> Value {
    json!({
        "id": uuid_for(dossier, at, "received"),
        "type": "dossier.received",
        "dossier": dossier,
        "agency": "000.00.12.H27",
        "occurred_at": at,
        "data": { "procedure": "1.001234", "channel": "online", "online_level": "level4",
                  "due_at": "2019-03-19T17:00:00+07:00", "result_by_post": true }
    })
}

/// A deterministic id, so that tests read the same every run.
pub fn uuid_for(a: &str, b: &str, c: &str) -> String {
    let mut h: u128 = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C834;
    for byte in a.bytes().chain(b.bytes()).chain(c.bytes()) {
        h = h.rotate_left(7) ^ byte as u128;
        h = h.wrapping_mul(0x2545_F491_4F6C_DD1D_0000_0000_0000_0001);
    }
    uuid::Builder::from_random_bytes(h.to_le_bytes())
        .into_uuid()
        .to_string()
}
