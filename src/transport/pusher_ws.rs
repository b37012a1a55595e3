//! `GET /app/{key}`: Pusher protocol 7 on understudy's own WebSocket, so a page using pusher-js
//! keeps updating through a vendor outage with only `wsHost` pointed at understudy. A socket
//! holds the same registry subscriptions as `/v1/ws` (same ordering, same slow-consumer bound)
//! and goes through the same listener caps, deadlines, drain and goodbye: the opening handshake,
//! the event writer and the socket's write and close steps are `ws`'s own. What differs is the
//! dialect (`protocol`), the private channel signatures (`channel_auth`), and that Pusher has no
//! positions: a (re)subscription starts live, with no replay.

pub(super) mod channel_auth;
mod protocol;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, Instrument};

use self::protocol::{code, ClientFrame, SubscribeData};
use super::control::{Signal, Signals};
use super::direct::{DirectWriter, Framing};
use super::subscriber::{self, Feed, FeedItem, Heartbeats};
use super::tenancy;
use super::wake::WakeFlag;
use super::ws::frames::{self, EventWriter};
use super::ws::handshake::Handshake;
use super::ws::{self, Fault, Step, CLOSE_LIMIT, CLOSE_STALL, WRITE_BATCH};
use super::ApiError;
use crate::config::AppConfig;
use crate::core::{ChannelName, Event};
use crate::ops::metrics::{count_delivered, Metrics, Transport};
use crate::tenant::Seats;
use crate::transport::AppState;

/// Protocol versions served: pusher-js 8 speaks 7; 5 and 6 carry the same messages.
const PROTOCOLS: [&str; 3] = ["5", "6", "7"];

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    ws: Handshake,
) -> Result<Response, ApiError> {
    if state.lifecycle.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    subscriber::enabled(&state, Transport::Ws)?;
    let pairs = subscriber::query_pairs(query.as_deref());
    let protocol = subscriber::query_values(&pairs, "protocol").next();
    // Refusals go over the socket: pusher-js reads a close code (and a `pusher:error` in place
    // of the handshake) and stops retrying on 4000 to 4099, where an HTTP status would only make
    // it retry for ever.
    let opening = match (state.apps.load().by_key(&key), protocol) {
        (None, _) => Err((code::APP_NOT_FOUND, "App key does not exist")),
        (Some(_), None) => Err((code::NO_PROTOCOL, "No protocol version supplied")),
        (Some(_), Some(p)) if !PROTOCOLS.contains(&p) => Err((
            code::UNSUPPORTED_PROTOCOL,
            "Unsupported protocol version: 7 is served",
        )),
        (Some(app), Some(_)) => Ok(app),
    };
    // New sockets share /v1/ws's admission rate. pusher-js backs off and retries on 4100, so a
    // reconnect storm of pusher-js pages is spread out the same way.
    let opening = opening.and_then(|app| match subscriber::admit_new(&state, Transport::Ws) {
        Ok(()) => Ok(app),
        Err(_) => Err((code::OVER_CAPACITY, "Over capacity: reconnect later")),
    });
    let token = state.lifecycle.track();
    let config = ws::socket_config(&state);
    Ok(ws.accept(config, move |socket| {
        let socket_id = channel_auth::new_socket_id();
        let span = tracing::debug_span!("pusher_ws", socket_id = %socket_id);
        // A session is made here and boxed, so that the task's future holds it once, by pointer.
        match opening {
            Ok(app) => Box::new(Session::new(socket, state, app, socket_id))
                .run(token)
                .instrument(span)
                .boxed(),
            Err(refusal) => async move {
                let _token = token;
                refuse(socket, refusal).await
            }
            .instrument(span)
            .boxed(),
        }
    }))
}

/// Sends `pusher:error` in place of the handshake, then the close frame with the same code.
async fn refuse(mut socket: ws::Socket, (code, why): (u16, &'static str)) {
    debug!(code, "pusher socket refused");
    let limit = Duration::from_secs(1);
    let _ = tokio::time::timeout(limit, async {
        ws::feed(
            &mut socket,
            ws::text(protocol::error(Some(code), why, None)),
            limit,
        )
        .await?;
        ws::feed(&mut socket, ws::close_frame((code, why)), limit).await?;
        ws::flush(&mut socket, limit).await
    })
    .await;
}

/// Events as Pusher protocol messages in text frames, for the socket's direct writer and its
/// task alike: none for an event that excludes this socket.
struct PusherFraming {
    /// Pusher's socket id: private channels are signed for it, and events whose
    /// `exclude_socket` names it are not sent on this socket.
    socket_id: String,
}

impl PusherFraming {
    /// Whether this socket gets `event`: not when its publisher left this socket out.
    fn gets(&self, event: &Event) -> bool {
        event.exclude_socket.as_deref() != Some(self.socket_id.as_str())
    }
}

impl Framing for PusherFraming {
    fn write(&self, event: &Event, out: &mut BytesMut) {
        if self.gets(event) {
            frames::text_frame(&protocol::event_frame(event), out);
        }
    }
}

/// Why a session ended.
enum End {
    ClientGone,
    /// The client broke the WebSocket protocol: told why with a close frame (1002, 1009, 1007).
    Violation(u16, &'static str),
    Slow,
    /// No pong (nor anything else) within a heartbeat of a ping.
    Silent,
    Goodbye,
}

struct Session {
    socket: ws::Socket,
    events: EventWriter,
    /// Writes events on publishers' threads (see `direct`).
    direct: Arc<DirectWriter<PusherFraming>>,
    /// The Pusher frames of the write being gathered; empty between writes.
    batch: Vec<Bytes>,
    /// tungstenite may hold a reply it has not sent: flush it before writing events.
    unflushed: bool,
    state: AppState,
    /// The app the key named when the socket opened (a reload does not change an open socket).
    app: Arc<AppConfig>,
    feed: Feed,
    /// A seat in each tenant whose channels `feed` holds (`max_connections`).
    seats: Seats,
    reads: WakeFlag,
    last_heard: Instant,
    signals: Signals,
    write_timeout: Duration,
    buffer_bytes: usize,
}

impl Session {
    fn socket_id(&self) -> &str {
        &self.direct.framing().socket_id
    }

    fn new(socket: ws::Socket, state: AppState, app: Arc<AppConfig>, socket_id: String) -> Self {
        let subscribers = state.config.load().subscribers.clone();
        ws::cap_send_buffer(&socket, subscribers.buffer_bytes);
        let framing = PusherFraming { socket_id };
        Self {
            direct: Arc::new(DirectWriter::new(
                socket.get_ref().parking(),
                framing,
                Transport::Ws,
            )),
            socket,
            events: EventWriter::default(),
            batch: Vec::new(),
            unflushed: false,
            app,
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

    /// Serves the socket until it ends; `_token` keeps the node's drain waiting for it.
    async fn run(self: Box<Self>, _token: TaskTrackerToken) {
        let _conn = Metrics::connection(Transport::Ws);
        let mut session = self;
        let end = match session.serve().await {
            Ok(end) => end,
            Err(Fault::Slow | Fault::Socket(tungstenite::Error::WriteBufferFull(_))) => End::Slow,
            Err(Fault::Socket(_)) => End::ClientGone,
        };
        // Boxed, as every step a socket takes rarely: an idle session's task keeps only what its
        // loop waits on.
        Box::pin(session.end(end)).await;
    }

    /// Says goodbye with the close code `end` calls for.
    async fn end(mut self: Box<Self>, end: End) {
        let (stall, limit) = match end {
            End::Slow => (self.write_timeout.max(CLOSE_STALL), CLOSE_LIMIT),
            _ => (Duration::from_secs(1), Duration::from_secs(1)),
        };
        let close = match end {
            End::ClientGone => return,
            End::Slow => {
                Metrics::slow_consumer(Transport::Ws).increment(1);
                (code::OVER_CAPACITY, "slow consumer: reconnect")
            }
            End::Silent => (code::PONG_NOT_RECEIVED, "Pong reply not received"),
            End::Goodbye => (code::RECONNECT, "server restarting: reconnect"),
            End::Violation(code, why) => (code, why),
        };
        debug!(code = close.0, "pusher socket closed");
        self.feed = Feed::default();
        self.seats = tenancy::seats(&self.state);
        let frame = ws::close_frame(close);
        ws::close(&mut self.socket, &mut self.events, frame, stall, limit).await;
    }

    async fn serve(&mut self) -> Result<End, Fault> {
        let heartbeat = self.state.config.load().subscribers.heartbeat;
        // pusher-js pings after this long without a message, so it is the heartbeat, whole
        // seconds, at least one.
        let activity_timeout = heartbeat.as_secs().max(1);
        let hello = protocol::connection_established(self.socket_id(), activity_timeout);
        Box::pin(self.send_now(hello)).await?;
        let mut heartbeats = Heartbeats::new(heartbeat);
        // When the client was pinged, if it has not said a word since: it then has a whole
        // heartbeat to answer, however late in an idle spell the ping went out.
        let mut pinged: Option<Instant> = None;
        loop {
            // A reply tungstenite may hold unsent keeps the socket from publishers' writes.
            let park_idle = !self.unflushed;
            let step = tokio::select! {
                biased;
                rest = ws::claim(self.direct.parking()) => Step::Rest(rest),
                signal = self.signals.next() => Step::Signal(signal),
                incoming = ws::recv(&mut self.socket, &mut self.reads, &mut self.unflushed) => {
                    Step::Incoming(incoming)
                }
                item = self.feed.next() => Step::Feed(item),
                () = heartbeats.beat() => Step::Beat,
                () = ws::park(self.direct.parking(), park_idle) => unreachable!("parking never ends a wait"),
            };
            match step {
                Step::Rest(rest) => {
                    self.events.adopt(&rest);
                    ws::drain_events(&self.socket, &mut self.events, self.write_timeout).await?;
                }
                Step::Signal(signal) => match signal {
                    Signal::Goodbye => return Ok(End::Goodbye),
                    // Pusher clients have no route to follow: this socket is the route.
                    Signal::Route(_) => {}
                },
                Step::Incoming(incoming) => {
                    let Some(msg) = incoming else {
                        return Ok(End::ClientGone);
                    };
                    self.last_heard = Instant::now();
                    pinged = None;
                    match msg {
                        Err(e) => return ws::violation(e).map(|(c, why)| End::Violation(c, why)),
                        Ok(Message::Text(t)) => {
                            Box::pin(self.on_client_message(t.as_str())).await?
                        }
                        Ok(Message::Close(_)) => return Ok(End::ClientGone),
                        Ok(Message::Ping(_)) => self.flush().await?,
                        Ok(_) => {}
                    }
                }
                Step::Feed(item) => {
                    if let Some(end) = self.write_events(item).await? {
                        return Ok(end);
                    }
                }
                Step::Beat => match pinged {
                    // Pinged a heartbeat ago (or more) and silent since.
                    Some(at) if at.elapsed() >= heartbeat => return Ok(End::Silent),
                    Some(_) => {}
                    // Only an idle client is pinged, as Pusher does; its pong keeps it.
                    None if self.last_heard.elapsed() >= heartbeat => {
                        Box::pin(self.send_now(protocol::ping())).await?;
                        pinged = Some(Instant::now());
                    }
                    None => {}
                },
            }
        }
    }

    /// Writes `first` and whatever else is ready in one write, leaving out events that exclude
    /// this socket, and waits within the write deadline until the socket has taken it all.
    async fn write_events(&mut self, first: FeedItem) -> Result<Option<End>, Fault> {
        if self.unflushed {
            self.flush().await?;
        }
        let mut item = Some(first);
        let (mut bytes, mut gathered) = (0, 0);
        let mut end = None;
        while let Some(it) = item.take() {
            match it {
                FeedItem::Lagged => {
                    end = Some(End::Slow);
                    break;
                }
                FeedItem::Event(ev) => {
                    gathered += 1;
                    if self.direct.framing().gets(&ev) {
                        let frame = protocol::event_frame(&ev);
                        bytes += frame.len();
                        self.batch.push(frame);
                    }
                }
            }
            if gathered < WRITE_BATCH && bytes < self.buffer_bytes {
                item = self.feed.try_next().await;
            }
        }
        let n = self.batch.len() as u64;
        let sent = self
            .events
            .send(self.socket.get_ref(), self.batch.iter().map(|b| &b[..]));
        self.batch.clear();
        sent?;
        count_delivered(Transport::Ws, n);
        ws::drain_events(&self.socket, &mut self.events, self.write_timeout).await?;
        Ok(end)
    }

    async fn flush(&mut self) -> Result<(), Fault> {
        self.unflushed = false;
        ws::flush(&mut self.socket, self.write_timeout).await
    }

    async fn send_now(&mut self, bytes: Bytes) -> Result<(), Fault> {
        ws::feed(&mut self.socket, ws::text(bytes), self.write_timeout).await?;
        self.flush().await
    }

    async fn send_error(
        &mut self,
        code: Option<u16>,
        message: &str,
        channel: Option<&str>,
    ) -> Result<(), Fault> {
        self.send_now(protocol::error(code, message, channel)).await
    }

    async fn on_client_message(&mut self, text: &str) -> Result<(), Fault> {
        let frame = match serde_json::from_str::<ClientFrame<'_>>(text) {
            Ok(f) => f,
            Err(e) => {
                let why = format!("message not understood ({e}): send {{\"event\":\"pusher:subscribe\",\"data\":{{\"channel\":\"...\"}}}}");
                return self.send_error(None, &why, None).await;
            }
        };
        match &*frame.event {
            "pusher:ping" => self.send_now(protocol::pong()).await,
            "pusher:pong" => Ok(()),
            "pusher:subscribe" => match SubscribeData::parse(frame.data) {
                Ok(d) => self.subscribe(d).await,
                Err(e) => {
                    let why = format!("pusher:subscribe not understood: {e}");
                    self.send_error(None, &why, None).await
                }
            },
            "pusher:unsubscribe" => {
                // Nothing is answered, as Pusher does; an unknown channel is no error.
                if let Ok(d) = SubscribeData::parse(frame.data) {
                    if let Ok(ch) = ChannelName::parse(&d.channel) {
                        self.feed.remove(&ch);
                        self.seats.leave(&ch);
                    }
                }
                Ok(())
            }
            e if e.starts_with("client-") => {
                let channel = frame.channel.as_deref();
                let why = "client events are not served by understudy: publish through your server";
                self.send_error(Some(code::CLIENT_EVENT_REJECTED), why, channel)
                    .await
            }
            other => {
                let why = format!(
                    "unknown event {:?}: understudy serves pusher:subscribe, pusher:unsubscribe, pusher:ping and pusher:pong",
                    other.chars().take(64).collect::<String>()
                );
                self.send_error(None, &why, None).await
            }
        }
    }

    async fn subscribe(&mut self, d: SubscribeData) -> Result<(), Fault> {
        let name = d.channel.as_str();
        let refused = |why: String| (Some(code::UNAUTHORIZED), why);
        let outcome = if name.starts_with("presence-") || name.starts_with("private-encrypted-") {
            Err(refused(format!(
                "{name:?}: presence and encrypted channels are not served by understudy"
            )))
        } else {
            match ChannelName::parse(name) {
                Err(e) => Err((None, e.to_string())),
                Ok(ch) if name.starts_with("private-") => {
                    channel_auth::check(&self.app, self.socket_id(), name, d.auth.as_deref())
                        .map(|()| ch)
                        .map_err(|e| refused(e.to_string()))
                }
                Ok(ch) => Ok(ch),
            }
        };
        // An app's sockets see its tenant's channels only, refused as a channel they may not
        // have.
        let outcome = outcome.and_then(|ch| {
            tenancy::app_may_subscribe(&self.state, &self.app.id, &ch)
                .map(|()| ch)
                .map_err(|e| refused(e.to_string()))
        });
        let ch = match outcome {
            Ok(ch) => ch,
            Err((code, why)) => return self.send_error(code, &why, Some(name)).await,
        };
        // Subscribed already (pusher-js does not ask twice, but a client may): the live stream
        // is kept, so nothing between the two is lost.
        if !self.feed.contains(&ch) {
            let max = self
                .state
                .config
                .load()
                .subscribers
                .max_channels_per_connection;
            if self.feed.len() >= max {
                let why = format!("at most {max} channels per connection");
                return self.send_error(None, &why, Some(name)).await;
            }
            if let Err(e) = tenancy::join(&self.state, &mut self.seats, &ch) {
                // Pusher's "over capacity": reconnect after a back-off.
                let why = e.to_string();
                return (self.send_error(Some(code::OVER_CAPACITY), &why, Some(name))).await;
            }
            match self.state.engine.subscribe(&ch, None).await {
                Ok(sub) => {
                    sub.live.direct(self.direct.clone());
                    self.feed.insert(sub);
                }
                Err(e) => {
                    self.seats.leave(&ch);
                    let e = ApiError::from(e);
                    return self.send_error(None, &e.to_string(), Some(name)).await;
                }
            }
        }
        self.send_now(protocol::subscription_succeeded(name)).await
    }
}
