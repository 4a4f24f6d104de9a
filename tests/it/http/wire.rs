//! What actix's HTTP parser refuses by itself (a head too large, a URI too long, a malformed field, a head too slow)
//! is answered with a problem like every other error, not an empty body; an answer before it on the same connection
//! is untouched; and the client receives the problem whole even while it is still sending the head it was refused
//! for.

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `raw` on a new connection (ignoring a send cut short by the server) and reads until the server closes.
fn exchange(addr: &str, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(raw);
    let mut all = Vec::new();
    s.read_to_end(&mut all)
        .unwrap_or_else(|e| panic!("the answer was not read whole ({e}); got {all:?}"));
    all
}

/// The answers on a connection, in order: status, content type, and the body as JSON when it is some.
fn answers(mut bytes: &[u8]) -> Vec<(u16, String, Value)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let text = String::from_utf8_lossy(bytes);
        let head_end = text.find("\r\n\r\n").expect("a whole head") + 4;
        let head = text[..head_end].to_lowercase();
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let field = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
        };
        let length: usize = field("content-length")
            .expect("a content-length")
            .parse()
            .unwrap();
        let body = &bytes[head_end..head_end + length];
        out.push((
            status,
            field("content-type").unwrap_or_default(),
            serde_json::from_slice(body).unwrap_or(Value::Null),
        ));
        bytes = &bytes[head_end + length..];
    }
    out
}

#[test]
fn what_the_parser_refuses_is_a_problem() {
    let s = Server::start(&[]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let long_uri = format!(
        "GET /v1/indicators?x={} HTTP/1.1\r\nHost: h\r\n\r\n",
        "a".repeat(66_000)
    );
    let big_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "b".repeat(140_000)
    );
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_fields = format!("GET /healthz HTTP/1.1\r\nHost: h\r\n{many}\r\n");
    // More than a megabyte of head: the server answers long before the client is done sending.
    let huge_head = format!("GET /x?{} HTTP/1.1\r\n\r\n", "c".repeat(1_500_000));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("a 66 KB URI", long_uri.into_bytes(), 400, "bad_request"),
        (
            "a 140 KB field",
            big_head.into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "100 fields",
            many_fields.into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "a 1.5 MB head",
            huge_head.into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "a control character in a field",
            b"GET /healthz HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "a malformed Content-Length",
            b"POST /v1/events HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "not HTTP at all",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        // The head never finishes: answered when its 5 s are up.
        (
            "a head that stalls",
            b"GET /healthz HTTP/1.1\r\nHost: h\r\n".to_vec(),
            408,
            "request_timeout",
        ),
    ];
    for (what, raw, status, code) in cases {
        let got = answers(&exchange(&addr, &raw));
        assert_eq!(got.len(), 1, "{what}: {got:?}");
        let (got_status, content_type, body) = &got[0];
        assert_eq!(*got_status, status, "{what}: {body}");
        assert_eq!(content_type, "application/problem+json", "{what}");
        assert_eq!(body["code"], code, "{what}: {body}");
        assert_eq!(body["status"], status, "{what}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {body}"
        );
    }
    // Pipelined: a good request and then a bad one on the same connection. The first answer is the real one,
    // byte for byte as on a connection of its own; the second is the problem.
    let alone = answers(&exchange(
        &addr,
        b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    ));
    let mut pipelined = b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    pipelined.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n");
    let got = answers(&exchange(&addr, &pipelined));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], alone[0]);
    assert_eq!(
        (got[1].0, got[1].2["code"].as_str()),
        (400, Some("bad_request"))
    );
    // The server serves on.
    assert_eq!(s.get("/healthz", None).0, 200);
}
