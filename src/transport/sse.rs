//! `GET /v1/sse`: the Server-Sent Events transport. Every message carries an `id:` cursor of all
//! the connection's positions, so `Last-Event-ID` resumes every channel at once. The body is polled
//! by hyper directly: everything ready at a wake-up (control messages, events, heartbeats, in that
//! order) becomes one chunk, and polls that follow a chunk cost nothing until a source wakes it.
//!
//! A stream served on its own socket ([`SseSocket`]) also has its events written by publishers
//! while it waits with nothing unsent (see `direct`); the positions are then shared with them.

use std::convert::Infallible;
use std::fmt::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use parking_lot::Mutex;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::control::{Signal, Signals};
use super::direct::{DirectWriter, Framing, Parking};
use super::later;
use super::subscriber::{self, Feed, FeedItem, Heartbeats};
use super::tenancy;
use super::wake::WakeFlag;
use super::wire::ServerMessage;
use super::ApiError;
use crate::core::event::now_ms;
use crate::core::{Cursor, Event, Position};
use crate::ops::metrics::{count_delivered, ConnectionGuard, Metrics, Transport};
use crate::tenant::Seats;
use crate::transport::AppState;

const WRITE_BATCH: u64 = 64;
const CHUNK_CAPACITY: usize = 1024;

/// A stream's socket, when the stream is served on it rather than by hyper: who may write it, and
/// whether the body goes in the chunked encoding. Handed to the handler in the request's
/// extensions.
#[derive(Clone)]
pub(crate) struct SseSocket {
    pub(crate) parking: Arc<Parking>,
    pub(crate) chunked: bool,
}

/// An event as a publisher writes it to a parked stream: the message, in its chunk.
struct SseFraming {
    positions: Arc<Mutex<Cursor>>,
    chunked: bool,
}

/// Room before a message for its chunk size: at most 8 hex digits and CRLF.
const CHUNK_HEAD: usize = 10;

impl Framing for SseFraming {
    fn write(&self, event: &Event, out: &mut BytesMut) {
        let start = out.len();
        if self.chunked {
            out.extend_from_slice(&[0; CHUNK_HEAD]);
        }
        let message = out.len();
        out.extend_from_slice(b"id: ");
        let positions = self.positions.lock();
        positions.write_advanced(out, &event.channel, &event.epoch, event.seq);
        drop(positions);
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(&event.frame);
        out.extend_from_slice(b"\n\n");
        if self.chunked {
            let size = format!("{:x}\r\n", out.len() - message);
            out.extend_from_slice(b"\r\n");
            // The size sits right before the message; the room it did not need goes.
            out[message - size.len()..message].copy_from_slice(size.as_bytes());
            let unused = CHUNK_HEAD - size.len();
            let _ = out.split_to(start + unused);
            debug_assert_eq!(start, 0, "one message per scratch buffer");
        }
    }

    fn sent(&self, event: &Event) {
        self.positions
            .lock()
            .advance(&event.channel, &event.epoch, event.seq);
    }
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    socket: Option<Extension<SseSocket>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.lifecycle.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    subscriber::enabled(&state, Transport::Sse)?;
    let pairs = subscriber::query_pairs(query.as_deref());
    let scope = subscriber::authorize(&state, &pairs, &headers)?;
    let channels = subscriber::channels_from_query(&state, &pairs, &scope)?;
    if channels.is_empty() {
        return Err(ApiError::InvalidQuery(
            "name at least one channel: /v1/sse?channel=a&channel=b".into(),
        ));
    }
    // A Last-Event-ID that is not text is a broken cursor, not an absent one: dropping it would
    // silently start live and lose the client's position.
    let from_header = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::InvalidCursor(
                "Last-Event-ID is not ASCII text; pass back the last SSE id unchanged".into(),
            )
        })?),
        None => None,
    };
    let last_id = from_header.or_else(|| subscriber::query_values(&pairs, "cursor").next());
    let max_channels = state.config.load().subscribers.max_channels_per_connection;
    let resume = Cursor::parse(last_id.unwrap_or(""), max_channels)?;
    // A seat in each tenant of the channels, all or none, before anything streams.
    let mut seats = tenancy::seats(&state);
    for ch in &channels {
        tenancy::join(&state, &mut seats, ch)?;
    }
    match subscriber::admit_new(&state, Transport::Sse) {
        Ok(()) => {}
        // A browser's EventSource cannot read a refused answer: it is told in the stream.
        Err(ApiError::ReconnectLater(wait)) if later::from_browser(&headers) => {
            return Ok(later::sse_response(wait));
        }
        Err(e) => return Err(e),
    }

    let cfg = state.config.load().subscribers.clone();
    let mut conn = Connection {
        feed: Feed::unflagged(),
        positions: Arc::default(),
        heartbeats: Heartbeats::new(cfg.heartbeat),
        signals: Signals::new(&state, state.failover.route().version),
        state: state.clone(),
        scope,
        done: false,
        settled: false,
        buf: BytesMut::new(),
        _seats: seats,
        _token: state.lifecycle.track(),
        _conn: Metrics::connection(Transport::Sse),
    };
    let mut first = BytesMut::new();
    let _ = write!(first, "retry: {}\n\n", cfg.sse_retry.as_millis());
    let mut replayed = 0;
    let direct = socket.map(|Extension(socket)| {
        let framing = SseFraming {
            positions: conn.positions.clone(),
            chunked: socket.chunked,
        };
        Arc::new(DirectWriter::new(socket.parking, framing, Transport::Sse))
    });
    let resume = resume.by_channel();
    for ch in channels {
        let since: Option<Position> = resume.get(&ch).map(|p| (*p).clone());
        conn.signals.follow(&ch);
        let sub = state.engine.subscribe(&ch, since.as_ref()).await?;
        let opening = subscriber::opening(&sub, since.as_ref(), Transport::Sse);
        replayed += opening.len() as u64 - 1;
        for out in opening {
            conn.positions.lock().set(out.channel, out.position);
            conn.write_message(&mut first, &out.bytes);
        }
        if let Some(direct) = &direct {
            sub.live.direct(direct.clone());
        }
        conn.feed.insert(sub);
    }
    count_delivered(Transport::Sse, replayed);

    let body = Live {
        first: Some(first.freeze()),
        conn,
        wake: WakeFlag::default(),
    };
    let mut response = Body::new(body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The response body: the opening chunk, then one chunk per wake-up holding everything ready.
struct Live {
    first: Option<Bytes>,
    conn: Connection,
    /// hyper polls a body again after each chunk and again after each flush; this answers those
    /// polls without touching the connection's sources while none of them has woken the task.
    wake: WakeFlag,
}

impl HttpBody for Live {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if this.conn.done {
            return Poll::Ready(None);
        }
        let conn = &mut this.conn;
        let chunk = ready!(this.wake.poll(cx, |cx| conn.poll_chunk(cx)));
        if conn.settled {
            this.wake.settle();
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

/// One SSE connection's state while it streams.
struct Connection {
    feed: Feed,
    /// Shared with the stream's direct writer, if any: taken only by whoever holds the socket.
    positions: Arc<Mutex<Cursor>>,
    heartbeats: Heartbeats,
    signals: Signals,
    state: AppState,
    /// What the subscriber token grants, and until when.
    scope: crate::auth::TokenScope,
    done: bool,
    /// The last chunk left every source pending (each will wake the task when it has more).
    settled: bool,
    /// Reused for every chunk: once hyper has written and dropped a chunk, `reserve` takes the
    /// same allocation back, so a steady stream does not allocate per chunk. Let go after a
    /// chunk of heartbeats alone: an idle stream keeps no buffer between heartbeats.
    buf: BytesMut,
    /// A seat in each tenant of the stream's channels, given back when the stream ends.
    _seats: Seats,
    _token: TaskTrackerToken,
    _conn: ConnectionGuard,
}

/// A message whose `id` is the stream's positions as they stand.
fn write_message(out: &mut BytesMut, positions: &Mutex<Cursor>, json: &[u8]) {
    reserve_chunk(out);
    out.extend_from_slice(b"id: ");
    positions.lock().write_to(out);
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

/// An event's message as the stream's task writes it: the positions moved on to the event, then
/// the message.
fn write_event(out: &mut BytesMut, positions: &Mutex<Cursor>, event: &Event) {
    (positions.lock()).advance(&event.channel, &event.epoch, event.seq);
    write_message(out, positions, &event.frame);
}

/// An event's bytes on the wire both ways, for the test that they are the same: as the task
/// writes it (still to be framed as a chunk by whoever writes the body), and as a publisher
/// writes it to a parked stream, each from its own positions.
#[cfg(test)]
pub(crate) fn event_both_ways(
    task: &Mutex<Cursor>,
    direct: &Arc<Mutex<Cursor>>,
    chunked: bool,
    event: &Event,
) -> (Bytes, Bytes) {
    let mut by_task = BytesMut::new();
    write_event(&mut by_task, task, event);
    let framing = SseFraming {
        positions: direct.clone(),
        chunked,
    };
    let mut by_publisher = BytesMut::new();
    framing.write(event, &mut by_publisher);
    framing.sent(event);
    (by_task.freeze(), by_publisher.freeze())
}

impl Connection {
    fn write_message(&self, out: &mut BytesMut, json: &[u8]) {
        write_message(out, &self.positions, json);
    }

    fn write_reconnect(&self, out: &mut BytesMut, reason: &'static str) {
        reserve_chunk(out);
        let retry_ms = self.state.lifecycle.retry_hint_ms();
        let _ = writeln!(out, "retry: {retry_ms}");
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&ServerMessage::Reconnect { reason, retry_ms }.to_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn write_heartbeat(&self, out: &mut BytesMut) {
        reserve_chunk(out);
        let ts = now_ms();
        out.extend_from_slice(b": heartbeat\nevent: heartbeat\ndata: ");
        out.extend_from_slice(&ServerMessage::Heartbeat { ts }.to_bytes());
        out.extend_from_slice(b"\n\n");
    }

    /// Everything ready now, as one chunk, in the order the sources are polled: control signals,
    /// then events, then heartbeats. Pending when nothing is ready.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Bytes> {
        let mut out = std::mem::take(&mut self.buf);
        let (settled, beats_only) = self.write_ready(&mut out, cx);
        self.settled = settled;
        if out.is_empty() {
            self.buf = out;
            return Poll::Pending;
        }
        let chunk = out.split().freeze();
        if !beats_only {
            self.buf = out;
        }
        Poll::Ready(chunk)
    }

    /// Writes what is ready. Says whether every source was polled until it went pending, and
    /// whether what it wrote is heartbeats alone.
    fn write_ready(&mut self, out: &mut BytesMut, cx: &mut Context<'_>) -> (bool, bool) {
        let mut beats_only = true;
        while let Poll::Ready(signal) = self.signals.poll_next(cx) {
            beats_only = false;
            match signal {
                Signal::Goodbye => {
                    self.done = true;
                    self.write_reconnect(out, "shutdown");
                    return (false, false);
                }
                Signal::Route(route) => {
                    let tenant = self.signals.tenant();
                    let msg = super::route::message(&self.state, &tenant, &route);
                    self.write_message(out, &msg);
                }
            }
        }
        let mut n: u64 = 0;
        let drained = loop {
            if n == WRITE_BATCH {
                break false;
            }
            match self.feed.poll_next(cx) {
                Poll::Pending => break true,
                Poll::Ready(FeedItem::Lagged) => {
                    Metrics::slow_consumer(Transport::Sse).increment(1);
                    self.done = true;
                    self.write_reconnect(out, "slow_consumer");
                    break false;
                }
                Poll::Ready(FeedItem::Event(ev)) => {
                    write_event(out, &self.positions, &ev);
                    n += 1;
                }
            }
        };
        if n > 0 {
            beats_only = false;
            count_delivered(Transport::Sse, n);
        }
        if !drained {
            return (false, beats_only);
        }
        while self.heartbeats.poll_beat(cx).is_ready() {
            // The token is checked at each heartbeat: one that expired ends the stream, and the
            // client fetches a fresh one before it reconnects.
            if self
                .scope
                .remaining(now_ms())
                .is_some_and(|left| left.is_zero())
            {
                self.done = true;
                self.write_reconnect(out, "token_expired");
                return (false, false);
            }
            self.write_heartbeat(out);
        }
        (true, beats_only)
    }
}

/// Room for a typical chunk before the first write into it. Once hyper has written and dropped
/// the previous chunk, this takes its allocation back.
fn reserve_chunk(out: &mut BytesMut) {
    if out.is_empty() {
        out.reserve(CHUNK_CAPACITY);
    }
}
