//! The HTTP service, through real HTTP: the real binary (`casetrail serve`) on port 0, a real data directory.

mod audit;
mod disk;
mod dvcqg;
mod errors;
mod idle;
mod indicators;
mod limits;
mod matrix;
mod openapi;
mod ops;
mod stop;
mod streams;
mod tree;
mod wire;

use super::{casetrail, Proc, BIN};
pub use crate::common::{spawn, token};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// A running `casetrail serve` child, killed when dropped.
pub struct Server {
    pub child: Proc,
    pub base: String,
    pub admin: String,
    pub ingest: String,
    pub ingest_other: String,
    pub analyst: String,
    pub auditor: String,
    pub dir: tempfile::TempDir,
}

pub const PROVINCE: &str = "000.00.00.H27";
pub const DEPT: &str = "000.00.12.H27";
pub const COMMUNE: &str = "000.12.01.H27";
pub const OTHER: &str = "000.00.13.H27";

impl Server {
    /// A server with one token per role, and the agency tree province → department → commune, plus another
    /// department outside the ingest token's scope.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let admin = token(&data, "admin", "admin", None);
        let ingest = token(&data, "vendor-dept12", "ingest", Some(DEPT));
        let ingest_other = token(&data, "vendor-dept13", "ingest", Some(OTHER));
        let analyst = token(&data, "analyst", "analyst", None);
        let auditor = token(&data, "auditor", "auditor", None);
        let (child, base) = spawn(&data, extra);
        let s = Server {
            child,
            base,
            admin,
            ingest,
            ingest_other,
            analyst,
            auditor,
            dir,
        };
        for (code, name, level, parent) in [
            (PROVINCE, "UBND tỉnh Hà Tĩnh", "province", None),
            (DEPT, "Sở Tư pháp", "department", Some(PROVINCE)),
            (COMMUNE, "UBND xã Thạch Hà", "commune", Some(DEPT)),
            (OTHER, "Sở Xây dựng", "department", Some(PROVINCE)),
        ] {
            let r = s.put(
                &format!("/v1/agencies/{code}"),
                Some(&s.admin),
                &json!({ "name": name, "level": level, "parent": parent }),
            );
            assert_eq!(r.0, 201, "{}", r.1);
        }
        s
    }

    pub fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let mut req = client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, token, None)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, token, Some(body.to_string()))
    }

    /// The status and the exact bytes of a GET.
    pub fn get_bytes(&self, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        let mut req = reqwest::blocking::Client::new().get(format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.bytes().unwrap().to_vec())
    }

    pub fn post_raw(&self, path: &str, token: Option<&str>, body: String) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, token, Some(body))
    }

    pub fn put(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.request(reqwest::Method::PUT, path, token, Some(body.to_string()))
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.request(reqwest::Method::DELETE, path, token, None)
    }

    /// Posts `dossier.received` for a new dossier with the ingest token, and insists on 201.
    pub fn receive(&self, dossier: &str, agency: &str) {
        let (status, body) =
            self.post("/v1/events", Some(&self.ingest), &received(dossier, agency));
        assert_eq!(status, 201, "receiving {dossier}: {body}");
    }

    /// The log's size as the API reports it.
    pub fn log_size(&self) -> u64 {
        let (status, body) = self.get("/v1/events?limit=1", Some(&self.admin));
        assert_eq!(status, 200, "{body}");
        body["log_size"].as_u64().unwrap()
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh id for test events.
pub fn id() -> String {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "01935c3e-0000-7000-8000-{:012}",
        n + (std::process::id() as u64 % 100_000) * 1_000_000
    )
}

/// `dossier.received` by `agency`.
pub fn received(dossier: &str, agency: &str) -> Value {
    json!({ "id": id(), "type": "dossier.received", "dossier": dossier, "agency": agency,
            "occurred_at": "2019-03-12T08:30:00+07:00",
            "data": { "procedure": "1.001234", "channel": "postal", "result_by_post": true } })
}

pub fn follow_up(dossier: &str, agency: &str, ty: &str, at: &str, data: Value) -> Value {
    json!({ "id": id(), "type": ty, "dossier": dossier, "agency": agency, "occurred_at": at, "data": data })
}

/// A dossier's whole life in one batch, every dossier event type once: received by `DEPT`, transferred to `COMMUNE`,
/// a supplement requested and received, a due extension, resolved, returned by post, corrected.
pub fn life(d: &str) -> Value {
    json!([
        received(d, DEPT),
        follow_up(
            d,
            DEPT,
            "dossier.transferred",
            "2019-03-12T09:00:00+07:00",
            json!({ "to_agency": COMMUNE, "note": "liên thông" })
        ),
        follow_up(
            d,
            COMMUNE,
            "dossier.supplement_requested",
            "2019-03-12T10:00:00+07:00",
            json!({})
        ),
        follow_up(
            d,
            COMMUNE,
            "dossier.supplement_received",
            "2019-03-13T10:00:00+07:00",
            json!({})
        ),
        follow_up(
            d,
            COMMUNE,
            "dossier.due_extended",
            "2019-03-14T10:00:00+07:00",
            json!({ "new_due_at": "2019-04-01T17:00:00+07:00", "reason": "xin lỗi" })
        ),
        follow_up(
            d,
            COMMUNE,
            "dossier.resolved",
            "2019-03-15T10:00:00+07:00",
            json!({ "outcome": "approved" })
        ),
        follow_up(
            d,
            DEPT,
            "dossier.returned",
            "2019-03-16T10:00:00+07:00",
            json!({ "channel": "postal" })
        ),
        follow_up(
            d,
            DEPT,
            "dossier.corrected",
            "2019-03-17T10:00:00+07:00",
            json!({ "reason": "sửa", "channel": "counter" })
        ),
    ])
}
