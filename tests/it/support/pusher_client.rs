//! An independent Pusher WebSocket protocol 7 client (not the library's canary code), to check
//! what subscribers really receive, on public channels and on private ones (signed here, or by
//! understudy's `POST /v1/vendor/auth`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An event received on a channel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PusherEvent {
    pub(crate) event: String,
    pub(crate) channel: String,
    /// The `data` member as sent by the server (a JSON string for published events).
    pub(crate) data: Value,
}

pub(crate) struct PusherClient {
    ws: Ws,
}

impl PusherClient {
    /// Connects to `ws://127.0.0.1:{port}/app/{key}`; answers the client and its socket id.
    pub(crate) async fn connect(port: u16, key: &str) -> (PusherClient, String) {
        let url =
            format!("ws://127.0.0.1:{port}/app/{key}?protocol=7&client=it&version=0.1&flash=false");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("pusher websocket");
        let mut client = PusherClient { ws };
        let established = client
            .next_raw(Duration::from_secs(5))
            .await
            .expect("connection_established");
        assert_eq!(established["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(
            established["data"]
                .as_str()
                .expect("connection_established data is a JSON string"),
        )
        .expect("connection_established data is JSON");
        let socket_id = data["socket_id"].as_str().expect("socket_id").to_owned();
        (client, socket_id)
    }

    /// Subscribes to `channel` (wire name) with an optional private-channel `auth`; answers the
    /// server's refusal (`pusher:subscription_error` or `pusher:error`) as `Err`.
    pub(crate) async fn try_subscribe(
        &mut self,
        channel: &str,
        auth: Option<&str>,
    ) -> Result<(), Value> {
        let mut data = json!({"channel": channel});
        if let Some(auth) = auth {
            data["auth"] = json!(auth);
        }
        let subscribe = json!({"event": "pusher:subscribe", "data": data});
        self.ws
            .send(Message::text(subscribe.to_string()))
            .await
            .expect("subscribe");
        loop {
            let msg = self
                .next_raw(Duration::from_secs(5))
                .await
                .expect("an answer to the subscription");
            match msg["event"].as_str() {
                Some("pusher_internal:subscription_succeeded") if msg["channel"] == channel => {
                    return Ok(())
                }
                Some("pusher:subscription_error" | "pusher:error") => return Err(msg),
                _ => {}
            }
        }
    }

    /// Connects and subscribes to the public `channel` (wire name).
    pub(crate) async fn subscribe(port: u16, key: &str, channel: &str) -> PusherClient {
        let (mut client, _) = PusherClient::connect(port, key).await;
        client
            .try_subscribe(channel, None)
            .await
            .expect("subscription_succeeded");
        client
    }

    /// Connects and subscribes to the private `channel` (wire name, `private-...`), signing the
    /// subscription here with the app secret, as a trusted backend would.
    pub(crate) async fn subscribe_signed(
        port: u16,
        key: &str,
        secret: &str,
        channel: &str,
    ) -> PusherClient {
        let (mut client, socket_id) = PusherClient::connect(port, key).await;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{socket_id}:{channel}").as_bytes());
        let auth = format!("{key}:{}", hex::encode(mac.finalize().into_bytes()));
        client
            .try_subscribe(channel, Some(&auth))
            .await
            .expect("subscription_succeeded");
        client
    }

    async fn next_raw(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(text) = frame {
                return serde_json::from_str(text.as_str()).ok();
            }
        }
    }

    /// The next non-protocol event, if one arrives within `within`.
    pub(crate) async fn next_event(&mut self, within: Duration) -> Option<PusherEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.next_raw(left).await?;
            let event = msg["event"].as_str().unwrap_or_default().to_owned();
            if event.starts_with("pusher") {
                continue;
            }
            return Some(PusherEvent {
                event,
                channel: msg["channel"].as_str().unwrap_or_default().to_owned(),
                data: msg["data"].clone(),
            });
        }
    }
}
