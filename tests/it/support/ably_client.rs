//! An independent Ably realtime JSON WebSocket client (not the library's canary code), to check
//! what subscribers really receive.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) struct AblyClient {
    ws: Ws,
}

impl AblyClient {
    /// Connects with `key` (`name:secret`) and attaches `channel`.
    pub(crate) async fn attach(port: u16, key: &str, channel: &str) -> AblyClient {
        let mut url = url::Url::parse(&format!("ws://127.0.0.1:{port}/")).expect("url");
        url.query_pairs_mut()
            .append_pair("key", key)
            .append_pair("format", "json")
            .append_pair("v", "6");
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("ably websocket");
        let mut client = AblyClient { ws };
        loop {
            let msg = client
                .next_raw(Duration::from_secs(5))
                .await
                .expect("CONNECTED");
            if msg["action"] == 4 {
                break;
            }
        }
        client
            .ws
            .send(Message::text(
                json!({"action": 10, "channel": channel}).to_string(),
            ))
            .await
            .expect("attach");
        loop {
            let msg = client
                .next_raw(Duration::from_secs(5))
                .await
                .expect("ATTACHED");
            if msg["action"] == 11 && msg["channel"] == channel {
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

    /// The messages of the next MESSAGE (15) frame, if one arrives within `within`.
    pub(crate) async fn next_messages(&mut self, within: Duration) -> Option<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.next_raw(left).await?;
            if msg["action"] == 15 {
                return msg["messages"].as_array().cloned();
            }
        }
    }
}
