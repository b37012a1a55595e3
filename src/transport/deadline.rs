//! Deadlines a connection's peer must meet, below the HTTP handlers:
//! - [`Guarded`]: the socket of one connection. A write the peer leaves stuck (it does not read)
//!   fails after the write deadline, which ends the connection, SSE streams included. It also
//!   carries the connection's [`Permit`], so the listener's place is held for exactly as long
//!   as the socket is open, WebSocket upgrades included.
//! - [`DeadlineBody`]: a request body must arrive whole within the body deadline, counted from
//!   its first read; one sent a byte a second fails with [`BodyTimedOut`] (`408 body_timeout`).
//!
//! The header deadline (which is also the keep-alive idle deadline) is hyper's own, and
//! `app::serve::sse_socket`'s and `app::serve::publish_socket`'s for the connections they serve
//! without hyper.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::admission::Permit;
use crate::ops::metrics::Metrics;

/// A connection's socket with a write deadline and its listener permit.
pub(crate) struct Guarded<T> {
    inner: T,
    write_timeout: Duration,
    /// Armed when a write finds the socket full, disarmed by the next write that goes through.
    /// Allocated on the first stall only: most connections never stall.
    stalled: Option<Pin<Box<Sleep>>>,
    armed: bool,
    permit: Permit,
}

impl<T> Guarded<T> {
    pub(crate) fn new(inner: T, write_timeout: Duration, permit: Permit) -> Self {
        Self {
            inner,
            write_timeout,
            stalled: None,
            armed: false,
            permit,
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The socket and the permit, for a session that sets its own deadlines (WebSockets).
    pub(crate) fn into_parts(self) -> (T, Permit) {
        (self.inner, self.permit)
    }

    /// Runs a write-side poll under the deadline: pending past it is an error.
    fn deadline<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut T, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match poll(&mut self.inner, cx) {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                // The clock is read once per stall, when the deadline is armed, not on every
                // pending poll while it runs.
                let timeout = self.write_timeout;
                let sleep = match &mut self.stalled {
                    Some(sleep) => {
                        if !self.armed {
                            sleep.as_mut().reset(Instant::now() + timeout);
                        }
                        sleep
                    }
                    None => self
                        .stalled
                        .insert(Box::pin(tokio::time::sleep_until(Instant::now() + timeout))),
                };
                self.armed = true;
                if sleep.as_mut().poll(cx).is_ready() {
                    Metrics::connection_timed_out("write").increment(1);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer did not take a write within the write deadline",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .deadline(cx, |io, cx| Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .deadline(cx, |io, cx| Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .deadline(cx, |io, cx| Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .deadline(cx, |io, cx| Pin::new(io).poll_shutdown(cx))
    }
}

/// The body deadline passed before the whole request body arrived.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub(crate) struct BodyTimedOut(pub Duration);

/// A request body that must arrive whole within a deadline from its first read.
pub(crate) struct DeadlineBody<B> {
    inner: B,
    limit: Duration,
    /// Set on the first read, so that a request whose body is never read costs no timer.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: None,
        }
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let limit = this.limit;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(deadline.as_mut().poll(cx));
        Metrics::connection_timed_out("body").increment(1);
        Poll::Ready(Some(Err(Box::new(BodyTimedOut(limit)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_body_that_trickles_past_the_deadline_fails_and_a_prompt_one_arrives() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(1);
        let stream = tokio_stream_from(rx);
        let body = DeadlineBody::new(StreamBody::new(stream), Duration::from_secs(5));
        let trickle = tokio::spawn(async move {
            for _ in 0..100 {
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = Instant::now();
        let Err(err) = body.collect().await else {
            panic!("cut at the deadline")
        };
        assert!(err.downcast_ref::<BodyTimedOut>().is_some(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        trickle.abort();

        let whole = DeadlineBody::new(
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            Duration::from_secs(5),
        );
        assert_eq!(whole.collect().await.unwrap().to_bytes(), "{}");
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
