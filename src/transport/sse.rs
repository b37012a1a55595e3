//! `GET /v1/sse`: the Server-Sent Events transport. Every message carries an `id:` cursor of all
//! the connection's positions, so `Last-Event-ID` resumes every channel at once. Ready events are
//! written as one chunk.

use std::convert::Infallible;
use std::fmt::Write;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt};
use tokio::time::{Instant, Interval};
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::control::{Signal, Signals};
use super::subscriber::{self, Feed, FeedItem};
use super::wire::ServerMessage;
use super::ApiError;
use crate::app::AppState;
use crate::core::event::now_ms;
use crate::core::{Cursor, Position};
use crate::ops::metrics::{BatchedCounter, ConnectionGuard, Metrics, Transport};

const WRITE_BATCH: u64 = 64;
const CHUNK_CAPACITY: usize = 1024;

pub(crate) async fn stream(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
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
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| subscriber::query_values(&pairs, "cursor").next());
    let resume = Cursor::parse(last_id.unwrap_or(""))?;

    let cfg = &state.config.subscribers;
    let mut conn = Connection {
        feed: Feed::default(),
        positions: Cursor::default(),
        tick: tokio::time::interval_at(Instant::now() + cfg.heartbeat, cfg.heartbeat),
        delivered: BatchedCounter::new(Metrics::delivered(Transport::Sse)),
        signals: Signals::new(&state, state.failover.route().version),
        state: state.clone(),
        done: false,
        buf: BytesMut::new(),
        _token: state.lifecycle.track(),
        _conn: Metrics::connection(Transport::Sse),
    };
    let mut first = BytesMut::new();
    let _ = write!(first, "retry: {}\n\n", cfg.sse_retry.as_millis());
    let mut replayed = 0;
    for ch in channels {
        let since: Option<Position> = resume.get(&ch).cloned();
        let sub = state.registry.subscribe(&ch, since.as_ref())?;
        let opening = subscriber::opening(&sub, since.as_ref(), Transport::Sse);
        replayed += opening.len() as u64 - 1;
        for out in opening {
            conn.positions.set(out.channel, out.position);
            conn.write_message(&mut first, &out.bytes);
        }
        conn.feed.insert(sub);
    }
    conn.delivered.add(replayed);

    let live = stream::unfold(conn, |mut conn| async move {
        let chunk = conn.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), conn))
    });
    let body = stream::once(async move { Ok(first.freeze()) }).chain(live);
    let mut response = Body::from_stream(body).into_response();
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

/// One SSE connection's state while it streams.
struct Connection {
    feed: Feed,
    positions: Cursor,
    tick: Interval,
    delivered: BatchedCounter,
    signals: Signals,
    state: AppState,
    done: bool,
    /// Reused for every chunk: once hyper has written and dropped a chunk, `reserve` takes the
    /// same allocation back, so a steady stream does not allocate per chunk.
    buf: BytesMut,
    _token: TaskTrackerToken,
    _conn: ConnectionGuard,
}

impl Connection {
    fn write_message(&self, out: &mut BytesMut, json: &[u8]) {
        out.extend_from_slice(b"id: ");
        self.positions.write_to(out);
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(json);
        out.extend_from_slice(b"\n\n");
    }

    fn write_reconnect(&self, out: &mut BytesMut, reason: &'static str) {
        let retry_ms = self.state.lifecycle.retry_hint_ms();
        let _ = writeln!(out, "retry: {retry_ms}");
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&ServerMessage::Reconnect { reason, retry_ms }.to_bytes());
        out.extend_from_slice(b"\n\n");
    }

    /// The next chunk to send, or `None` once the stream has said goodbye.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = std::mem::take(&mut self.buf);
        out.reserve(CHUNK_CAPACITY);
        tokio::select! {
            biased;
            signal = self.signals.next() => match signal {
                Signal::Goodbye => {
                    self.done = true;
                    self.write_reconnect(&mut out, "shutdown");
                }
                Signal::Route(route) => {
                    let msg = super::route::message(&self.state, &route);
                    self.write_message(&mut out, &msg);
                }
            },
            item = self.feed.next() => {
                let mut item = Some(item);
                let mut n: u64 = 0;
                while let Some(it) = item.take() {
                    match it {
                        FeedItem::Lagged => {
                            Metrics::slow_consumer(Transport::Sse).increment(1);
                            self.done = true;
                            self.write_reconnect(&mut out, "slow_consumer");
                            break;
                        }
                        FeedItem::Event(ev) => {
                            self.positions.advance(&ev.channel, &ev.epoch, ev.seq);
                            self.write_message(&mut out, &ev.frame);
                            n += 1;
                        }
                    }
                    if n < WRITE_BATCH {
                        item = self.feed.try_next().await;
                    }
                }
                self.delivered.add(n);
            }
            _ = self.tick.tick() => {
                let ts = now_ms();
                let _ = write!(out, ": heartbeat\nevent: heartbeat\ndata: ");
                out.extend_from_slice(&ServerMessage::Heartbeat { ts }.to_bytes());
                out.extend_from_slice(b"\n\n");
            }
        }
        let chunk = out.split().freeze();
        self.buf = out;
        Some(chunk)
    }
}
