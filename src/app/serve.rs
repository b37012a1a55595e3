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

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::error;

use crate::transport::wake::{GatedRead, WakeFlag};

/// Serves `listener` until `close` is cancelled; then stops accepting, asks every open connection
/// to finish (idle ones close, a response in flight completes) and returns once all are gone.
pub(crate) async fn serve(listener: TcpListener, router: Router, close: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = close.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                connections.spawn(connection(stream, router.clone(), close.clone()));
            }
            Err(e) => on_accept_error(e).await,
        }
    }
    connections.close();
    connections.wait().await;
}

async fn connection(stream: TcpStream, router: Router, close: CancellationToken) {
    let conn = http1::Builder::new()
        .writev(false)
        .serve_connection(
            TokioIo::new(GatedRead::new(stream)),
            TowerToHyperService::new(router),
        )
        .with_upgrades();
    let mut conn = pin!(conn);
    let mut closing = pin!(close.cancelled_owned());
    let mut wake = WakeFlag::default();
    let mut asked = false;
    // The connection's errors are the client's (reset, malformed request): nothing to act on.
    let _ = poll_fn(|cx| {
        if !asked && wake.poll(cx, |cx| closing.as_mut().poll(cx)).is_ready() {
            asked = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await;
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
