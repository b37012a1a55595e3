//! `GET /v1/ws`: the WebSocket transport. One task per connection selects over the client's
//! messages, the live feed, heartbeats and the goodbye signal. Event frames are the core's shared
//! bytes behind a frame header, written straight to the socket (`frames`); several ready events
//! go out in one write. While the session waits with nothing unsent, publishers write its events
//! themselves (`direct`): its select takes the socket back in its first branch and parks it in
//! its last.

pub(super) mod frames;
pub(super) mod handshake;

use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, Instrument};

use self::frames::{EventWriter, WsFraming};
use self::handshake::Handshake;

#[cfg(fuzzing)]
pub(crate) use self::frames::fuzz_frames;
#[cfg(fuzzing)]
pub(crate) use self::handshake::Handshake as FuzzHandshake;

use super::control::{Signal, Signals};
use super::direct::{DirectWriter, Parking};
use super::later;
use super::shared_tcp::SharedTcp;
use super::subscriber::{self, Feed, FeedItem, Heartbeats, Outgoing};
use super::tenancy;
use super::wake::WakeFlag;
use super::wire::{ClientMessage, ServerMessage};
use super::ApiError;
use crate::auth::TokenScope;
use crate::core::event::now_ms;
use crate::core::{ChannelName, Epoch, Event, Position};
use crate::ops::metrics::{count_delivered, Metrics, Transport};
use crate::tenant::Seats;
use crate::transport::AppState;

/// A subscriber's WebSocket: tungstenite over the connection's shared TCP stream.
pub(crate) type Socket = WebSocketStream<SharedTcp>;

/// Close code: the connection fell behind; reconnect and resume from your position.
pub(crate) const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code: the subscriber token expired while the connection was open; fetch a fresh one
/// and reconnect (resuming from your position).
pub(crate) const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code: server restart or drain.
pub(crate) const CLOSE_RESTART: u16 = 1012;
/// Close code: policy violation (too many subscriptions).
pub(crate) const CLOSE_POLICY: u16 = 1008;
/// Largest message a client may send.
pub(super) const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Bytes read from a client per read call, and the read buffer every socket keeps while idle:
/// client messages are small (a subscribe, a pong), and a larger one grows the buffer as it
/// arrives.
pub(super) const CLIENT_READ_CHUNK: usize = 128;
/// Most events gathered into one write.
pub(super) const WRITE_BATCH: usize = 64;
/// The least kernel send buffer a WebSocket gets, whatever `subscribers.buffer_bytes` says.
pub(super) const MIN_SEND_BUFFER: usize = 64 * 1024;
/// How long a closing connection may go without the peer taking a byte before it is dropped
/// (at least; the write deadline if longer). A cut slow consumer is owed whole frames and its
/// 4008 close: a client busy elsewhere for a few seconds still gets them.
pub(super) const CLOSE_STALL: Duration = Duration::from_secs(10);
/// The longest a closing connection is kept for its close frame, however steadily it reads.
pub(super) const CLOSE_LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Handshake,
) -> Result<Response, ApiError> {
    if state.lifecycle.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    subscriber::enabled(&state, Transport::Ws)?;
    let pairs = subscriber::query_pairs(query.as_deref());
    let scope = subscriber::authorize(&state, &pairs, &headers)?;
    let initial = subscriber::channels_from_query(&state, &pairs, &scope)?;
    let admitted = subscriber::admit_new(&state, Transport::Ws);
    let token = state.lifecycle.track();
    let config = socket_config(&state);
    match admitted {
        Ok(()) => {}
        // A browser cannot read a refused handshake: it is told in the close frame instead.
        Err(ApiError::ReconnectLater(wait)) if later::from_browser(&headers) => {
            return Ok(ws.accept(config, move |socket| async move {
                let _token = token;
                later::close_websocket(socket, wait).await;
            }));
        }
        Err(e) => return Err(e),
    }
    Ok(ws.accept(config, move |socket| {
        let conn_id = rand::random::<u64>();
        let span = tracing::debug_span!("ws", conn_id = %format_args!("{conn_id:016x}"));
        // Made here and boxed, so that the task's future holds the session once, by pointer.
        let session = Box::new(Session::new(socket, state, scope, conn_id));
        session.run(initial, token).instrument(span)
    }))
}

/// tungstenite's settings for a subscriber socket (`/v1/ws` and `/app/{key}`).
pub(super) fn socket_config(state: &AppState) -> WebSocketConfig {
    let buffer_bytes = state.config.load().subscribers.buffer_bytes;
    WebSocketConfig::default()
        // tungstenite zero-fills up to this many bytes before every read attempt; client
        // messages are small. Its write buffer carries control messages only.
        .read_buffer_size(CLIENT_READ_CHUNK)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(buffer_bytes)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

/// Caps the kernel's send buffer of a subscriber socket at its own buffer: left to autotune it
/// grows to megabytes, which a slow consumer must read through before it can see its close (a
/// client reading 64 KB/s took a minute), and which no slow-consumer check sees.
pub(super) fn cap_send_buffer(socket: &Socket, buffer_bytes: usize) {
    let _ = socket2::SockRef::from(&**socket.get_ref())
        .set_send_buffer_size(buffer_bytes.max(MIN_SEND_BUFFER));
}

/// What woke a waiting session.
pub(super) enum Step {
    /// The rest of an event a publisher began on the socket.
    Rest(Bytes),
    Signal(Signal),
    Incoming(Option<Result<Message, tungstenite::Error>>),
    Feed(FeedItem),
    Beat,
}

/// Takes the socket back for the task, as the first branch of a session's `biased` select: at
/// every poll of the wait, before anything else looks at the socket. Ready only with the rest of an
/// event a publisher began, which goes out before anything else.
pub(super) fn claim(parking: &Parking) -> impl Future<Output = Bytes> + '_ {
    poll_fn(move |_| parking.claim().map_or(Poll::Pending, Poll::Ready))
}

/// Leaves the socket to publishers, as the last branch of a session's `biased` select: reached
/// only when every other branch is pending, so the task is about to wait. Only when `idle`,
/// nothing unsent; never ready. The branches before it must not write to the socket (reading is
/// fine: a read that leaves tungstenite a reply ends the wait).
pub(super) fn park(parking: &Parking, idle: bool) -> impl Future<Output = ()> + '_ {
    poll_fn(move |_| {
        if idle {
            parking.park();
        }
        Poll::Pending
    })
}

/// Why a session ended.
enum End {
    /// The subscriber token expired (checked at each heartbeat).
    TokenExpired,
    /// The client broke the protocol (bad framing, a message too big, invalid UTF-8): it is told
    /// why with a close frame (1002, 1009 or 1007) before the connection ends.
    Violation(u16, &'static str),
    ClientGone,
    Slow,
    Silent,
    Goodbye,
    Policy,
}

/// Why a session failed.
#[derive(Debug)]
pub(super) enum Fault {
    Socket(tungstenite::Error),
    /// The client did not take what was written within the write deadline.
    Slow,
}

impl From<tungstenite::Error> for Fault {
    fn from(e: tungstenite::Error) -> Self {
        Self::Socket(e)
    }
}

impl From<std::io::Error> for Fault {
    fn from(e: std::io::Error) -> Self {
        Self::Socket(tungstenite::Error::Io(e))
    }
}

struct Session {
    socket: Socket,
    /// Event frames, written beside tungstenite.
    events: EventWriter,
    /// Writes event frames on publishers' threads while the session waits with nothing unsent;
    /// holds the socket's `Parking` and counts the connection's deliveries.
    direct: Arc<DirectWriter<WsFraming>>,
    /// The events of the write being gathered; empty between writes.
    batch: Vec<Arc<Event>>,
    /// tungstenite may hold bytes it has not sent (a pong to a ping it read): flush it before
    /// writing events, so that no frame is split by another.
    unflushed: bool,
    state: AppState,
    scope: TokenScope,
    /// Told to the client as 16 hex digits; kept as the number, so an idle session keeps no
    /// string for it.
    conn_id: u64,
    feed: Feed,
    /// A seat in each tenant whose channels `feed` holds (`max_connections`).
    seats: Seats,
    /// In front of the socket's read side.
    reads: WakeFlag,
    last_heard: Instant,
    signals: Signals,
    /// `subscribers.write_timeout_ms` when the connection opened (a reload does not change it).
    write_timeout: Duration,
    /// `subscribers.buffer_bytes` when the connection opened: the most one write gathers.
    buffer_bytes: usize,
}

impl Session {
    fn new(socket: Socket, state: AppState, scope: TokenScope, conn_id: u64) -> Self {
        let subscribers = state.config.load().subscribers.clone();
        cap_send_buffer(&socket, subscribers.buffer_bytes);
        Self {
            direct: Arc::new(DirectWriter::new(
                socket.get_ref().parking(),
                WsFraming,
                Transport::Ws,
            )),
            socket,
            events: EventWriter::default(),
            batch: Vec::new(),
            unflushed: false,
            scope,
            conn_id,
            feed: Feed::default(),
            seats: tenancy::seats(&state),
            reads: WakeFlag::default(),
            last_heard: Instant::now(),
            signals: Signals::new(&state, state.failover.route().version),
            write_timeout: subscribers.write_timeout,
            buffer_bytes: subscribers.buffer_bytes,
            state,
        }
    }

    /// Serves the connection until it ends; `_token` keeps the node's drain waiting for it.
    async fn run(mut self: Box<Self>, initial: Vec<ChannelName>, _token: TaskTrackerToken) {
        let _conn = Metrics::connection(Transport::Ws);
        let end = match self.serve(initial).await {
            Ok(end) => end,
            Err(Fault::Slow | Fault::Socket(tungstenite::Error::WriteBufferFull(_))) => End::Slow,
            Err(Fault::Socket(_)) => End::ClientGone,
        };
        debug!(end = end.as_str(), "websocket closed");
        // Boxed, as every step a connection takes rarely: the state of a task is as large as its
        // largest await, and an idle session should keep only what its loop waits on.
        Box::pin(self.end(end)).await;
    }

    /// Says goodbye with the close code `end` calls for.
    async fn end(mut self: Box<Self>, end: End) {
        // Only a cut slow consumer is given time for its close: the other ends come from a peer
        // that reads (or a node leaving, whose drain has its own limit).
        let (stall, limit) = match end {
            End::Slow => (self.write_timeout.max(CLOSE_STALL), CLOSE_LIMIT),
            _ => (Duration::from_secs(1), Duration::from_secs(1)),
        };
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
            End::Violation(code, why) => (code, why),
            End::TokenExpired => (
                CLOSE_TOKEN_EXPIRED,
                "token_expired: fetch a fresh token, reconnect and resume",
            ),
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
        // The channels (and the tenants' seats) are let go at once; only the socket stays for
        // the goodbye.
        self.feed = Feed::default();
        self.seats = tenancy::seats(&self.state);
        let frame = close_frame(close);
        self::close(&mut self.socket, &mut self.events, frame, stall, limit).await;
    }

    async fn serve(&mut self, initial: Vec<ChannelName>) -> Result<End, Fault> {
        let heartbeat = self.state.config.load().subscribers.heartbeat;
        if let Some(end) = Box::pin(self.open(heartbeat, initial)).await? {
            return Ok(end);
        }
        let mut heartbeats = Heartbeats::new(heartbeat);
        loop {
            // A reply tungstenite may hold unsent keeps the socket from publishers' writes.
            let park_idle = !self.unflushed;
            // The first branch takes the socket back at every poll; the last parks it for
            // publishers once every other branch is pending (see `direct`).
            let step = tokio::select! {
                biased;
                rest = claim(self.direct.parking()) => Step::Rest(rest),
                signal = self.signals.next() => Step::Signal(signal),
                incoming = recv(&mut self.socket, &mut self.reads, &mut self.unflushed) => {
                    Step::Incoming(incoming)
                }
                item = self.feed.next() => Step::Feed(item),
                () = heartbeats.beat() => Step::Beat,
                () = park(self.direct.parking(), park_idle) => unreachable!("parking never ends a wait"),
            };
            match step {
                Step::Rest(rest) => {
                    self.events.adopt(&rest);
                    self.drain_events().await?;
                }
                Step::Signal(signal) => match signal {
                    Signal::Goodbye => return Ok(End::Goodbye),
                    Signal::Route(route) => {
                        let tenant = self.signals.tenant();
                        let msg = super::route::message(&self.state, &tenant, &route);
                        Box::pin(self.send_now(msg)).await?;
                    }
                },
                Step::Incoming(incoming) => {
                    let Some(msg) = incoming else {
                        return Ok(End::ClientGone);
                    };
                    self.last_heard = Instant::now();
                    let msg = match msg {
                        Ok(msg) => msg,
                        Err(e) => return violation(e).map(|(code, why)| End::Violation(code, why)),
                    };
                    match msg {
                        Message::Text(t) => {
                            if let Some(end) = Box::pin(self.on_client_message(t.as_str())).await? {
                                return Ok(end);
                            }
                        }
                        Message::Close(_) => return Ok(End::ClientGone),
                        // tungstenite queued the pong: send it now, not with the next event.
                        Message::Ping(_) => self.flush().await?,
                        _ => {}
                    }
                }
                Step::Feed(item) => {
                    if let Some(end) = self.write_events(item).await? {
                        return Ok(end);
                    }
                }
                Step::Beat => {
                    if self.last_heard.elapsed() > heartbeat * 2 {
                        return Ok(End::Silent);
                    }
                    // Checked here, not by a timer of its own: a heartbeat's lateness is fine,
                    // a timer polled beside every delivered event is not.
                    if self
                        .scope
                        .remaining(now_ms())
                        .is_some_and(|left| left.is_zero())
                    {
                        return Ok(End::TokenExpired);
                    }
                    Box::pin(self.beat()).await?;
                }
            }
        }
    }

    /// The connection's opening: the welcome, the route, then the channels it named.
    async fn open(
        &mut self,
        heartbeat: Duration,
        initial: Vec<ChannelName>,
    ) -> Result<Option<End>, Fault> {
        let welcome = ServerMessage::Welcome {
            conn_id: &format!("{:016x}", self.conn_id),
            heartbeat_ms: heartbeat.as_millis() as u64,
        }
        .to_bytes();
        // The route of the tenant of the first channel, when the connection names one.
        if let Some(ch) = initial.first() {
            self.signals.follow(ch);
        }
        let tenant = self.signals.tenant();
        let route = self.state.failover.route_for(&tenant);
        self.signals.told(route.version);
        let route = super::route::message(&self.state, &tenant, &route);
        // Written as event frames are, not through tungstenite: its write buffer would grow to
        // hold both and keep that size for the connection's life.
        let sent = self
            .events
            .send(self.socket.get_ref(), [&welcome[..], &route[..]]);
        sent?;
        self.drain_events().await?;
        for ch in initial {
            if let Some(end) = self.subscribe(ch, None).await? {
                return Ok(Some(end));
            }
        }
        self.flush().await?;
        Ok(None)
    }

    /// A heartbeat: a ping the client's WebSocket answers, and a heartbeat message for its code.
    async fn beat(&mut self) -> Result<(), Fault> {
        self.feed(Message::Ping(Bytes::new())).await?;
        self.feed(text(ServerMessage::Heartbeat { ts: now_ms() }.to_bytes()))
            .await?;
        self.flush().await
    }

    /// Writes `first` and whatever else is ready (up to `WRITE_BATCH` events or `buffer_bytes`)
    /// in one write, and waits, within the write deadline, until the socket has taken it all.
    async fn write_events(&mut self, first: FeedItem) -> Result<Option<End>, Fault> {
        if self.unflushed {
            self.flush().await?;
        }
        let mut item = Some(first);
        let mut bytes = 0;
        let mut end = None;
        while let Some(it) = item.take() {
            match it {
                FeedItem::Lagged => {
                    end = Some(End::Slow);
                    break;
                }
                FeedItem::Event(ev) => {
                    bytes += ev.frame.len();
                    self.batch.push(ev);
                }
            }
            if self.batch.len() < WRITE_BATCH && bytes < self.buffer_bytes {
                item = self.feed.try_next().await;
            }
        }
        let n = self.batch.len() as u64;
        let sent = self.events.send(
            self.socket.get_ref(),
            self.batch.iter().map(|e| &e.frame[..]),
        );
        self.batch.clear();
        sent?;
        count_delivered(Transport::Ws, n);
        self.drain_events().await?;
        Ok(end)
    }

    /// Waits until the socket has taken every event byte, within the write deadline.
    async fn drain_events(&mut self) -> Result<(), Fault> {
        drain_events(&self.socket, &mut self.events, self.write_timeout).await
    }

    async fn flush(&mut self) -> Result<(), Fault> {
        self.unflushed = false;
        flush(&mut self.socket, self.write_timeout).await
    }

    async fn send_now(&mut self, bytes: Bytes) -> Result<(), Fault> {
        self.feed(text(bytes)).await?;
        self.flush().await
    }

    async fn feed(&mut self, msg: Message) -> Result<(), Fault> {
        feed(&mut self.socket, msg, self.write_timeout).await
    }

    async fn on_client_message(&mut self, text: &str) -> Result<Option<End>, Fault> {
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
                    self.seats.leave(&ch);
                }
                let msg = ServerMessage::Unsubscribed { channel: &channel };
                self.send_now(msg.to_bytes()).await?;
                Ok(None)
            }
        }
    }

    /// Joins a channel and sends its opening messages.
    async fn subscribe(
        &mut self,
        ch: ChannelName,
        since: Option<Position>,
    ) -> Result<Option<End>, Fault> {
        let max = self
            .state
            .config
            .load()
            .subscribers
            .max_channels_per_connection;
        if !self.feed.contains(&ch) && self.feed.len() >= max {
            return Ok(Some(End::Policy));
        }
        // Refused for its tenant, this channel alone: the connection's others keep going.
        if let Err(refused) = tenancy::join(&self.state, &mut self.seats, &ch) {
            let e = ApiError::from(refused);
            self.send_error(e.code(), &e.to_string(), Some(ch.as_str()))
                .await?;
            return Ok(None);
        }
        let sub = match self.state.engine.subscribe(&ch, since.as_ref()).await {
            Ok(sub) => sub,
            Err(e) => {
                if !self.feed.contains(&ch) {
                    self.seats.leave(&ch);
                }
                let e = ApiError::from(e);
                self.send_error(e.code(), &e.to_string(), Some(ch.as_str()))
                    .await?;
                return Ok(None);
            }
        };
        let opening = subscriber::opening(&sub, since.as_ref(), Transport::Ws);
        self.signals.follow(&ch);
        sub.live.direct(self.direct.clone());
        self.feed.insert(sub);
        // Written as event frames are, not through tungstenite: a replay would grow its write
        // buffer, which keeps its size for the connection's life.
        if self.unflushed {
            self.flush().await?;
        }
        self.events.send(
            self.socket.get_ref(),
            opening.iter().map(|Outgoing { bytes, .. }| &bytes[..]),
        )?;
        self.drain_events().await?;
        count_delivered(Transport::Ws, opening.len() as u64 - 1);
        Ok(None)
    }

    async fn send_error(
        &mut self,
        code: &str,
        message: &str,
        channel: Option<&str>,
    ) -> Result<(), Fault> {
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
            End::Violation(..) => "protocol_violation",
            End::TokenExpired => "token_expired",
        }
    }
}

/// A close frame with a code and a reason.
pub(super) fn close_frame((code, reason): (u16, &'static str)) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Ends a connection with `frame`. Event frames the peer has not begun are dropped (they are in
/// history), the rest of one it has begun goes out, then the close frame: the peer sees whole
/// frames only. A peer that takes nothing for `stall` is dropped; one reading steadily is kept
/// at most `limit`.
pub(super) async fn close(
    socket: &mut Socket,
    events: &mut EventWriter,
    frame: Message,
    stall: Duration,
    limit: Duration,
) {
    events.cut();
    let _ = tokio::time::timeout(limit, async {
        while events.backlog() > 0 {
            let before = events.backlog();
            let step = events.drain_some(socket.get_ref());
            match tokio::time::timeout(stall, step).await {
                Ok(Ok(())) if events.backlog() < before => {}
                _ => return Err(Fault::Slow),
            }
        }
        match tokio::time::timeout(stall, socket.send(frame)).await {
            Ok(r) => r.map_err(Fault::from),
            Err(_) => Err(Fault::Slow),
        }
    })
    .await;
}

/// Waits until the socket has taken every event byte, within the write deadline.
pub(super) async fn drain_events(
    socket: &Socket,
    events: &mut EventWriter,
    write_timeout: Duration,
) -> Result<(), Fault> {
    if events.backlog() == 0 {
        return Ok(());
    }
    match tokio::time::timeout(write_timeout, events.drain(socket.get_ref())).await {
        Ok(r) => r.map_err(Fault::from),
        Err(_) => Err(Fault::Slow),
    }
}

/// Flushes tungstenite within the write deadline; a peer that does not read is a slow
/// consumer. Most flushes complete at once: only one that has to wait pays for a timer.
pub(super) async fn flush(socket: &mut Socket, write_timeout: Duration) -> Result<(), Fault> {
    let mut flush = socket.flush();
    if let Some(done) = poll_fn(|cx| {
        Poll::Ready(match flush.poll_unpin(cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        })
    })
    .await
    {
        return done.map_err(Fault::from);
    }
    match tokio::time::timeout(write_timeout, flush).await {
        Ok(r) => r.map_err(Fault::from),
        Err(_) => Err(Fault::Slow),
    }
}

/// Queues a message in tungstenite within the write deadline: past `write_buffer_size` a feed
/// writes to the socket, and a peer that does not read must not hold it (a replay of a long
/// history is many feeds).
pub(super) async fn feed(
    socket: &mut Socket,
    msg: Message,
    write_timeout: Duration,
) -> Result<(), Fault> {
    match tokio::time::timeout(write_timeout, socket.feed(msg)).await {
        Ok(r) => r.map_err(Fault::from),
        Err(_) => Err(Fault::Slow),
    }
}

/// The client's next message. The socket is read only once it has woken the task: a session
/// wakes once per delivered event, and a read attempt through tungstenite costs more than writing
/// the event. A read may leave tungstenite with a reply to send: `unflushed` says so.
pub(super) async fn recv(
    socket: &mut Socket,
    reads: &mut WakeFlag,
    unflushed: &mut bool,
) -> Option<Result<Message, tungstenite::Error>> {
    poll_fn(|cx| {
        reads.poll(cx, |cx| {
            *unflushed = true;
            socket.poll_next_unpin(cx)
        })
    })
    .await
}

/// A read error that the client caused ends the session with a close code saying so; anything
/// else (a reset, an I/O error) is the connection gone.
pub(super) fn violation(e: tungstenite::Error) -> Result<(u16, &'static str), Fault> {
    use tungstenite::Error;
    match e {
        Error::Protocol(_) => Ok((1002, "protocol violation")),
        Error::Capacity(_) => Ok((1009, "message too big: client messages are at most 16 KiB")),
        Error::Utf8(_) => Ok((1007, "text message is not UTF-8")),
        other => Err(Fault::Socket(other)),
    }
}

/// Event frames and control messages are JSON the server produced: valid UTF-8 by construction.
pub(super) fn text(bytes: Bytes) -> Message {
    Message::Text(Utf8Bytes::try_from(bytes).expect("server frames are UTF-8 JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without making one.
    fn future_size<A, B, C, F: std::future::Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[tokio::test]
    async fn a_waiting_select_parks_the_socket_and_takes_it_back_when_it_wakes() {
        use std::pin::pin;
        use std::task::{Context, Waker};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (_client, accepted) = tokio::join!(client, listener.accept());
        let parking = Parking::new(accepted.unwrap().0);
        let mut cx = Context::from_waker(Waker::noop());
        for idle in [false, true] {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let mut wait = pin!(async {
                tokio::select! {
                    biased;
                    _ = claim(&parking) => "rest",
                    _ = rx => "woken",
                    () = park(&parking, idle) => unreachable!(),
                }
            });
            assert!(wait.as_mut().poll(&mut cx).is_pending());
            assert_eq!(parking.parked(), idle, "parked only with nothing unsent");
            tx.send(()).unwrap();
            assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready("woken"));
            assert!(!parking.parked(), "taken back before anything else looked");
        }
    }

    #[test]
    fn an_idle_session_task_keeps_little_besides_its_session() {
        // A task holds its future for as long as its connection is open: the session is boxed
        // apart, and the steps taken rarely (the opening, a client's message, the goodbye) are
        // boxed while they run, so what stays is the loop and what it waits on.
        let size = future_size(Session::run);
        assert!(size <= 1280, "a session's future is {size} bytes");
    }
}
