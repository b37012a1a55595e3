//! A subscriber connection's TCP stream, held in its [`Parking`] behind an `Arc`: the connection
//! reads and writes it through [`SharedTcp`] (tungstenite for a WebSocket, the stream's writer for
//! SSE), and publishers write events to it while the connection has parked it (see `direct`).
//! Only `&TcpStream` methods are used (readiness, then a non-blocking read or write), as tokio's
//! own split halves do, so tokio's readiness tracking stays whole.

use std::io;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::direct::Parking;

pub(crate) struct SharedTcp(Arc<Parking>);

impl SharedTcp {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self(Arc::new(Parking::new(stream)))
    }

    /// Who may write the stream: the connection, or publishers while it has parked it.
    pub(crate) fn parking(&self) -> Arc<Parking> {
        self.0.clone()
    }
}

impl Deref for SharedTcp {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        self.0.stream()
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            // `try_read` clears the readiness when the socket had nothing after all.
            match self.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl SharedTcp {
    /// Waits for the stream to take bytes, then writes with `write`; `try_write*` clears the
    /// readiness when the socket was full after all.
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_write_ready(cx))?;
            match write(self) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts the write side, as `TcpStream`'s own `poll_shutdown` does.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&**self).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn reads_writes_and_shutdown_pass_through_to_the_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (mut client, mut shared) = (client.unwrap(), SharedTcp::new(accepted.unwrap().0));
        let parking = shared.parking();
        let other = parking.stream();

        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        shared.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        shared.write_all(b"one,").await.unwrap();
        assert_eq!(
            other.try_write(b"two").unwrap(),
            3,
            "the other handle writes too"
        );
        shared.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"one,two");
    }
}
