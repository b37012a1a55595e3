//! Serving a listener: accept, then one task per connection running hyper's HTTP/1 connection
//! (with upgrades, for WebSockets), as `axum::serve` does, with two differences found by
//! measuring the SSE fan-out:
//! - Responses are flattened into hyper's write buffer (`writev(false)`). With vectored writes
//!   every small SSE chunk went out as three slices (chunk size, data, CRLF) in one `writev`,
//!   which cost the kernel more than the copy saves.
//! - A connection looks at the shutdown signal only after the signal woke it ([`WakeFlag`]):
//!   a shared signal's waiter list sits behind a lock every connection would otherwise take on
//!   every wake-up, once per delivered event.
//! - The same goes for the socket's read side ([`GatedRead`]), which hyper checks on every poll
//!   while a response streams.
//!
//! - A connection that opens with `GET /v1/sse` is served on its socket without hyper
//!   ([`sse_socket`]), so an open stream keeps none of hyper's per-connection buffers.
//! - A connection that opens with a publish is served on its socket while its requests are plain
//!   ([`publish_socket`]), and hyper takes it over at the first that is not.
//!
//! Every connection is admitted against the listener's caps first (a refused one is answered
//! `503 too_many_connections` on the socket and closed at once, see `transport::admission`), and
//! then held to deadlines: hyper's header read timeout (which also bounds a kept-alive
//! connection's idle time), a whole-body deadline on every request body, and a write deadline on
//! the socket (`transport::deadline`). Deadlines are read from the configuration at each accept.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::error;

use crate::config::Config;
use crate::ops::metrics::Metrics;
use crate::transport::admission::{self, Admission, Permit};
use crate::transport::deadline::{DeadlineBody, Guarded};
use crate::transport::wake::{GatedRead, WakeFlag};
use crate::transport::AppState;

pub(crate) mod publish_socket;
pub(crate) mod sse_socket;

/// A connection's socket: the write deadline and the listener permit around it, its reads
/// behind a flag (see [`GatedRead`]).
type Io = Guarded<GatedRead<TcpStream>>;

/// hyper's defaults (`h1_max_headers`, `max_buf_size`), so that a head hyper would take is taken
/// by the connections served without it too.
const MAX_HEADERS: usize = 100;
const MAX_HEAD: usize = 8192 + 4096 * 100;

/// How long a refused peer is given to stop sending (see [`linger`]).
const LINGER: Duration = Duration::from_secs(2);

/// An answer's status line and the router's headers, for the connections served without hyper;
/// the framing headers (`content-length`, `transfer-encoding`, `connection`) are left out, for
/// the writer to say once.
fn write_head_start(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// After refusing a head the peer may still be sending: closing with its bytes unread would
/// reset the connection, and a reset can reach the peer before the answer does. So what it sends
/// is read and dropped until it closes its side too, for a bounded time and amount.
async fn linger(io: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut scratch = vec![0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        let mut left = MAX_HEAD;
        while left > 0 {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// What a listener admits and the configuration its deadlines are read from.
pub(crate) struct Gate {
    pub(crate) admission: Arc<Admission>,
    pub(crate) config: Arc<ArcSwap<Config>>,
}

/// What answers a listener's requests: its router, and on the public listener the state a
/// publisher's connection calls the handler of `POST /v1/publish` with, without the router (see
/// [`publish_socket`]); `None` on the admin listener.
#[derive(Clone)]
pub(crate) struct Answer {
    pub(crate) router: Router,
    pub(crate) publish: Option<AppState>,
}

/// One connection's deadlines, read at its accept.
#[derive(Clone, Copy)]
struct Deadlines {
    header: Duration,
    body: Duration,
    write: Duration,
}

impl Gate {
    fn deadlines(&self) -> Deadlines {
        let config = self.config.load();
        Deadlines {
            header: config.server.connections.header_read_timeout,
            body: config.server.connections.body_read_timeout,
            write: config.subscribers.write_timeout,
        }
    }
}

/// Serves `listener` until `close` is cancelled; then stops accepting, asks every open connection
/// to finish (idle ones close, a response in flight completes) and returns once all are gone.
pub(crate) async fn serve(
    listener: TcpListener,
    answer: Answer,
    gate: Gate,
    close: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = close.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => match gate.admission.admit(peer.ip()) {
                Ok(permit) => {
                    let deadlines = gate.deadlines();
                    let answer = answer.clone();
                    connections.spawn(connection(stream, permit, deadlines, answer, close.clone()));
                }
                Err(why) => admission::refuse(stream, why),
            },
            Err(e) => on_accept_error(e).await,
        }
    }
    connections.close();
    connections.wait().await;
}

async fn connection(
    stream: TcpStream,
    permit: Permit,
    deadlines: Deadlines,
    answer: Answer,
    close: CancellationToken,
) {
    let head_by = Instant::now() + deadlines.header;
    let opening = opening(&stream, head_by, &close).await;
    match opening {
        Opening::Sse => {
            let write = deadlines.write;
            sse_socket::serve(stream, permit, head_by, write, answer.router, close).await
        }
        Opening::Gone => {}
        // Boxed: the task keeps the largest state of its future for as long as it lives, and an
        // SSE stream's should not be sized by hyper's connection or a publisher's.
        Opening::Publish => {
            Box::pin(publish(stream, permit, head_by, deadlines, answer, close)).await
        }
        Opening::Other => {
            let io = Guarded::new(GatedRead::new(stream), deadlines.write, permit);
            Box::pin(http(io, deadlines, answer.router, close)).await
        }
    }
}

/// Serves a publisher's requests without hyper while they are plain, then with hyper.
async fn publish(
    stream: TcpStream,
    permit: Permit,
    head_by: Instant,
    deadlines: Deadlines,
    answer: Answer,
    close: CancellationToken,
) {
    let limits = publish_socket::Deadlines {
        header: deadlines.header,
        body: deadlines.body,
    };
    let io = Guarded::new(GatedRead::new(stream), deadlines.write, permit);
    let router = answer.router.clone();
    let served = publish_socket::serve(io, head_by, limits, answer, close.clone()).await;
    if let publish_socket::Served::Hyper(mut io, read) = served {
        io.get_mut().unread(read);
        Box::pin(http(io, deadlines, router, close)).await
    }
}

/// What a new connection opens with.
enum Opening {
    /// A request for the SSE stream: served by [`sse_socket`].
    Sse,
    /// A publish: served by [`publish_socket`] while its requests are plain.
    Publish,
    /// Anything else, or a start that has not all arrived: hyper's.
    Other,
    /// Nothing within the header deadline, the peer left, or the listener is closing: close.
    Gone,
}

/// Peeks at the start of a new connection's first request (nothing is read off the socket).
/// `head_by` is the header deadline, counted from the accept.
async fn opening(stream: &TcpStream, head_by: Instant, close: &CancellationToken) -> Opening {
    let mut start = [0u8; PEEK];
    let peeked = tokio::select! {
        () = close.cancelled() => return Opening::Gone,
        peeked = tokio::time::timeout_at(head_by, stream.peek(&mut start)) => peeked,
    };
    match peeked {
        Err(_) => {
            Metrics::connection_timed_out("header").increment(1);
            Opening::Gone
        }
        Ok(Err(_)) | Ok(Ok(0)) => Opening::Gone,
        Ok(Ok(n)) => classify(&start[..n]),
    }
}

/// The longest start [`classify`] looks at.
const PEEK: usize = {
    let (sse, publish) = (sse_socket::PEEK, publish_socket::PEEK);
    if sse > publish {
        sse
    } else {
        publish
    }
};

fn classify(start: &[u8]) -> Opening {
    if sse_socket::is_sse(start) {
        Opening::Sse
    } else if publish_socket::is_publish(start) {
        Opening::Publish
    } else {
        Opening::Other
    }
}

/// Serves the connection with hyper: requests one after another, and upgrades.
async fn http(io: Io, deadlines: Deadlines, router: Router, close: CancellationToken) {
    let body_limit = deadlines.body;
    let service = router.map_request(move |req: Request<Incoming>| {
        req.map(|body| axum::body::Body::new(DeadlineBody::new(body, body_limit)))
    });
    let conn = http1::Builder::new()
        .writev(false)
        .timer(TokioTimer::new())
        .header_read_timeout(deadlines.header)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    let mut conn = pin!(conn);
    let mut closing = pin!(close.cancelled_owned());
    let mut wake = WakeFlag::default();
    let mut asked = false;
    // The connection's errors are the client's (reset, malformed request, a missed deadline):
    // nothing to act on but counting the header deadline (the others count themselves).
    let served = poll_fn(|cx| {
        if !asked && wake.poll(cx, |cx| closing.as_mut().poll(cx)).is_ready() {
            asked = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await;
    if let Err(e) = served {
        if e.is_timeout() {
            Metrics::connection_timed_out("header").increment(1);
        }
    }
}

/// Resets and refusals are the peer's; anything else (out of file descriptors) is the node's:
/// say so and give the node a second before accepting again, as hyper and axum do.
async fn on_accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    error!(error = %e, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without making one.
    fn future_size<A, B, C, D, E, F: Future>(_: impl FnOnce(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_open_sse_stream_task_keeps_little_besides_its_socket() {
        // A connection's task keeps its future's largest state for as long as it is open: hyper's
        // connection and the steps before an SSE answer are boxed while they run, so an open
        // stream keeps its socket, its body and the write in progress.
        let size = future_size(connection);
        assert!(size <= 1024, "a connection's future is {size} bytes");
    }
}
