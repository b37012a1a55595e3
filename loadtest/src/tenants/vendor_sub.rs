//! A subscriber on the vendor path: a Pusher protocol 7 WebSocket to the vendor itself
//! (sockudo), subscribed to the private channel understudy forwards one channel's events on,
//! signed with the app secret as `POST /v1/vendor/auth` would sign it.

use std::net::SocketAddr;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::Url;
use serde::Deserialize;

use crate::client::message::ServerMessage;
use crate::client::ws::{WsConnection, WsSettings};
use crate::client::Incoming;

/// A Pusher message: `event`, `channel`, `data` (a JSON string for every event read here).
#[derive(Deserialize)]
struct PusherMessage {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

/// What one vendor message carried, when it is an understudy event of the channel.
pub(super) struct Delivered {
    pub(super) seq: u64,
    pub(super) t_us: Option<u64>,
}

pub(super) struct VendorSubscriber {
    ws: WsConnection,
    channel: String,
}

impl VendorSubscriber {
    /// Connects to the vendor at `addr` as app `key` and subscribes to understudy channel
    /// `channel` (on the vendor: `private-<channel>`).
    pub(super) async fn open(
        addr: SocketAddr,
        key: &str,
        secret: &str,
        channel: &str,
    ) -> Result<Self> {
        let url = Url::parse(&format!(
            "ws://{addr}/app/{key}?protocol=7&client=understudy-loadtest&version=1"
        ))?;
        let settings = WsSettings {
            read_buffer_bytes: 64 * 1024,
        };
        let mut ws = WsConnection::open(addr, &url, None, settings).await?;
        let wire = understudy::upstream::pusher::wire_channel(channel, true);
        let established = next_pusher(&mut ws).await?;
        if established.event != "pusher:connection_established" {
            bail!(
                "the vendor said {} before connection_established",
                established.event
            );
        }
        let data: serde_json::Value = match established.data {
            Some(serde_json::Value::String(s)) => serde_json::from_str(&s)?,
            _ => bail!("connection_established without data"),
        };
        let socket_id = data["socket_id"]
            .as_str()
            .context("connection_established without a socket_id")?;
        let secret = understudy::upstream::Secret::new(secret);
        let auth =
            understudy::upstream::pusher::signing::channel_auth(key, &secret, socket_id, &wire);
        let subscribe = serde_json::json!({
            "event": "pusher:subscribe",
            "data": {"channel": wire, "auth": auth},
        });
        ws.send_text(subscribe.to_string()).await?;
        loop {
            let m = next_pusher(&mut ws).await?;
            match m.event.as_str() {
                "pusher_internal:subscription_succeeded" => break,
                "pusher:error" | "pusher:subscription_error" => {
                    bail!("the vendor refused the subscription: {:?}", m.data)
                }
                _ => {}
            }
        }
        Ok(Self { ws, channel: wire })
    }

    /// The next understudy event of the channel; answers pings on the way.
    pub(super) async fn next(&mut self) -> Result<Delivered> {
        loop {
            let m = next_pusher(&mut self.ws).await?;
            if m.event == "pusher:ping" {
                self.ws
                    .send_text(r#"{"event":"pusher:pong","data":{}}"#.to_owned())
                    .await?;
                continue;
            }
            if m.event != "understudy.event" || m.channel.as_deref() != Some(&self.channel) {
                continue;
            }
            let Some(serde_json::Value::String(frame)) = m.data else {
                bail!("understudy.event without a string data");
            };
            let msg = ServerMessage::parse(frame.as_bytes())
                .map_err(|e| anyhow!("unparsable understudy frame from the vendor: {e}"))?;
            let seq = msg.seq.context("understudy frame without a seq")?;
            return Ok(Delivered {
                seq,
                t_us: msg.data.and_then(|d| d.t),
            });
        }
    }
}

async fn next_pusher(ws: &mut WsConnection) -> Result<PusherMessage> {
    match ws.next().await? {
        Incoming::Message(bytes, _) => Ok(serde_json::from_slice(bytes)?),
        Incoming::Closed(info) => bail!("the vendor closed the socket: {}", info.reason),
    }
}
