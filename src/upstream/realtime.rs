//! The vendor's own realtime connection, as the canary uses it: what a session reports
//! ([`Arrival`], [`SessionEnd`]), how it fails ([`RealtimeError`]), its liveness settings
//! ([`RealtimeConfig`]) and the small WebSocket wrapper ([`Socket`]) the Pusher and Ably
//! sessions share. Each session is one connection; reconnecting with back-off is the caller's.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::tls::TlsProblem;

/// Liveness settings of a realtime session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealtimeConfig {
    /// Time allowed for TCP + TLS + WebSocket handshake + the vendor's "connected" message +
    /// the subscription acknowledgement. Default 2 s.
    pub handshake_timeout: Duration,
    /// Silence after which the session sends a ping (Pusher `pusher:ping`, Ably HEARTBEAT).
    /// Default 5 s; the canary's own traffic keeps a healthy connection busier than that.
    pub idle_ping_after: Duration,
    /// Time allowed for any frame to answer that ping before the session is declared dead.
    /// Default 3 s.
    pub pong_timeout: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            handshake_timeout: Duration::from_secs(2),
            idle_ping_after: Duration::from_secs(5),
            pong_timeout: Duration::from_secs(3),
        }
    }
}

/// What a session reports while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The subscription is active: messages published from now on will be reported.
    Subscribed,
    /// A message arrived on the subscribed channel. `id` is the message id (Ably) or the `id`
    /// field of the data JSON (Pusher); `at` is when the frame was read.
    Message { id: String, at: Instant },
    /// The session ended (sent by whoever reconnects, not by the session itself).
    Ended { error: RealtimeError },
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnd {
    /// Whether the session got as far as an active subscription.
    pub subscribed: bool,
    pub error: RealtimeError,
}

/// Why a realtime session ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RealtimeError {
    #[error("this vendor has no realtime protocol")]
    Unsupported,
    #[error("could not connect: {0}")]
    Connect(String),
    /// The TLS handshake failed: a configuration error (see [`TlsProblem`]).
    #[error("{problem} ({detail})")]
    Tls { problem: TlsProblem, detail: String },
    #[error("no {0} within the handshake time-out")]
    HandshakeTimeout(&'static str),
    /// The vendor refused us in a way a reconnect cannot fix (bad key, unknown app, disabled).
    #[error("refused by the vendor (code {code}): {message}")]
    Refused { code: u32, message: String },
    #[error("closed by the vendor (code {code}): {reason}")]
    Closed { code: u16, reason: String },
    #[error("no answer to a ping within the pong time-out")]
    Dead,
    #[error("unexpected message: {0}")]
    Protocol(String),
    #[error("the receiver of arrivals is gone")]
    Abandoned,
}

impl RealtimeError {
    /// Whether reconnecting cannot help until an operator acts.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            RealtimeError::Refused { .. } | RealtimeError::Tls { .. } | RealtimeError::Unsupported
        )
    }
}

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket carrying JSON text frames, with liveness tracking.
pub(crate) struct Socket {
    ws: Stream,
    /// When the last frame of any kind arrived.
    last_rx: Instant,
    /// When the outstanding ping was sent, if one is.
    ping_sent: Option<Instant>,
}

/// What [`Socket::next`] yields.
pub(crate) enum Next {
    Text(String),
    /// Silence for `idle_ping_after`: the caller should send its protocol's ping.
    PingDue,
}

impl Socket {
    /// Opens the WebSocket, bounded by `until`; a `wss://` URL goes through `tls` (the side's one
    /// client configuration), a `ws://` one is plain.
    pub(crate) async fn connect(
        url: &url::Url,
        tls: &Arc<rustls::ClientConfig>,
        until: Instant,
    ) -> Result<Socket, RealtimeError> {
        let handshake = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            false,
            Some(Connector::Rustls(tls.clone())),
        );
        match tokio::time::timeout_at(until, handshake).await {
            Err(_) => Err(RealtimeError::HandshakeTimeout("WebSocket handshake")),
            Ok(Err(e)) => Err(match TlsProblem::of(&e) {
                Some(problem) => RealtimeError::Tls {
                    problem,
                    detail: strip_query(&e.to_string()),
                },
                None => RealtimeError::Connect(strip_query(&e.to_string())),
            }),
            Ok(Ok((ws, _))) => Ok(Socket {
                ws,
                last_rx: Instant::now(),
                ping_sent: None,
            }),
        }
    }

    pub(crate) async fn send_text(&mut self, text: String) -> Result<(), RealtimeError> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| RealtimeError::Connect(e.to_string()))
    }

    /// Records that a protocol ping was just sent.
    pub(crate) fn ping_sent(&mut self) {
        self.ping_sent = Some(Instant::now());
    }

    /// The next text frame, or `None` if `until` passes first.
    pub(crate) async fn text_until(
        &mut self,
        until: Instant,
    ) -> Result<Option<String>, RealtimeError> {
        loop {
            let frame = match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(frame) => frame,
            };
            if let Some(text) = self.accept(frame)? {
                return Ok(Some(text));
            }
        }
    }

    /// The next text frame, applying the liveness rule of `config`: after `idle_ping_after` of
    /// silence yields [`Next::PingDue`] once; if nothing arrives within `pong_timeout` after
    /// that, fails with [`RealtimeError::Dead`].
    pub(crate) async fn next(&mut self, config: &RealtimeConfig) -> Result<Next, RealtimeError> {
        loop {
            let until = match self.ping_sent {
                Some(sent) => sent + config.pong_timeout,
                None => self.last_rx + config.idle_ping_after,
            };
            let frame = match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) if self.ping_sent.is_some() => return Err(RealtimeError::Dead),
                Err(_) => return Ok(Next::PingDue),
                Ok(frame) => frame,
            };
            if let Some(text) = self.accept(frame)? {
                return Ok(Next::Text(text));
            }
        }
    }

    /// Notes liveness for any frame; returns the text of a text frame.
    fn accept(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<Option<String>, RealtimeError> {
        let message = match frame {
            None => {
                return Err(RealtimeError::Closed {
                    code: 1006,
                    reason: "connection closed".into(),
                })
            }
            Some(Err(e)) => {
                return Err(RealtimeError::Closed {
                    code: 1006,
                    reason: e.to_string(),
                })
            }
            Some(Ok(message)) => message,
        };
        self.last_rx = Instant::now();
        self.ping_sent = None;
        match message {
            Message::Text(text) => Ok(Some(text.as_str().to_owned())),
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))
                    .unwrap_or((u16::from(CloseCode::Status), String::new()));
                Err(RealtimeError::Closed { code, reason })
            }
            // Pings are answered by tungstenite itself; binary frames are not used.
            _ => Ok(None),
        }
    }

    /// Closes politely, without waiting long for the peer.
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), self.ws.close(None)).await;
    }
}

/// Removes a query string from an error message (realtime URLs can carry an Ably key).
fn strip_query(text: &str) -> String {
    match text.find('?') {
        Some(i) => {
            let end = text[i..]
                .find(char::is_whitespace)
                .map(|j| i + j)
                .unwrap_or(text.len());
            format!("{}?<redacted>{}", &text[..i], &text[end..])
        }
        None => text.to_owned(),
    }
}

/// Sends `arrival`, failing when the receiver is gone.
pub(crate) async fn report(
    arrivals: &tokio::sync::mpsc::Sender<Arrival>,
    arrival: Arrival,
) -> Result<(), RealtimeError> {
    arrivals
        .send(arrival)
        .await
        .map_err(|_| RealtimeError::Abandoned)
}

#[cfg(test)]
mod tests;
