//! A connection's bytes, below actix's HTTP/1.1 parser.
//!
//! actix answers a request it cannot parse by itself, before any middleware sees it, with an empty body: a head over
//! 128 KiB or with more than 96 fields (431), a URI over 65,534 bytes, a control character in a header or a malformed
//! `Content-Length` (400), a head that did not arrive within [`HEAD_TIMEOUT`] (408). Such an answer is always the
//! last thing written on its connection (actix closes it after). [`Wire`] recognises one as it is written and puts
//! a problem (RFC 9457, the same shape as every other error) in its place, then, having closed its side, reads and
//! drops what the client still sends for a moment, so that a client still sending its oversized head receives the
//! answer instead of a reset.

use crate::errors::{ApiError, Error};
use actix_rt::net::TcpStream;
use actix_web::http::StatusCode;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a client has to send a request's head (actix's `client_request_timeout`); its body then has
/// `Settings::request_timeout_secs`.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long, and how much, a connection answered with a problem still reads before it closes (see `Drop`).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;
/// Connections closing lingering at once, at most (each holds a descriptor for up to `LINGER`).
const LINGERING_MAX: usize = 64;
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// The longest bare error head looked for (actix's are about 130 bytes).
const BARE_HEAD_MAX: usize = 256;

/// A TCP connection whose bare error answers become problems.
pub struct Wire {
    /// Taken only by `drop`, to close lingering.
    io: Option<TcpStream>,
    /// The problem written in place of a bare answer, and how many of its bytes are out.
    problem: Option<(Vec<u8>, usize)>,
}

impl Wire {
    pub fn new(io: TcpStream) -> Wire {
        Wire {
            io: Some(io),
            problem: None,
        }
    }

    fn io(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.io.as_mut().expect("taken only when dropped"))
    }

    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.io.as_ref().and_then(|io| io.peer_addr().ok())
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self.io.as_ref().expect("taken only when dropped"))
    }

    /// Writes what is left of the problem, if there is one.
    fn poll_problem(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((bytes, mut sent)) = self.problem.take() else {
            return Poll::Ready(Ok(()));
        };
        let mut result = Poll::Ready(Ok(()));
        while sent < bytes.len() {
            match self.io().poll_write(cx, &bytes[sent..]) {
                Poll::Ready(Ok(0)) => {
                    result = Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    break;
                }
                Poll::Ready(Ok(n)) => sent += n,
                other => {
                    result = other.map_ok(|_| ());
                    break;
                }
            }
        }
        self.problem = Some((bytes, sent));
        result
    }
}

/// After a problem, the connection is not simply dropped (actix drops it at once after a parse error, perhaps before
/// the problem is all out): closing a socket with unread bytes resets it, and a reset can destroy the answer before
/// the client reads it. What is left of the problem is sent, the sending side closed, and what the client still
/// sends read and dropped, for a moment at most; and never more than `LINGERING_MAX` connections at once, so that
/// malformed requests cannot hold descriptors beyond the connection bound.
impl Drop for Wire {
    fn drop(&mut self) {
        let (Some((bytes, sent)), Some(mut io)) = (self.problem.take(), self.io.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if LINGERING.fetch_add(1, Ordering::Relaxed) >= LINGERING_MAX {
            LINGERING.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        runtime.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let close = async {
                if io.write_all(&bytes[sent..]).await.is_err() {
                    return;
                }
                let _ = io.shutdown().await;
                let (mut scratch, mut read) = ([0u8; 8192], 0);
                while read < LINGER_BYTES {
                    match io.read(&mut scratch).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, close).await;
            drop(io);
            LINGERING.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The whole answer written in place of a bare one with this status.
fn problem_answer(status: StatusCode) -> Vec<u8> {
    let detail = match status.as_u16() {
        400 => "the request could not be read as HTTP/1.1: its request line, its URI (65,534 bytes at most) or a \
                header is malformed"
            .to_string(),
        408 => format!(
            "the request head did not arrive within {} s",
            HEAD_TIMEOUT.as_secs()
        ),
        431 => "the request head is larger than 128 KiB or has more than 96 header fields".to_string(),
        _ => "the connection failed in the middle of a request".to_string(),
    };
    let body = ApiError(Error::Http {
        status: status.as_u16(),
        detail,
    })
    .problem()
    .to_string();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\
         date: {}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    )
    .into_bytes();
    answer.extend_from_slice(body.as_bytes());
    answer
}

/// Where a bare error answer starts in `buf`, and its status, if `buf` ends with one: a complete response head of
/// status 400 or more whose only fields are `content-length: 0`, `connection` and `date`. Every answer of the
/// application carries a body (`extract::problems` sees to it), so only actix's own answers have this shape.
fn bare_error(buf: &[u8]) -> Option<(usize, StatusCode)> {
    // Such a head is under 200 bytes: only the end of what is written is looked at, so that a large answer written
    // in many partial writes is not scanned again at each.
    let from = buf.len().saturating_sub(BARE_HEAD_MAX);
    let start = from + buf[from..].windows(7).rposition(|w| w == b"HTTP/1.")?;
    let mut fields = [httparse::EMPTY_HEADER; 3];
    let mut head = httparse::Response::new(&mut fields);
    match head.parse(&buf[start..]) {
        Ok(httparse::Status::Complete(n)) if start + n == buf.len() => {}
        _ => return None,
    }
    let status = StatusCode::from_u16(head.code?).ok()?;
    let mut empty = false;
    for field in head.headers.iter() {
        match field.name.to_ascii_lowercase().as_str() {
            "content-length" => empty = field.value == b"0",
            "connection" | "date" => {}
            _ => return None,
        }
    }
    (empty && status.as_u16() >= 400).then_some((start, status))
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_read(cx, buf)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.problem.is_some() {
            ready!(this.poll_problem(cx))?;
            return this.io().poll_write(cx, buf);
        }
        match bare_error(buf) {
            // What comes before it first (actix offers the rest again).
            Some((start, _)) if start > 0 => this.io().poll_write(cx, &buf[..start]),
            Some((_, status)) => {
                this.problem = Some((problem_answer(status), 0));
                // Taken whole: the problem goes out in its place, now or when actix flushes.
                let _ = this.poll_problem(cx)?;
                Poll::Ready(Ok(buf.len()))
            }
            None => this.io().poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_problem(cx))?;
        this.io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_problem(cx))?;
        this.io().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actix_bare_answers_are_recognised_and_nothing_else() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\
                     date: Mon, 30 Nov 2026 03:00:02 GMT\r\n\r\n";
        assert_eq!(
            bare_error(bare),
            Some((0, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
        );
        // After the tail of an earlier answer on the same connection.
        let mut after = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        after.extend_from_slice(bare);
        assert_eq!(
            bare_error(&after).map(|(at, _)| at),
            Some(after.len() - bare.len())
        );
        for not in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: x\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ncontent-type: text/plain\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\ntrailing",
            b"{\"detail\":\"HTTP/1.1 400\"}",
        ] {
            assert_eq!(bare_error(not), None, "{:?}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn the_answer_is_a_problem_with_its_length() {
        let answer = problem_answer(StatusCode::BAD_REQUEST);
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut head = httparse::Response::new(&mut fields);
        let httparse::Status::Complete(n) = head.parse(&answer).unwrap() else {
            panic!("a whole head")
        };
        assert_eq!(head.code, Some(400));
        let length: usize = head
            .headers
            .iter()
            .find(|f| f.name == "content-length")
            .map(|f| std::str::from_utf8(f.value).unwrap().parse().unwrap())
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&answer[n..]).unwrap();
        assert_eq!(answer.len() - n, length);
        assert_eq!(body["code"], "bad_request");
        assert_eq!(body["status"], 400);
    }
}
