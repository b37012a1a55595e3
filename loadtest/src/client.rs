//! Subscriber connections over real sockets: one [`Connection`] type over the WebSocket and
//! SSE readers, and the [`Connector`] that opens them against a [`Target`].

pub(crate) mod http1;
pub(crate) mod message;
pub(crate) mod sse;
pub(crate) mod ws;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use serde::Serialize;
use tokio::time::Instant;

use crate::target::{Dialect, Target};
use message::ServerMessage;

/// `503 reconnect_later` answers one open may take before it gives up; every run is bounded.
const MAX_REFUSALS: u32 = 100;
/// The longest wait a refusal may ask for before the open gives up.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Connections per client source address before the next one (127.0.0.2, ..) is used: one
/// (source IP, destination) pair has about 28k ephemeral ports.
const CONNS_PER_SOURCE_IP: usize = 20_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    Ws,
    Sse,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        })
    }
}

/// A position to resume a channel from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resume<'a> {
    pub(crate) epoch: &'a str,
    /// The last seq seen.
    pub(crate) seq: u64,
}

/// What a read returned.
#[derive(Debug)]
pub(crate) enum Incoming<'a> {
    /// One server JSON message (a WS text frame, or an unnamed SSE event's `data`), with the
    /// SSE event's `id:` (the connection's cursor after it) when there is one.
    Message(&'a [u8], Option<&'a [u8]>),
    /// The server ended the stream.
    Closed(CloseInfo),
}

/// How a stream ended: the WS close code if any, and a reason for the report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CloseInfo {
    pub(crate) code: Option<u16>,
    pub(crate) reason: String,
}

/// An open subscriber stream, and the dialect it speaks.
pub(crate) struct Connection {
    stream: Stream,
    dialect: Dialect,
}

enum Stream {
    Ws(ws::WsConnection),
    Sse(sse::SseConnection),
}

impl Connection {
    /// An open understudy WebSocket, as a subscriber stream.
    pub(crate) fn ws(ws: ws::WsConnection) -> Self {
        Connection {
            stream: Stream::Ws(ws),
            dialect: Dialect::Understudy,
        }
    }

    /// The next server message, skipping transport noise (pings, SSE comments, named events).
    /// In the nchan dialect an SSE `id:` is nchan's message id, not a cursor, and is not
    /// handed out.
    pub(crate) async fn next(&mut self) -> Result<Incoming<'_>> {
        let incoming = match &mut self.stream {
            Stream::Ws(c) => c.next().await?,
            Stream::Sse(c) => c.next().await?,
        };
        Ok(match (incoming, self.dialect) {
            (Incoming::Message(bytes, _), Dialect::Nchan) => Incoming::Message(bytes, None),
            (other, _) => other,
        })
    }

    /// Reads until the server confirms the subscription to `channel` (skipping `welcome`,
    /// `heartbeat` and `route`); returns the epoch and head seq it gives. In the nchan dialect
    /// the stream is subscribed once open (nchan answers the upgrade or the EventSource
    /// request after registering the subscriber): epoch `""`, and the tool's numbering
    /// starts at 1.
    pub(crate) async fn await_subscribed(&mut self, channel: &str) -> Result<(String, u64)> {
        if self.dialect == Dialect::Nchan {
            return Ok((String::new(), 0));
        }
        loop {
            let bytes = match self.next().await? {
                Incoming::Message(bytes, _) => bytes,
                Incoming::Closed(info) => {
                    bail!(
                        "stream closed before `subscribed` (code {:?}: {})",
                        info.code,
                        info.reason
                    )
                }
            };
            let msg = ServerMessage::parse(bytes).map_err(|e| {
                anyhow!(
                    "unparsable message before `subscribed`: {e}: {}",
                    String::from_utf8_lossy(bytes)
                )
            })?;
            match msg.kind.as_ref() {
                "subscribed" if msg.channel.as_deref() == Some(channel) => {
                    let epoch = msg.epoch.as_deref().unwrap_or_default().to_owned();
                    let seq = msg.seq.context("`subscribed` without a seq")?;
                    return Ok((epoch, seq));
                }
                "welcome" | "heartbeat" | "route" => {}
                _ => bail!("expected `subscribed`, got {}", msg.describe()),
            }
        }
    }

    /// Ends the stream politely (WS close frame; SSE just drops the response).
    pub(crate) async fn close(self) {
        match self.stream {
            Stream::Ws(c) => c.close().await,
            Stream::Sse(c) => drop(c),
        }
    }
}

/// Opens subscriber connections of one transport to one target.
#[derive(Clone)]
pub(crate) struct Connector {
    transport: Transport,
    target: Target,
    token: Option<String>,
    /// Used for SSE streams only; no total timeout, streams are long-lived.
    http: reqwest::Client,
    ws_config: ws::WsSettings,
    /// Spread WS connections over 127.0.0.1, .2, .. once there are more than one source IP's
    /// worth of ports (only for IPv4 127.0.0.1 targets).
    spread_sources: bool,
}

impl Connector {
    pub(crate) fn new(
        transport: Transport,
        target: Target,
        token: Option<String>,
        ws_config: ws::WsSettings,
        expected_connections: usize,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let spread_sources = expected_connections > CONNS_PER_SOURCE_IP
            && target.addr().ip() == IpAddr::V4(Ipv4Addr::LOCALHOST);
        Ok(Self {
            transport,
            target,
            token,
            http,
            ws_config,
            spread_sources,
        })
    }

    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    /// Opens connection number `index` subscribed to `channels`, returning it and the time to
    /// open it (TCP connect + WS upgrade, or until the SSE response headers). With `resume`,
    /// the one channel is subscribed from that position: a WS `subscribe` message with `since`,
    /// or an SSE `cursor`.
    pub(crate) async fn open(
        &self,
        index: usize,
        channels: &[&str],
        resume: Option<Resume<'_>>,
    ) -> Result<(Connection, Duration)> {
        let (conn, took, _) = self.open_admitted(index, channels, resume).await?;
        Ok((conn, took))
    }

    /// [`Connector::open`], coming back after the wait each `503 reconnect_later` names (the
    /// server admits new subscribers at a bounded rate) until admitted; also answers how many
    /// refusals it took. The time returned is the admitted attempt's.
    pub(crate) async fn open_admitted(
        &self,
        index: usize,
        channels: &[&str],
        resume: Option<Resume<'_>>,
    ) -> Result<(Connection, Duration, u32)> {
        let mut refusals = 0;
        loop {
            let err = match self.open_once(index, channels, resume).await {
                Ok((conn, took)) => return Ok((conn, took, refusals)),
                Err(e) => e,
            };
            let wait = err
                .downcast_ref::<ws::Refused>()
                .and_then(|r| r.retry_after_ms)
                .map(Duration::from_millis);
            match wait {
                Some(wait) if refusals < MAX_REFUSALS && wait <= MAX_RETRY_AFTER => {
                    refusals += 1;
                    tokio::time::sleep(wait).await;
                }
                Some(_) => return Err(err.context(format!("gave up after {refusals} refusals"))),
                None => return Err(err),
            }
        }
    }

    async fn open_once(
        &self,
        index: usize,
        channels: &[&str],
        resume: Option<Resume<'_>>,
    ) -> Result<(Connection, Duration)> {
        let started = Instant::now();
        let token = self.token.as_deref();
        let dialect = self.target.dialect();
        if dialect == Dialect::Nchan && (resume.is_some() || channels.len() != 1) {
            bail!("the nchan dialect subscribes to one channel, without resume");
        }
        let stream = match (self.transport, resume) {
            (Transport::Ws, None) => {
                let url = self.target.ws_url(channels, token);
                Stream::Ws(self.open_ws(index, &url).await?)
            }
            (Transport::Ws, Some(at)) => {
                let url = self.target.ws_url(&[], token);
                let mut ws = self.open_ws(index, &url).await?;
                for channel in channels {
                    let subscribe = serde_json::json!({
                        "type": "subscribe",
                        "channel": channel,
                        "since": {"epoch": at.epoch, "seq": at.seq},
                    });
                    ws.send_text(subscribe.to_string()).await?;
                }
                Stream::Ws(ws)
            }
            (Transport::Sse, resume) => {
                let mut url = self.target.sse_url(channels, token);
                if let Some(at) = resume {
                    let cursor: Vec<String> = channels
                        .iter()
                        .map(|c| format!("{c}~{}~{}", at.epoch, at.seq))
                        .collect();
                    url.query_pairs_mut()
                        .append_pair("cursor", &cursor.join(","));
                }
                Stream::Sse(sse::SseConnection::open(&self.http, url).await?)
            }
        };
        Ok((Connection { stream, dialect }, started.elapsed()))
    }

    async fn open_ws(&self, index: usize, url: &reqwest::Url) -> Result<ws::WsConnection> {
        let source = self.source_ip(index);
        ws::WsConnection::open(self.target.addr(), url, source, self.ws_config).await
    }

    fn source_ip(&self, index: usize) -> Option<IpAddr> {
        if !self.spread_sources {
            return None;
        }
        // 127.0.0.1 + n for the n-th block of connections; stays inside 127.0.0.0/8.
        let n = (index / CONNS_PER_SOURCE_IP) as u32;
        Some(IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::LOCALHOST) + n.min(250),
        )))
    }
}
