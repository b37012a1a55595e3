//! Event frames written on the publisher's thread. A WebSocket session that waits with nothing
//! unsent parks its socket here ([`DirectWriter::park`]); a publish to one of its channels then
//! writes the event's frame to the socket itself, under the channel's lock, and the session's
//! task is not woken: a delivery costs one `send`, where waking the task cost a wake-up, a
//! scheduler hop (often to the other worker thread) and a poll of the session.
//!
//! The socket has one writer at a time. The task holds it ([`TASK`]) whenever it is not waiting;
//! a waiting task leaves it [`PARKED`], and a publisher takes it ([`WRITING`]) for one
//! non-blocking write of one frame. The task takes it back at its next wake-up, waiting out a
//! write in progress. A publisher that cannot write a whole frame (the socket is full) gives the
//! socket back to the task with the rest of the frame, if any, and wakes it: from there the
//! session's own writer sends, waits within the write deadline and cuts a slow consumer, as for
//! any event.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use super::frames;
use crate::core::live::Direct;
use crate::core::Event;
use crate::ops::metrics::BatchedCounter;

/// The session's task holds the socket.
const TASK: u8 = 0;
/// The task waits with nothing unsent: a publisher may write.
const PARKED: u8 = 1;
/// A publisher is writing.
const WRITING: u8 = 2;

thread_local! {
    /// The frame being written: kept per thread, so it stays in cache from one send to the next.
    static FRAME: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Past this, a thread's frame buffer is given back after use (a large event).
const FRAME_KEEP: usize = 64 * 1024;

/// The writer of one WebSocket's event frames on publishers' threads.
pub(crate) struct DirectWriter {
    stream: Arc<TcpStream>,
    state: AtomicU8,
    /// The rest of a frame a publisher began and the socket did not take: it goes out before
    /// anything else.
    rest: Mutex<Option<Bytes>>,
    /// Events delivered on the connection, by either writer.
    delivered: Mutex<BatchedCounter>,
}

impl DirectWriter {
    /// A writer for `stream`, held by the task until it first parks.
    pub(crate) fn new(stream: Arc<TcpStream>, delivered: BatchedCounter) -> Self {
        Self {
            stream,
            state: AtomicU8::new(TASK),
            rest: Mutex::new(None),
            delivered: Mutex::new(delivered),
        }
    }

    /// Takes the socket back for the task, waiting out a publisher's write in progress (one
    /// non-blocking `send`). Returns the rest of a frame a publisher began, which the task must
    /// send before anything else.
    pub(crate) fn claim(&self) -> Option<Bytes> {
        let mut spins = 0u32;
        loop {
            match self.state.compare_exchange_weak(
                PARKED,
                TASK,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return None,
                Err(TASK) => return self.rest.lock().take(),
                Err(_) => {
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
    }

    /// Leaves the socket to publishers while the task waits. Only the task, holding the socket
    /// with nothing unsent (no backlog, nothing in tungstenite's buffer), may park it.
    pub(crate) fn park(&self) {
        self.state.store(PARKED, Ordering::Release);
    }

    /// Counts `n` events delivered by the task.
    pub(crate) fn delivered(&self, n: u64) {
        self.delivered.lock().add(n);
    }
}

impl Direct<Arc<Event>> for DirectWriter {
    fn offer(&self, event: &Arc<Event>, index: u64, next: &AtomicU64) -> bool {
        if self
            .state
            .compare_exchange(PARKED, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // Behind on this channel: the task sends what it has not taken first.
        if next.load(Ordering::Relaxed) != index {
            self.state.store(PARKED, Ordering::Release);
            return false;
        }
        let (h, n) = frames::header(event.frame.len());
        let (head, payload) = (&h[..n], &event.frame[..]);
        // One `send` of the frame copied whole, straight to the socket: cheaper than a `writev` of
        // its two parts through tokio's readiness check. A full socket or a failed one sends
        // nothing here: the task finds out which, through tokio.
        let sent = FRAME.with_borrow_mut(|frame| {
            frame.clear();
            frame.extend_from_slice(head);
            frame.extend_from_slice(payload);
            let sent = socket2::SockRef::from(&*self.stream).send(frame);
            if frame.capacity() > FRAME_KEEP {
                *frame = Vec::new();
            }
            sent.unwrap_or(0)
        });
        if sent == head.len() + payload.len() {
            next.store(index + 1, Ordering::Relaxed);
            self.delivered.lock().add(1);
            self.state.store(PARKED, Ordering::Release);
            return true;
        }
        if sent > 0 {
            // The peer has the frame's beginning: the rest is the task's to send first.
            let mut rest = Vec::with_capacity(head.len() + payload.len() - sent);
            if sent < head.len() {
                rest.extend_from_slice(&head[sent..]);
                rest.extend_from_slice(payload);
            } else {
                rest.extend_from_slice(&payload[sent - head.len()..]);
            }
            *self.rest.lock() = Some(Bytes::from(rest));
            next.store(index + 1, Ordering::Relaxed);
            self.delivered.lock().add(1);
        }
        self.state.store(TASK, Ordering::Release);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ChannelName, Epoch, EventDraft};
    use crate::ops::metrics::{Metrics, Transport};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair on loopback: (the server's end, the client's end).
    async fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (Arc::new(accepted.unwrap().0), client.unwrap())
    }

    fn writer(stream: Arc<TcpStream>) -> DirectWriter {
        DirectWriter::new(
            stream,
            BatchedCounter::new(Metrics::delivered(Transport::Ws)),
        )
    }

    /// An event whose frame is `payload` bytes long (the frame is all a direct write looks at).
    fn event(payload: usize) -> Arc<Event> {
        let data = serde_json::value::to_raw_value(&"d").unwrap();
        let draft = EventDraft::new("n".into(), data.into(), None);
        let channel = ChannelName::parse("c").unwrap();
        let now = tokio::time::Instant::now();
        let mut ev = Event::build(channel, 1, Epoch::random(), &draft, "i".into(), 0, now);
        ev.frame = Bytes::from(vec![b'x'; payload]);
        Arc::new(ev)
    }

    fn frame(ev: &Event) -> Vec<u8> {
        let (h, n) = frames::header(ev.frame.len());
        [&h[..n], &ev.frame[..]].concat()
    }

    #[tokio::test]
    async fn only_a_parked_socket_is_written_and_only_at_the_next_item() {
        let (server, mut client) = pair().await;
        let w = writer(server);
        let ev = event(100);
        let next = AtomicU64::new(5);
        assert!(!w.offer(&ev, 5, &next), "the task holds the socket");
        w.park();
        assert!(
            !w.offer(&ev, 6, &next),
            "behind on the channel: the task sends first"
        );
        assert!(w.offer(&ev, 5, &next));
        assert_eq!(
            next.load(Ordering::Relaxed),
            6,
            "the receiver goes on after it"
        );
        assert_eq!(w.claim(), None, "nothing left for the task");
        assert!(
            !w.offer(&ev, 6, &next),
            "claimed back: the task holds the socket"
        );
        let mut got = vec![0u8; frame(&ev).len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, frame(&ev));
    }

    #[tokio::test]
    async fn the_rest_of_a_frame_the_socket_did_not_take_comes_back_to_the_task() {
        let (server, mut client) = pair().await;
        let _ = socket2::SockRef::from(&*server).set_send_buffer_size(16 * 1024);
        let w = writer(server.clone());
        // Larger than the socket and the peer's receive buffer take while nobody reads.
        let ev = event(1 << 20);
        let next = AtomicU64::new(0);
        w.park();
        assert!(
            !w.offer(&ev, 0, &next),
            "a frame not taken whole wakes the task"
        );
        assert_eq!(
            next.load(Ordering::Relaxed),
            1,
            "begun on the wire: the task must not resend it"
        );
        let rest = w.claim().expect("the rest of the frame");
        let whole = frame(&ev);
        assert!(!rest.is_empty() && rest.len() < whole.len());
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; whole.len()];
            client.read_exact(&mut got).await.unwrap();
            (got, whole)
        });
        let mut events = frames::EventWriter::default();
        events.adopt(&rest);
        events.drain(&server).await.unwrap();
        let (got, whole) = reader.await.unwrap();
        assert!(got == whole, "the peer got the frame whole, once");
    }

    #[tokio::test]
    async fn a_full_socket_leaves_the_item_to_the_task() {
        let (server, _client) = pair().await;
        let filler = vec![0u8; 64 * 1024];
        while server.try_write(&filler).is_ok() {}
        let w = writer(server);
        let next = AtomicU64::new(0);
        w.park();
        assert!(!w.offer(&event(100), 0, &next));
        assert_eq!(
            next.load(Ordering::Relaxed),
            0,
            "the task takes the item from the feed"
        );
        assert_eq!(w.claim(), None);
    }
}
