//! Bounds on what a client can hold: a request has a deadline to arrive whole (its body included), a connection
//! whose request body was left unread is closed after the answer, and connections beyond a bound are answered
//! 503 and closed, below the process's file-descriptor limit.

use crate::errors::{ApiError, Error};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, ConnectionType};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use futures_util::Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Open connections, counted by a token each connection carries in its extensions (dropped with it).
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
}

/// One open connection: counted while it lives, with its socket's descriptor (valid while the connection is).
pub struct Open(Arc<Connections>, std::os::fd::RawFd);

impl Connections {
    pub fn open(self: &Arc<Connections>, fd: std::os::fd::RawFd) -> Open {
        self.open.fetch_add(1, Ordering::Relaxed);
        Open(self.clone(), fd)
    }

    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many connections the process can hold: `wanted`, lowered to leave room under the file-descriptor limit
/// (raised first to its hard ceiling) for the store's files, the listener and the blocking pool.
pub fn connection_bound(wanted: usize) -> usize {
    const RESERVE: u64 = 256;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return wanted;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let room = (limit.rlim_cur as u64).saturating_sub(RESERVE).max(16) as usize;
    if wanted > room {
        tracing::warn!(
            wanted,
            room,
            "max_connections lowered to fit the file-descriptor limit"
        );
    }
    wanted.min(room)
}

/// The listening socket, as actix-web makes it: the address reusable at once after a stop, and a backlog of 1,024
/// connections waiting to be accepted (a burst of clients is queued rather than refused).
pub fn listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A request body that must arrive by a deadline, and says whether it was read to its end.
struct Watched {
    inner: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
    seconds: u64,
    ended: Arc<AtomicBool>,
}

impl Stream for Watched {
    type Item = Result<web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.ended.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => {
                let why = format!("the body did not arrive within {} s", self.seconds);
                Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                    std::io::Error::new(std::io::ErrorKind::TimedOut, why),
                ))))
            }
            other => other,
        }
    }
}

use std::future::Future;

/// Whether a request declares a body.
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
        || headers.contains_key(header::TRANSFER_ENCODING)
}

/// The middleware: refuses a request beyond the connection bound (503, Retry-After, close), gives its body a
/// deadline, and closes the connection after any answer that left the body unread (an early 401, a 413, a handler
/// that reads no body): a client cannot keep a connection by never finishing a body.
pub async fn bounded(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<crate::State>>()
        .cloned()
        .expect("the state is registered");
    if state.connections.count() > state.max_connections {
        let (request, _) = req.into_parts();
        let mut response = ApiError(Error::Http {
            status: 503,
            detail: format!(
                "more than {} connections are open; try again shortly",
                state.max_connections
            ),
        })
        .error_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        return Ok(ServiceResponse::new(request, response));
    }
    let ended = Arc::new(AtomicBool::new(false));
    let body = has_body(&req);
    if body {
        let seconds = state.settings.request_timeout_secs.max(1);
        let watched = Watched {
            inner: req.take_payload(),
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(seconds))),
            seconds,
            ended: ended.clone(),
        };
        req.set_payload(Payload::Stream {
            payload: Box::pin(watched),
        });
    }
    let fd = req.conn_data::<Open>().map(|o| o.1);
    let mut response = next.call(req).await?.map_into_boxed_body();
    if body && !ended.load(Ordering::Relaxed) {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        // actix would otherwise wait for the rest of the body for as long as the client likes: stop reading the
        // socket (the answer is still written), so that the connection ends once the answer is out.
        if let Some(fd) = fd {
            // SAFETY: the descriptor belongs to this connection, which is open while its request is served.
            unsafe { libc::shutdown(fd, libc::SHUT_RD) };
        }
    }
    Ok(response)
}
