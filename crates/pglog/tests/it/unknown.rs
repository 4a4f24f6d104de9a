//! A commit whose outcome the node does not learn from its connection, made to happen: a TCP proxy between the
//! log and PostgreSQL that reads the protocol's messages and, at the first `COMMIT`, drops the connection right
//! after passing it on (the server commits, the node never hears), drops it instead of passing it on (the server
//! rolls back), or passes it on and then stalls every connection past the node's deadline. Every case must be
//! answered truthfully: nothing acknowledged that is not there, nothing written twice.

use super::fast_cluster;
use domain::parse::{parse_envelope, Form};
use pglog::{Config, PgLog};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::{AppendError, AppendRequest, EventLog};

/// What the proxy does at the next `COMMIT` it sees (once; then it passes everything).
#[derive(Clone, Copy, PartialEq)]
#[repr(u8)]
enum Fault {
    None = 0,
    /// Pass the `COMMIT` on, then drop the connection before the answer comes back.
    DropAfter = 1,
    /// Drop the connection instead of passing the `COMMIT` on.
    DropInstead = 2,
    /// Pass the `COMMIT` on, then hold every answer, and every new connection, for `STALL`.
    Stall = 3,
}

const STALL: Duration = Duration::from_secs(5);

struct Proxy {
    port: u16,
    fault: Arc<AtomicU8>,
    stalled: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(AtomicU8::new(Fault::None as u8));
        let stalled = Arc::new(AtomicBool::new(false));
        let (f, st) = (fault.clone(), stalled.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                while st.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (f, st) = (f.clone(), st.clone());
                std::thread::spawn(move || relay(client, server, f, st));
            }
        });
        Proxy {
            port,
            fault,
            stalled,
        }
    }

    fn arm(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }
}

fn read_exact(s: &mut TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).ok().map(|_| buf)
}

/// Copies one connection both ways, reading the client's side message by message.
fn relay(mut client: TcpStream, server: TcpStream, fault: Arc<AtomicU8>, stalled: Arc<AtomicBool>) {
    let mut to_server = server.try_clone().unwrap();
    let (mut from_server, mut to_client) = (server, client.try_clone().unwrap());
    let hold = stalled.clone();
    // Set once the answer to a `COMMIT` must never reach the client.
    let mute = Arc::new(AtomicBool::new(false));
    let muted = mute.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from_server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while hold.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if muted.load(Ordering::SeqCst) {
                break;
            }
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
    // The startup messages carry no type byte (an SSL request first, maybe).
    let mut typed = false;
    loop {
        let message = if typed {
            let Some(head) = read_exact(&mut client, 5) else {
                break;
            };
            let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
            let Some(body) = read_exact(&mut client, len - 4) else {
                break;
            };
            [head, body].concat()
        } else {
            let Some(head) = read_exact(&mut client, 4) else {
                break;
            };
            let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
            let Some(body) = read_exact(&mut client, len - 4) else {
                break;
            };
            let ssl_request = body.len() == 4 && body == 80877103u32.to_be_bytes();
            typed = !ssl_request;
            [head, body].concat()
        };
        let commit = message[0] == b'Q' && message[5..].starts_with(b"COMMIT");
        let armed = if commit {
            fault.swap(Fault::None as u8, Ordering::SeqCst)
        } else {
            Fault::None as u8
        };
        if armed == Fault::DropInstead as u8 {
            break;
        }
        if armed == Fault::DropAfter as u8 {
            mute.store(true, Ordering::SeqCst);
        }
        if to_server.write_all(&message).is_err() {
            break;
        }
        if armed == Fault::DropAfter as u8 {
            // Long enough for the server to commit; then the client's connection is gone.
            std::thread::sleep(Duration::from_millis(300));
            break;
        }
        if armed == Fault::Stall as u8 {
            stalled.store(true, Ordering::SeqCst);
            let release = stalled.clone();
            std::thread::spawn(move || {
                std::thread::sleep(STALL);
                release.store(false, Ordering::SeqCst);
            });
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = to_server.shutdown(Shutdown::Both);
}

fn event(n: u32) -> domain::Submitted {
    let v = json!({ "id": format!("00000000-0000-7000-8000-{n:012}"), "type": "dossier.received",
        "dossier": format!("U{n}"), "agency": "000.00.12.H27", "occurred_at": "2019-03-12T08:00:00+07:00",
        "data": { "procedure": "1.001234", "channel": "counter" } });
    parse_envelope(&v, 0, Form::Submitted).unwrap()
}

fn append(log: &PgLog, n: u32) -> Result<store::AppendOutcome, AppendError> {
    log.append_blocking(AppendRequest {
        events: vec![event(n)],
        source: "test".into(),
    })
}

/// How many times each id is stored, read straight from the database.
fn stored(cluster: &pglog::cluster::Cluster, n: u32) -> u64 {
    cluster
        .psql(
            "unknown",
            &format!("SELECT count(*) FROM events WHERE id = '00000000-0000-7000-8000-{n:012}'"),
        )
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_commit_whose_answer_is_lost_is_answered_truthfully() {
    let cluster = fast_cluster();
    cluster.create_database("unknown").unwrap();
    let proxy = Proxy::start(cluster.port());
    let mut config = Config::new(format!(
        "postgres://postgres@127.0.0.1:{}/unknown",
        proxy.port
    ));
    config.stall = Duration::from_secs(2);
    let log = PgLog::open(config).unwrap();
    append(&log, 1).unwrap();

    // The server committed; the node never heard. It finds out, and acknowledges what is there.
    proxy.arm(Fault::DropAfter);
    let landed = append(&log, 2).expect("a commit that landed is acknowledged");
    assert_eq!(landed.receipts[0].position, 2);
    assert!(!landed.receipts[0].replayed);
    assert_eq!(stored(&cluster, 2), 1);

    // The COMMIT never reached the server: nothing landed, the group is decided again and written once.
    proxy.arm(Fault::DropInstead);
    let again = append(&log, 3).expect("a group that did not land is written again");
    assert_eq!(again.receipts[0].position, 3);
    assert_eq!(stored(&cluster, 3), 1);

    // The COMMIT reached the server, then the database stayed out of reach past the deadline: the answer says
    // the outcome is unknown. Sent again once it answers: the original receipt, nothing written twice.
    proxy.arm(Fault::Stall);
    match append(&log, 4) {
        Err(e @ AppendError::OutcomeUnknown(_)) => {
            assert!(e.to_string().contains("retry with the same ids"), "{e}")
        }
        other => panic!("a commit of unknown outcome was answered {other:?}"),
    }
    while proxy.stalled.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let retried = append(&log, 4).expect("the retry is answered");
    assert_eq!(retried.receipts[0].position, 4);
    assert!(
        retried.receipts[0].replayed,
        "the stalled commit had landed"
    );
    assert_eq!(stored(&cluster, 4), 1);

    // The log goes on, gapless, and every node-side cache agrees with the database.
    let next = append(&log, 5).unwrap();
    assert_eq!(next.receipts[0].position, 5);
    let count: u64 = cluster
        .psql("unknown", "SELECT count(*) FROM events")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(count, 5);
    use store::Maintenance;
    let report = log.verify(&mut |_| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
