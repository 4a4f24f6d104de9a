//! A client cannot hold the server's resources for as long as it likes: a body that stalls is answered 408 when the
//! request's deadline passes and its connection closed; an early answer (401) on a body never read closes the
//! connection too; connections beyond the bound are answered 503 and closed; and other requests are answered
//! promptly throughout.

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Opens a connection and sends a request whose body never finishes.
fn stalled(addr: &str, token: Option<&str>, chunked: bool) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let framing = if chunked {
        "Transfer-Encoding: chunked\r\n\r\n5\r\n[{\"a\"\r\n".to_owned()
    } else {
        "Content-Length: 1000\r\n\r\n[{\"id\":".to_owned()
    };
    s.write_all(
        format!("POST /v1/events HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n{framing}").as_bytes(),
    )
    .unwrap();
    s
}

/// The status the server answered on `s`, once it has also closed the connection (None if it did not by `by`).
fn answered_and_closed(mut s: TcpStream, by: Instant) -> Option<u16> {
    let left = by
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(10));
    s.set_read_timeout(Some(left)).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).ok()?;
    let text = String::from_utf8_lossy(&all);
    text.split_whitespace().nth(1)?.parse().ok()
}

fn healthz_ms(base: &str) -> u128 {
    let started = Instant::now();
    let r = reqwest::blocking::Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    started.elapsed().as_millis()
}

#[test]
fn stalled_bodies_are_answered_and_closed_and_connections_are_bounded() {
    // The test holds 1,500 sockets of its own: make sure its own descriptor limit allows them.
    crate::common::raise_fd_limit();
    let s = Server::start(&["--request-timeout-secs", "2", "--max-connections", "1000"]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let with_token: Vec<TcpStream> = (0..200)
        .map(|i| stalled(&addr, Some(&s.admin), i % 2 == 0))
        .collect();
    let without: Vec<TcpStream> = (0..200).map(|i| stalled(&addr, None, i % 2 == 0)).collect();
    let mut slowest = healthz_ms(&s.base);
    let chunked: Vec<TcpStream> = (0..1100).map(|_| stalled(&addr, None, true)).collect();
    for _ in 0..5 {
        slowest = slowest.max(healthz_ms(&s.base));
    }
    let by = started + Duration::from_secs(2 + 5);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for (what, sockets) in [
        ("stalled with a token", with_token),
        ("stalled without", without),
        ("chunked without", chunked),
    ] {
        for sock in sockets {
            let status = answered_and_closed(sock, by)
                .unwrap_or_else(|| panic!("{what}: not answered and closed in time"));
            match (what, status) {
                ("stalled with a token", 408) | (_, 401) | ("chunked without", 503) => {}
                other => panic!("{other:?}"),
            }
            *statuses.entry(status).or_default() += 1;
        }
        slowest = slowest.max(healthz_ms(&s.base));
    }
    assert_eq!(statuses.get(&408), Some(&200), "{statuses:?}");
    assert!(
        statuses.get(&401).copied().unwrap_or(0) >= 200,
        "{statuses:?}"
    );
    assert!(
        slowest < 1_000,
        "/healthz took {slowest} ms while clients stalled"
    );
    // Nothing of the stalled bodies was written, and the server still writes.
    let before = s.log_size();
    s.receive("D-AFTER-STALL", DEPT);
    assert_eq!(s.log_size(), before + 1);
}

#[test]
fn connections_beyond_the_bound_are_answered_503_and_closed() {
    let s = Server::start(&["--max-connections", "20"]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut kept = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let mut sock = TcpStream::connect(&addr).unwrap();
        sock.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        if status == 503 {
            assert!(
                head.contains("retry-after: 1") && head.contains("application/problem+json"),
                "{head}"
            );
            // ...and closed.
            let mut rest = Vec::new();
            sock.read_to_end(&mut rest).unwrap();
        }
        statuses.push(status);
        kept.push(sock); // the 200s stay open (keep-alive)
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        20,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        10,
        "{statuses:?}"
    );
    drop(kept);
    // Once they are gone, new connections are served again.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.get("/healthz", None).0, 200);
}
