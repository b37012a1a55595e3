//! Event frames written straight to the socket. Every subscriber of a channel gets the same
//! event bytes, and a server frame is not masked (RFC 6455 section 5.1), so a frame is the
//! event's shared JSON behind a 2 to 10 byte header: there is nothing for tungstenite to do.
//! Going through it cost more than the rest of the delivery in user space (a UTF-8 check per
//! subscriber, frame formatting, a copy into a per-connection buffer that is cold by the time
//! the next event comes, its sink and flush layers). Headers and payloads of a batch are copied
//! into one buffer per worker thread, warm from the previous connection, and sent with one
//! `send`; what the socket does not take waits in a per-connection backlog.
//!
//! The opening's welcome and route, and each channel's `subscribed` message and replay, go out
//! the same way. Other control messages (replies, pings, close) still go through tungstenite,
//! which also reads the client's frames and answers its pings. The two never interleave inside a frame: the session drains the backlog
//! before tungstenite writes and flushes tungstenite before writing events.

use std::cell::RefCell;
use std::io;

use bytes::{Buf, BytesMut};
use tokio::net::TcpStream;

use crate::core::Event;
use crate::transport::direct::Framing;

/// A server-to-client text frame header: FIN, opcode 1, no mask, and the payload length.
fn header(len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x81;
    let n = if len < 126 {
        h[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (h, n)
}

/// Appends `payload` as one text frame.
pub(crate) fn text_frame(payload: &[u8], out: &mut BytesMut) {
    let (h, n) = header(payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// Events as text frames, for the connection's [`DirectWriter`](crate::transport::direct).
pub(crate) struct WsFraming;

impl Framing for WsFraming {
    fn write(&self, event: &Event, out: &mut BytesMut) {
        text_frame(&event.frame, out);
    }
}

thread_local! {
    /// Frames of the batch being sent. Kept per thread so it stays in cache across connections.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(16 * 1024));
}

/// Past this, a thread's scratch buffer is given back after use (a batch of large events).
const SCRATCH_KEEP: usize = 64 * 1024;

/// The length of the frame at the start of `bytes` (header and payload), from its header: a
/// frame this module wrote, so the header is whole and unmasked.
fn frame_len(bytes: &[u8]) -> usize {
    match bytes[1] & 0x7f {
        126 => 4 + usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        127 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&bytes[2..10]);
            10 + u64::from_be_bytes(len) as usize
        }
        n => 2 + usize::from(n),
    }
}

/// Where the first frame starting at or after `offset` begins, walking frames from the start
/// of `frames` (which begins with a frame).
fn next_boundary(frames: &[u8], from: usize, offset: usize) -> usize {
    let mut at = from;
    while at < offset {
        at += frame_len(&frames[at..]);
    }
    at
}

/// Event frames on their way to one connection.
#[derive(Default)]
pub(crate) struct EventWriter {
    /// Bytes the socket did not take; written before anything else.
    backlog: BytesMut,
    /// Where the first frame not yet begun on the socket starts in `backlog` (its length when
    /// none): what comes before it is the rest of a frame the peer has partly received, which
    /// must go out whole before anything else may, a close frame included.
    boundary: usize,
}

impl EventWriter {
    /// Sends `events` as text frames, in order, without waiting: what the socket does not take
    /// now goes to the backlog.
    pub(crate) fn send<'a>(
        &mut self,
        stream: &TcpStream,
        events: impl IntoIterator<Item = &'a [u8]>,
    ) -> io::Result<()> {
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            for e in events {
                let (h, n) = header(e.len());
                scratch.extend_from_slice(&h[..n]);
                scratch.extend_from_slice(e);
            }
            let result = self.send_flat(stream, scratch);
            if scratch.capacity() > SCRATCH_KEEP {
                *scratch = Vec::with_capacity(16 * 1024);
            }
            result
        })
    }

    fn send_flat(&mut self, stream: &TcpStream, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if !self.backlog.is_empty() {
            self.backlog.extend_from_slice(bytes);
            return Ok(());
        }
        let sent = match stream.try_write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if sent < bytes.len() {
            // Only on a partial write: the walk costs a step per frame of the batch.
            self.boundary = next_boundary(bytes, 0, sent) - sent;
            self.backlog.extend_from_slice(&bytes[sent..]);
        }
        Ok(())
    }

    /// Takes the rest of a frame another writer began on the socket (see `direct`): it goes out
    /// first, whole, whatever comes after it.
    pub(crate) fn adopt(&mut self, rest: &[u8]) {
        debug_assert!(
            self.backlog.is_empty(),
            "the socket was parked with a backlog"
        );
        self.backlog.extend_from_slice(rest);
        self.boundary = self.backlog.len();
    }

    /// Drops every frame the peer has not begun to receive, keeping the rest of one it has: a
    /// connection being closed sends that rest, then its close frame, and the peer sees only whole
    /// frames. What is dropped is in history; the client resumes from its position.
    pub(crate) fn cut(&mut self) {
        self.backlog.truncate(self.boundary);
    }

    /// Marks `n` backlog bytes as sent.
    fn advance(&mut self, n: usize) {
        if n > self.boundary {
            self.boundary = next_boundary(&self.backlog, self.boundary, n);
        }
        self.boundary -= n;
        self.backlog.advance(n);
    }

    /// Bytes waiting for the socket.
    pub(crate) fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Returns once the socket has taken some of the backlog (or there is none).
    pub(crate) async fn drain_some(&mut self, stream: &TcpStream) -> io::Result<()> {
        while !self.backlog.is_empty() {
            stream.writable().await?;
            match stream.try_write(&self.backlog) {
                Ok(n) => {
                    self.advance(n);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Returns once the socket has taken the whole backlog.
    pub(crate) async fn drain(&mut self, stream: &TcpStream) -> io::Result<()> {
        let had_backlog = !self.backlog.is_empty();
        while !self.backlog.is_empty() {
            stream.writable().await?;
            match stream.try_write(&self.backlog) {
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        self.boundary = 0;
        // A backlog exists only after a stall (or a replay the socket did not take at once), and
        // a `BytesMut` advanced to its end still holds its allocation: let it go, so an idle
        // connection keeps none.
        if had_backlog {
            self.backlog = BytesMut::new();
        }
        Ok(())
    }
}

/// For the `ws_frames` fuzz target: frames written for any payloads read back, through
/// tungstenite's own header parser, as the same unmasked final text frames of the same lengths.
#[cfg(fuzzing)]
pub(crate) fn fuzz_frames(data: &[u8]) {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    // Payloads are the input cut at 0xff; one starting with 0xfe is stretched past the 16-bit
    // length form, so all three length encodings are reached.
    let (mut frames, mut lens) = (Vec::new(), Vec::new());
    for chunk in data.split(|b| *b == 0xff) {
        let payload: Vec<u8> = if chunk.first() == Some(&0xfe) {
            chunk.iter().cycle().take(70_000).copied().collect()
        } else {
            chunk.to_vec()
        };
        let (h, n) = header(payload.len());
        frames.extend_from_slice(&h[..n]);
        frames.extend_from_slice(&payload);
        lens.push(payload.len());
    }
    let mut cursor = std::io::Cursor::new(&frames[..]);
    for len in lens {
        let (h, length) = FrameHeader::parse(&mut cursor)
            .expect("a valid header")
            .expect("a whole header");
        assert!(h.is_final && h.mask.is_none() && h.opcode == OpCode::Data(Data::Text));
        assert_eq!(length as usize, len);
        cursor.set_position(cursor.position() + length);
    }
    assert_eq!(cursor.position() as usize, frames.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    #[test]
    fn headers_follow_rfc_6455_length_encodings() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
            let (h, n) = header(len);
            let mut cursor = io::Cursor::new(&h[..n]);
            let (parsed, payload_len) = FrameHeader::parse(&mut cursor)
                .expect("a valid header")
                .expect("a complete header");
            assert!(parsed.is_final);
            assert!(parsed.mask.is_none(), "server frames are not masked");
            assert_eq!(payload_len, len as u64);
            assert_eq!(cursor.position() as usize, n, "header length for {len}");
        }
    }

    /// A connected pair on loopback: (the server's end, the client's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    #[tokio::test]
    async fn a_cut_keeps_the_rest_of_the_frame_begun_and_drops_the_frames_not_begun() {
        let (server, mut client) = pair().await;
        let mut writer = EventWriter::default();
        let big = Bytes::from(vec![b'x'; 256 * 1024]);
        let small = Bytes::from_static(b"{\"n\":1}");
        for _ in 0..40 {
            writer.send(&server, [&big[..], &small[..]]).unwrap();
        }
        assert!(writer.backlog() > 0, "the unread socket filled up");
        writer.cut();
        let kept = writer.backlog();
        assert!(
            kept < 10 + big.len(),
            "at most the rest of one frame is kept"
        );
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        writer.drain(&server).await.unwrap();
        drop(server);
        let got = reader.await.unwrap();
        // The peer got whole frames only: walking headers lands exactly on the end.
        let mut at = 0;
        let mut frames = 0;
        while at < got.len() {
            assert_eq!(got[at], 0x81, "a frame starts at {at}");
            at += frame_len(&got[at..]);
            frames += 1;
        }
        assert_eq!(at, got.len(), "no frame is cut short");
        assert!(frames < 80, "frames not begun were dropped");
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_is_kept_in_order_and_drained() {
        let (server, mut client) = pair().await;
        let mut writer = EventWriter::default();
        let big = Bytes::from(vec![b'x'; 256 * 1024]);
        let small = Bytes::from_static(b"{\"n\":1}");
        // Far more than loopback buffers hold while nobody reads.
        for _ in 0..40 {
            writer.send(&server, [&big[..], &small[..]]).unwrap();
        }
        assert!(writer.backlog() > 0, "the unread socket filled up");
        let expected = 40 * (10 + big.len() + 2 + small.len());
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected];
            client.read_exact(&mut got).await.unwrap();
            got
        });
        writer.drain(&server).await.unwrap();
        assert_eq!(writer.backlog(), 0);
        let got = reader.await.unwrap();
        let mut at = 0;
        for _ in 0..40 {
            assert_eq!(&got[at..at + 2], &[0x81, 127]);
            at += 10 + big.len();
            assert_eq!(&got[at..at + 2], &[0x81, small.len() as u8]);
            assert_eq!(&got[at + 2..at + 2 + small.len()], &small[..]);
            at += 2 + small.len();
        }
    }

    #[tokio::test]
    async fn a_drained_backlog_keeps_no_buffer() {
        let (server, mut client) = pair().await;
        // Fill the socket while nobody reads, so the next frames wait in the backlog.
        let filler = vec![0u8; 64 * 1024];
        let mut filled = 0;
        while let Ok(n) = server.try_write(&filler) {
            filled += n;
        }
        let mut writer = EventWriter::default();
        let small = Bytes::from_static(b"{\"n\":1}");
        writer.send(&server, [&small[..]]).unwrap();
        assert_eq!(writer.backlog(), 2 + small.len());
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; filled + 2 + small.len()];
            client.read_exact(&mut got).await.unwrap();
        });
        writer.drain(&server).await.unwrap();
        reader.await.unwrap();
        // `try_reclaim` finds room only in an allocation the backlog still holds.
        assert!(
            !writer.backlog.try_reclaim(1),
            "an idle connection keeps no backlog buffer"
        );
    }
}
