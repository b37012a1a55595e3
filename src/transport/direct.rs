//! Events written on the publisher's thread. A subscriber connection that waits with nothing
//! unsent parks its socket ([`Parking::park`]); a publish to one of its channels then writes the
//! event to the socket itself (once the channel's lock is let go, see `core::live::Delivery`), and
//! the connection's task is not woken: a delivery costs one `send`, where waking the task cost a
//! wake-up, a scheduler hop (often to the other worker thread) and a poll of the connection.
//!
//! The socket has one writer at a time. The task holds it ([`TASK`]) whenever it is not waiting;
//! a waiting task leaves it [`PARKED`], and a publisher takes it ([`WRITING`]) for one
//! non-blocking write of one event. The task takes it back at its next wake-up, waiting out a
//! write in progress. A publisher that cannot write the whole event (the socket is full) gives
//! the socket back to the task with the rest of the bytes, if any, and wakes it: from there the
//! connection's own writer sends, waits within the write deadline and cuts a slow consumer, as for
//! any event.
//!
//! What an event looks like on the wire is the transport's ([`Framing`]): a WebSocket frame, a
//! Pusher message in its frame, an SSE message in its chunk.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::core::live::Direct;
use crate::core::Event;
use crate::ops::metrics::{count_delivered, Transport};

/// The connection's task holds the socket.
const TASK: u8 = 0;
/// The task waits with nothing unsent: a publisher may write.
const PARKED: u8 = 1;
/// A publisher is writing.
const WRITING: u8 = 2;

thread_local! {
    /// The event being written: kept per thread, so it stays in cache from one send to the next.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Past this, a thread's scratch buffer is given back after use (a large event).
const SCRATCH_KEEP: usize = 64 * 1024;

/// How a transport puts an event on the wire, for a connection's [`DirectWriter`].
pub(crate) trait Framing: Send + Sync + 'static {
    /// Appends the bytes `event` goes out as on this connection: none for an event the
    /// connection does not get (one that excludes it).
    fn write(&self, event: &Event, out: &mut BytesMut);

    /// `event` went out (whole, or begun with its rest left to the task): the connection's own
    /// state moves past it.
    fn sent(&self, _event: &Event) {}
}

/// Who may write a connection's socket: its task, or a publisher while the task waits. Holds the
/// socket itself, so a publisher's write reads one allocation for both.
pub(crate) struct Parking {
    stream: TcpStream,
    state: AtomicU8,
    /// The rest of an event a publisher began and the socket did not take: it goes out before
    /// anything else. Boxed, so an idle connection keeps a pointer for it.
    rest: Mutex<Option<Box<[u8]>>>,
}

impl Parking {
    /// Parking for `stream`, held by the task until it first parks.
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            state: AtomicU8::new(TASK),
            rest: Mutex::new(None),
        }
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Takes the socket back for the task, waiting out a publisher's write in progress (one
    /// non-blocking `send`). Returns the rest of an event a publisher began, which the task must
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
                Err(TASK) => return self.rest.lock().take().map(Bytes::from),
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

    #[cfg(test)]
    pub(crate) fn parked(&self) -> bool {
        self.state.load(Ordering::Acquire) == PARKED
    }

    /// Leaves the socket to publishers while the task waits. Only the task, holding the socket
    /// with nothing unsent, may park it.
    pub(crate) fn park(&self) {
        self.state.store(PARKED, Ordering::Release);
    }

    /// Writes what `bytes` gives for a publisher, if the socket is parked and `ready` holds once
    /// the publisher holds it. When any of it went out, or there was nothing to write, `sent`
    /// runs before the socket is let go, told whether bytes went out: the task, taking the socket
    /// back, finds the connection's state past the event.
    fn write(
        &self,
        ready: impl FnOnce() -> bool,
        bytes: impl FnOnce(&mut BytesMut),
        sent: impl FnOnce(bool),
    ) -> Written {
        if self
            .state
            .compare_exchange(PARKED, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Written::Not;
        }
        if !ready() {
            self.state.store(PARKED, Ordering::Release);
            return Written::Not;
        }
        let mut empty = false;
        let written = SCRATCH.with_borrow_mut(|out| {
            out.clear();
            bytes(out);
            if out.is_empty() {
                empty = true;
                return Written::Whole;
            }
            // One `send` straight to the descriptor: cheaper than going through tokio's
            // readiness check. A full socket or a failed one sends nothing here; the task finds
            // out which, through tokio.
            let sent = socket2::SockRef::from(&self.stream).send(out).unwrap_or(0);
            let written = if sent == out.len() {
                Written::Whole
            } else if sent > 0 {
                *self.rest.lock() = Some(out[sent..].into());
                Written::Begun
            } else {
                Written::Not
            };
            if out.capacity() > SCRATCH_KEEP {
                *out = BytesMut::new();
            }
            written
        });
        if !matches!(written, Written::Not) {
            sent(!empty);
        }
        let state = if let Written::Whole = written {
            PARKED
        } else {
            TASK
        };
        self.state.store(state, Ordering::Release);
        written
    }
}

/// What a publisher's write did.
enum Written {
    /// Nothing went out; the item is the task's.
    Not,
    /// All of it went out.
    Whole,
    /// It went out in part; the socket and the rest are the task's.
    Begun,
}

/// A connection's hook on its channels' live feeds: writes their events on publishers' threads
/// while the connection's socket is parked.
pub(crate) struct DirectWriter<F> {
    parking: Arc<Parking>,
    framing: F,
    /// What deliveries are counted under.
    transport: Transport,
}

impl<F: Framing> DirectWriter<F> {
    pub(crate) fn new(parking: Arc<Parking>, framing: F, transport: Transport) -> Self {
        Self {
            parking,
            framing,
            transport,
        }
    }

    /// Who writes the connection's socket.
    pub(crate) fn parking(&self) -> &Parking {
        &self.parking
    }

    /// How the connection puts events on the wire.
    pub(crate) fn framing(&self) -> &F {
        &self.framing
    }
}

impl<F: Framing> Direct<Arc<Event>> for DirectWriter<F> {
    fn offer(&self, event: &Arc<Event>, index: u64, next: &AtomicU64) -> bool {
        // Behind on this channel: the task sends what it has not taken first.
        let at_item = || next.load(Ordering::Relaxed) == index;
        let written = self.parking.write(
            at_item,
            |out| self.framing.write(event, out),
            |wrote| {
                next.store(index + 1, Ordering::Relaxed);
                self.framing.sent(event);
                if wrote {
                    count_delivered(self.transport, 1);
                }
            },
        );
        // Begun: the task is woken to send the rest.
        matches!(written, Written::Whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ChannelName, Epoch, EventDraft};
    use std::sync::atomic::AtomicUsize;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// An event on the wire as `>` and its frame; counts the events sent.
    #[derive(Default)]
    struct Marked(AtomicUsize);

    impl Framing for Marked {
        fn write(&self, event: &Event, out: &mut BytesMut) {
            out.extend_from_slice(b">");
            out.extend_from_slice(&event.frame);
        }

        fn sent(&self, _: &Event) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A connected pair on loopback: (the server's end, the client's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    fn writer(stream: TcpStream) -> (Arc<Parking>, DirectWriter<Marked>) {
        let parking = Arc::new(Parking::new(stream));
        let writer = DirectWriter::new(parking.clone(), Marked::default(), Transport::Ws);
        (parking, writer)
    }

    /// An event whose frame is `payload` bytes long (the frame is all the framing looks at).
    fn event(payload: usize) -> Arc<Event> {
        let data = serde_json::value::to_raw_value(&"d").unwrap();
        let draft = EventDraft::new("n".into(), data, None);
        let channel = ChannelName::parse("c").unwrap();
        let now = tokio::time::Instant::now();
        let mut ev = Event::build(channel, 1, Epoch::random(), &draft, "i".into(), 0, now);
        ev.frame = Bytes::from(vec![b'x'; payload]);
        Arc::new(ev)
    }

    fn wire(ev: &Event) -> Vec<u8> {
        [&b">"[..], &ev.frame[..]].concat()
    }

    #[tokio::test]
    async fn only_a_parked_socket_is_written_and_only_at_the_next_item() {
        let (server, mut client) = pair().await;
        let (parking, w) = writer(server);
        let ev = event(100);
        let next = AtomicU64::new(5);
        assert!(!w.offer(&ev, 5, &next), "the task holds the socket");
        parking.park();
        let behind = w.offer(&ev, 6, &next);
        assert!(!behind, "behind on the channel: the task sends first");
        assert!(w.offer(&ev, 5, &next));
        assert_eq!(next.load(Ordering::Relaxed), 6, "the receiver goes past it");
        assert_eq!(
            w.framing().0.load(Ordering::Relaxed),
            1,
            "and the connection"
        );
        assert_eq!(parking.claim(), None, "nothing left for the task");
        assert!(!w.offer(&ev, 6, &next), "claimed back: the task holds it");
        let mut got = vec![0u8; wire(&ev).len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, wire(&ev));
    }

    #[tokio::test]
    async fn the_rest_of_an_event_the_socket_did_not_take_comes_back_to_the_task() {
        let (server, mut client) = pair().await;
        let _ = socket2::SockRef::from(&server).set_send_buffer_size(16 * 1024);
        let (parking, w) = writer(server);
        let server = parking.stream();
        // Larger than the socket and the peer's receive buffer take while nobody reads.
        let ev = event(1 << 20);
        let next = AtomicU64::new(0);
        parking.park();
        assert!(
            !w.offer(&ev, 0, &next),
            "an event not taken whole wakes the task"
        );
        assert_eq!(
            next.load(Ordering::Relaxed),
            1,
            "begun: the task must not resend it"
        );
        assert_eq!(w.framing().0.load(Ordering::Relaxed), 1);
        let rest = parking.claim().expect("the rest of the event");
        let whole = wire(&ev);
        assert!(!rest.is_empty() && rest.len() < whole.len());
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; whole.len()];
            client.read_exact(&mut got).await.unwrap();
            (got, whole)
        });
        let mut left = &rest[..];
        while !left.is_empty() {
            server.writable().await.unwrap();
            match server.try_write(left) {
                Ok(n) => left = &left[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let (got, whole) = reader.await.unwrap();
        assert!(got == whole, "the peer got the event whole, once");
    }

    #[tokio::test]
    async fn a_full_socket_leaves_the_item_to_the_task() {
        let (server, _client) = pair().await;
        let filler = vec![0u8; 64 * 1024];
        while server.try_write(&filler).is_ok() {}
        let (parking, w) = writer(server);
        let next = AtomicU64::new(0);
        parking.park();
        assert!(!w.offer(&event(100), 0, &next));
        assert_eq!(
            next.load(Ordering::Relaxed),
            0,
            "the task takes it from the feed"
        );
        assert_eq!(w.framing().0.load(Ordering::Relaxed), 0);
        assert_eq!(parking.claim(), None);
    }
}
