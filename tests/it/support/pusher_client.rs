//! An independent Pusher WebSocket protocol 7 client (not the library's canary code), to check
//! what subscribers really receive.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
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
    /// Connects to `ws://127.0.0.1:{port}/app/{key}` and subscribes to `channel` (wire name).
    pub(crate) async fn subscribe(port: u16, key: &str, channel: &str) -> PusherClient {
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
        assert!(
            established["data"].is_string(),
            "connection_established data is a JSON string"
        );
        let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
        client
            .ws
            .send(Message::text(subscribe.to_string()))
            .await
            .expect("subscribe");
        loop {
            let msg = client
                .next_raw(Duration::from_secs(5))
                .await
                .expect("subscription_succeeded");
            if msg["event"] == "pusher_internal:subscription_succeeded" && msg["channel"] == channel
            {
                return client;
            }
        }
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
