//! Not polling what cannot have moved. A connection's task is polled several times per delivered
//! event (hyper polls an SSE body again after each chunk and again after each flush; a WebSocket
//! session re-enters its `select!` after each flush); each poll of a socket's read side goes
//! through tokio's readiness check and waiter lock, and each poll of a WebSocket reads through
//! tungstenite's buffers. A [`WakeFlag`] sits in front of such a source: the source is
//! polled with a waker that raises the flag, and while it is pending and the flag is down it is
//! not polled again (the `FuturesUnordered` technique, for one source).
//!
//! The task's waker stays registered across wake-ups (an `AtomicWaker` gives it up on every wake
//! and must be registered again on every poll): a poll that finds the same task registered does
//! not touch the shared flag's lock at all.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::core::live::{Registration, TaskSlot};

/// Whether a source has woken its task since it last returned `Pending`.
pub(crate) struct WakeFlag {
    shared: Arc<Flag>,
    /// Wakes `shared`: handed to the source instead of the task's own waker.
    waker: Waker,
    registered: Registration,
    /// The source returned `Pending` on its last poll and has not been changed since.
    idle: bool,
}

struct Flag {
    /// Raised by the source's wake-ups; lowered just before the source is polled.
    raised: AtomicBool,
    /// The task to wake when the flag is raised.
    task: TaskSlot,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raised.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Default for WakeFlag {
    fn default() -> Self {
        let shared = Arc::new(Flag {
            raised: AtomicBool::new(false),
            task: TaskSlot::default(),
        });
        Self {
            waker: Waker::from(shared.clone()),
            shared,
            registered: Registration::default(),
            idle: false,
        }
    }
}

impl WakeFlag {
    /// Polls the source through `poll`, unless it is idle and has not woken the task since.
    /// `poll` must register the waker of the context it is given, as any `poll` function does.
    pub(crate) fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        // Register before looking at the flag: a wake-up that raised the flag before the
        // registration took the lock either is seen below or found the new waker.
        self.registered.register(&self.shared.task, cx.waker());
        let woken = self.shared.raised.swap(false, Ordering::AcqRel);
        if self.idle && !woken {
            return Poll::Pending;
        }
        let polled = poll(&mut Context::from_waker(&self.waker));
        self.idle = polled.is_pending();
        polled
    }

    /// The source returned a value and also polled everything it waits on until it went pending:
    /// do not poll it again until it wakes the task.
    pub(crate) fn settle(&mut self) {
        self.idle = true;
    }

    /// The source changed outside a poll (a stream was added): poll it next time.
    pub(crate) fn rouse(&mut self) {
        self.idle = false;
    }
}

/// A socket whose read side sits behind a [`WakeFlag`]. While hyper streams a response it looks
/// at the read side on every poll of the connection, to notice a client that went away; each
/// look goes through tokio's readiness check and waiter lock. Behind the flag, a look costs
/// nothing until the socket has woken the task. Writes pass straight through.
///
/// Bytes read off the socket by someone else before (see [`GatedRead::unread`]) are read first.
pub(crate) struct GatedRead<T> {
    inner: T,
    reads: WakeFlag,
    unread: Option<Box<Bytes>>,
}

impl<T> GatedRead<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            reads: WakeFlag::default(),
            unread: None,
        }
    }

    /// Puts `bytes` back in front of what the socket has yet to give: a connection served
    /// without hyper hands hyper the request it read and left.
    pub(crate) fn unread(&mut self, bytes: Bytes) {
        debug_assert!(self.unread.is_none(), "bytes are put back once");
        if !bytes.is_empty() {
            self.unread = Some(Box::new(bytes));
        }
    }

    /// The socket, and what was put back and not read yet.
    pub(crate) fn into_parts(self) -> (T, Bytes) {
        (self.inner, self.unread.map(|b| *b).unwrap_or_default())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GatedRead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(unread) = &mut this.unread {
            let n = unread.len().min(buf.remaining());
            buf.put_slice(&unread.split_to(n));
            if unread.is_empty() {
                this.unread = None;
            }
            return Poll::Ready(Ok(()));
        }
        let inner = &mut this.inner;
        this.reads.poll(cx, |cx| Pin::new(inner).poll_read(cx, buf))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GatedRead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    #[test]
    fn an_idle_source_is_polled_again_only_after_it_woke_the_task() {
        let mut flag = WakeFlag::default();
        let mut cx = Context::from_waker(Waker::noop());
        let polls = Cell::new(0);
        let source_waker = RefCell::new(None);
        let pending = |cx: &mut Context<'_>| {
            polls.set(polls.get() + 1);
            *source_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        };
        assert!(flag.poll(&mut cx, pending).is_pending());
        assert!(flag.poll(&mut cx, pending).is_pending());
        assert_eq!(polls.get(), 1, "not polled again before a wake-up");
        source_waker.take().unwrap().wake();
        assert!(flag.poll(&mut cx, pending).is_pending());
        assert_eq!(polls.get(), 2, "polled after the wake-up");
        flag.rouse();
        assert!(flag.poll(&mut cx, pending).is_pending());
        assert_eq!(polls.get(), 3, "polled after a change");
        assert!(
            flag.poll(&mut cx, |_| Poll::Ready(())).is_pending(),
            "an idle source that did not wake the task is not asked"
        );
    }

    #[test]
    fn a_settled_source_is_polled_again_only_after_it_woke_the_task() {
        let mut flag = WakeFlag::default();
        let mut cx = Context::from_waker(Waker::noop());
        let source_waker = RefCell::new(None);
        let ready = |cx: &mut Context<'_>| {
            *source_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Ready(())
        };
        assert!(flag.poll(&mut cx, ready).is_ready());
        flag.settle();
        assert!(flag.poll(&mut cx, ready).is_pending());
        source_waker.take().unwrap().wake();
        assert!(flag.poll(&mut cx, ready).is_ready());
    }

    #[test]
    fn a_ready_source_is_polled_again() {
        let mut flag = WakeFlag::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(flag.poll(&mut cx, |_| Poll::Ready(1)).is_ready());
        assert_eq!(flag.poll(&mut cx, |_| Poll::Ready(2)), Poll::Ready(2));
    }

    #[test]
    fn a_wake_up_reaches_the_task_that_polled_last() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (first, second) = (
            Arc::new(Count(Default::default())),
            Arc::new(Count(Default::default())),
        );
        let mut flag = WakeFlag::default();
        let mut source_waker = None;
        for task in [&first, &second] {
            let task = Waker::from(task.clone());
            let _ = flag.poll(&mut Context::from_waker(&task), |cx| {
                source_waker = Some(cx.waker().clone());
                Poll::<()>::Pending
            });
        }
        source_waker.take().unwrap().wake_by_ref();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_up_reaches_the_task() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(Default::default()));
        let task = Waker::from(count.clone());
        let mut cx = Context::from_waker(&task);
        let mut flag = WakeFlag::default();
        let mut source_waker = None;
        let _ = flag.poll(&mut cx, |cx| {
            source_waker = Some(cx.waker().clone());
            Poll::<()>::Pending
        });
        source_waker.unwrap().wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_gated_read_sees_data_sent_after_it_went_pending_and_the_peer_closing() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(64);
        let mut gated = GatedRead::new(a);
        let mut buf = [0u8; 8];
        let read =
            tokio::time::timeout(std::time::Duration::from_millis(20), gated.read(&mut buf)).await;
        assert!(read.is_err(), "nothing to read yet");
        b.write_all(b"hi").await.unwrap();
        assert_eq!(gated.read(&mut buf).await.unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
        gated.write_all(b"back").await.unwrap();
        assert_eq!(b.read(&mut buf).await.unwrap(), 4);
        drop(b);
        assert_eq!(gated.read(&mut buf).await.unwrap(), 0, "end of stream");
    }
}
