//! `GET /v1/ws`: the WebSocket transport. One task per connection selects over the client's
//! messages, the live feed, heartbeats and the goodbye signal. Event frames are the core's shared
//! bytes; several ready events are written before one flush.

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::time::Instant;
use tracing::{debug, Instrument};

use super::control::{Signal, Signals};
use super::subscriber::{self, Feed, FeedItem, Heartbeats, Outgoing};
use super::wake::WakeFlag;
use super::wire::{ClientMessage, ServerMessage};
use super::ApiError;
use crate::app::AppState;
use crate::auth::TokenScope;
use crate::core::event::now_ms;
use crate::core::{ChannelName, Epoch, Position};
use crate::ops::metrics::{BatchedCounter, Metrics, Transport};

/// Close code: the connection fell behind; reconnect and resume from your position.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code: server restart or drain.
pub const CLOSE_RESTART: u16 = 1012;
/// Close code: policy violation (too many subscriptions).
pub const CLOSE_POLICY: u16 = 1008;
/// Largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Bytes read from a client per read call.
const CLIENT_READ_CHUNK: usize = 512;
/// Events written before one flush.
const WRITE_BATCH: u64 = 64;

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if state.lifecycle.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    subscriber::enabled(&state, Transport::Ws)?;
    let pairs = subscriber::query_pairs(query.as_deref());
    let scope = subscriber::authorize(&state, &pairs, &headers)?;
    let initial = subscriber::channels_from_query(&state, &pairs, &scope)?;
    let buffer_bytes = state.config.load().subscribers.buffer_bytes;
    let token = state.lifecycle.track();
    Ok(ws
        // tungstenite zero-fills up to this many bytes before every read attempt, and a session
        // polls its socket on every wake (once per delivered event); client messages are small.
        .read_buffer_size(CLIENT_READ_CHUNK)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(buffer_bytes)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| {
            let conn_id = format!("{:016x}", rand::random::<u64>());
            let span = tracing::debug_span!("ws", conn_id = %conn_id);
            async move {
                let _token = token;
                Session::new(socket, state, scope, conn_id)
                    .run(initial)
                    .await;
            }
            .instrument(span)
        }))
}

/// Why a session ended.
enum End {
    ClientGone,
    Slow,
    Silent,
    Goodbye,
    Policy,
}

struct Session {
    socket: WebSocket,
    state: AppState,
    scope: TokenScope,
    conn_id: String,
    feed: Feed,
    /// In front of the socket's read side.
    reads: WakeFlag,
    delivered: BatchedCounter,
    last_heard: Instant,
    signals: Signals,
    /// `subscribers.write_timeout_ms` when the connection opened (a reload does not change it).
    write_timeout: Duration,
}

impl Session {
    fn new(socket: WebSocket, state: AppState, scope: TokenScope, conn_id: String) -> Self {
        Self {
            socket,
            scope,
            conn_id,
            feed: Feed::default(),
            reads: WakeFlag::default(),
            delivered: BatchedCounter::new(Metrics::delivered(Transport::Ws)),
            last_heard: Instant::now(),
            signals: Signals::new(&state, state.failover.route().version),
            write_timeout: state.config.load().subscribers.write_timeout,
            state,
        }
    }

    async fn run(mut self, initial: Vec<ChannelName>) {
        let _conn = Metrics::connection(Transport::Ws);
        let end = match self.serve(initial).await {
            Ok(end) => end,
            Err(e) if is_slow(&e) => End::Slow,
            Err(_) => End::ClientGone,
        };
        debug!(end = end.as_str(), "websocket closed");
        let close = match end {
            End::ClientGone => return,
            End::Slow => {
                Metrics::slow_consumer(Transport::Ws).increment(1);
                (
                    CLOSE_SLOW_CONSUMER,
                    "slow_consumer: reconnect and resume from your position",
                )
            }
            End::Silent => (1001, "no pong within two heartbeat intervals"),
            End::Policy => (CLOSE_POLICY, "too many subscriptions on one connection"),
            End::Goodbye => {
                let retry_ms = self.state.lifecycle.retry_hint_ms();
                let msg = ServerMessage::Reconnect {
                    reason: "shutdown",
                    retry_ms,
                };
                let _ = self.send_now(msg.to_bytes()).await;
                (CLOSE_RESTART, "server restarting: reconnect and resume")
            }
        };
        let frame = Message::Close(Some(CloseFrame {
            code: close.0,
            reason: Utf8Bytes::from_static(close.1),
        }));
        // A stuck peer must not hold the task: the close gets a short deadline.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.send(frame)).await;
    }

    async fn serve(&mut self, initial: Vec<ChannelName>) -> Result<End, axum::Error> {
        let heartbeat = self.state.config.load().subscribers.heartbeat;
        let welcome = ServerMessage::Welcome {
            conn_id: &self.conn_id,
            heartbeat_ms: heartbeat.as_millis() as u64,
        };
        self.socket.feed(text(welcome.to_bytes())).await?;
        let route = super::route::message(&self.state, &self.state.failover.route());
        self.socket.feed(text(route)).await?;
        for ch in initial {
            if let Some(end) = self.subscribe(ch, None).await? {
                return Ok(end);
            }
        }
        self.flush().await?;
        let mut heartbeats = Heartbeats::new(heartbeat);
        loop {
            tokio::select! {
                biased;
                signal = self.signals.next() => match signal {
                    Signal::Goodbye => return Ok(End::Goodbye),
                    Signal::Route(route) => {
                        let msg = super::route::message(&self.state, &route);
                        self.send_now(msg).await?;
                    }
                },
                incoming = recv(&mut self.socket, &mut self.reads) => {
                    let Some(msg) = incoming else { return Ok(End::ClientGone) };
                    self.last_heard = Instant::now();
                    match msg? {
                        Message::Text(t) => {
                            if let Some(end) = self.on_client_message(t.as_str()).await? {
                                return Ok(end);
                            }
                        }
                        Message::Close(_) => return Ok(End::ClientGone),
                        _ => {}
                    }
                }
                item = self.feed.next() => {
                    if let Some(end) = self.write_events(item).await? {
                        return Ok(end);
                    }
                }
                () = heartbeats.beat() => {
                    if self.last_heard.elapsed() > heartbeat * 2 {
                        return Ok(End::Silent);
                    }
                    self.socket.feed(Message::Ping(Bytes::new())).await?;
                    self.socket.feed(text(ServerMessage::Heartbeat { ts: now_ms() }.to_bytes())).await?;
                    self.flush().await?;
                }
            }
        }
    }

    /// Writes `first` and whatever else is ready, then flushes once.
    async fn write_events(&mut self, first: FeedItem) -> Result<Option<End>, axum::Error> {
        let mut item = Some(first);
        let mut n: u64 = 0;
        while let Some(it) = item.take() {
            match it {
                FeedItem::Lagged => return Ok(Some(End::Slow)),
                FeedItem::Event(ev) => {
                    self.socket.feed(text(ev.frame.clone())).await?;
                    n += 1;
                }
            }
            if n < WRITE_BATCH {
                item = self.feed.try_next().await;
            }
        }
        self.delivered.add(n);
        self.flush().await.map(|()| None)
    }

    /// Flushes within the write deadline; a peer that does not read is a slow consumer. Most
    /// flushes complete at once: only one that has to wait pays for a timer.
    async fn flush(&mut self) -> Result<(), axum::Error> {
        let mut flush = self.socket.flush();
        if let Some(done) = poll_fn(|cx| {
            Poll::Ready(match flush.poll_unpin(cx) {
                Poll::Ready(r) => Some(r),
                Poll::Pending => None,
            })
        })
        .await
        {
            return done;
        }
        match tokio::time::timeout(self.write_timeout, flush).await {
            Ok(r) => r,
            Err(_) => Err(axum::Error::new(SlowConsumer)),
        }
    }

    async fn send_now(&mut self, bytes: Bytes) -> Result<(), axum::Error> {
        self.socket.feed(text(bytes)).await?;
        self.flush().await
    }

    async fn on_client_message(&mut self, text: &str) -> Result<Option<End>, axum::Error> {
        let msg = match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => m,
            Err(e) => {
                let hint = format!(
                    "message not understood ({e}); send {{\"type\":\"subscribe\",\"channel\":\"...\"}} or {{\"type\":\"unsubscribe\",\"channel\":\"...\"}}"
                );
                self.send_error("invalid_message", &hint, None).await?;
                return Ok(None);
            }
        };
        match msg {
            ClientMessage::Subscribe { channel, since } => {
                let ch = match ChannelName::parse(&channel) {
                    Ok(ch) => ch,
                    Err(e) => {
                        self.send_error("invalid_channel", &e.to_string(), Some(&channel))
                            .await?;
                        return Ok(None);
                    }
                };
                if !self.scope.allows(&ch) {
                    let e = ApiError::ChannelForbidden(channel.clone());
                    self.send_error(e.code(), &e.to_string(), Some(&channel))
                        .await?;
                    return Ok(None);
                }
                let since = since.map(|p| Position {
                    epoch: Epoch::from_client(&p.epoch),
                    seq: p.seq,
                });
                let end = self.subscribe(ch, since).await?;
                self.flush().await?;
                Ok(end)
            }
            ClientMessage::Unsubscribe { channel } => {
                if let Ok(ch) = ChannelName::parse(&channel) {
                    self.feed.remove(&ch);
                }
                let msg = ServerMessage::Unsubscribed { channel: &channel };
                self.send_now(msg.to_bytes()).await?;
                Ok(None)
            }
        }
    }

    /// Joins a channel and sends its opening messages (without flushing).
    async fn subscribe(
        &mut self,
        ch: ChannelName,
        since: Option<Position>,
    ) -> Result<Option<End>, axum::Error> {
        let max = self
            .state
            .config
            .load()
            .subscribers
            .max_channels_per_connection;
        if !self.feed.contains(&ch) && self.feed.len() >= max {
            return Ok(Some(End::Policy));
        }
        let sub = match self.state.engine.subscribe(&ch, since.as_ref()).await {
            Ok(sub) => sub,
            Err(e) => {
                let e = ApiError::from(e);
                self.send_error(e.code(), &e.to_string(), Some(ch.as_str()))
                    .await?;
                return Ok(None);
            }
        };
        let opening = subscriber::opening(&sub, since.as_ref(), Transport::Ws);
        self.feed.insert(sub);
        let mut replayed = 0;
        for Outgoing { bytes, .. } in opening {
            self.socket.feed(text(bytes)).await?;
            replayed += 1;
        }
        self.delivered.add(replayed - 1);
        Ok(None)
    }

    async fn send_error(
        &mut self,
        code: &str,
        message: &str,
        channel: Option<&str>,
    ) -> Result<(), axum::Error> {
        let msg = ServerMessage::Error {
            code,
            message,
            channel,
        };
        self.send_now(msg.to_bytes()).await
    }
}

impl End {
    fn as_str(&self) -> &'static str {
        match self {
            End::ClientGone => "client_gone",
            End::Slow => "slow_consumer",
            End::Silent => "silent",
            End::Goodbye => "goodbye",
            End::Policy => "policy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("write deadline passed")]
struct SlowConsumer;

/// A write that missed its deadline, or a write buffer past `subscribers.buffer_bytes`.
fn is_slow(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("write deadline") || text.contains("Write buffer is full")
}

/// The client's next message. The socket is read only once it has woken the task: a session
/// wakes once per delivered event, and a read attempt through tungstenite costs more than writing
/// the event.
async fn recv(
    socket: &mut WebSocket,
    reads: &mut WakeFlag,
) -> Option<Result<Message, axum::Error>> {
    poll_fn(|cx| reads.poll(cx, |cx| socket.poll_next_unpin(cx))).await
}

/// Event frames and control messages are JSON the server produced: valid UTF-8 by construction.
fn text(bytes: Bytes) -> Message {
    Message::Text(Utf8Bytes::try_from(bytes).expect("server frames are UTF-8 JSON"))
}
