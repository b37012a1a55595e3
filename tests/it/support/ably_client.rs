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
        let mut client = AblyClient::connect(port, ("key", key))
            .await
            .expect("CONNECTED");
        client.try_attach(channel).await.expect("ATTACHED");
        client
    }

    /// Opens a realtime connection with one credential parameter (`key` or `accessToken`);
    /// answers the server's refusal (ERROR, DISCONNECTED, or a close) as `Err`.
    pub(crate) async fn connect(port: u16, credential: (&str, &str)) -> Result<AblyClient, Value> {
        let mut url = url::Url::parse(&format!("ws://127.0.0.1:{port}/")).expect("url");
        if !credential.0.is_empty() {
            url.query_pairs_mut()
                .append_pair(credential.0, credential.1);
        }
        url.query_pairs_mut()
            .append_pair("format", "json")
            .append_pair("v", "6");
        let ws = match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => ws,
            Err(e) => return Err(json!({"handshake": e.to_string()})),
        };
        let mut client = AblyClient { ws };
        loop {
            let Some(msg) = client.next_raw(Duration::from_secs(5)).await else {
                return Err(json!({"closed": "no CONNECTED"}));
            };
            match msg["action"].as_u64() {
                Some(4) => return Ok(client),
                Some(6 | 8 | 9) => return Err(msg),
                _ => {}
            }
        }
    }

    /// Attaches `channel`; answers a refusal (ERROR or DETACHED with an error) as `Err`.
    pub(crate) async fn try_attach(&mut self, channel: &str) -> Result<(), Value> {
        self.ws
            .send(Message::text(
                json!({"action": 10, "channel": channel}).to_string(),
            ))
            .await
            .expect("attach");
        loop {
            let Some(msg) = self.next_raw(Duration::from_secs(5)).await else {
                return Err(json!({"closed": "no ATTACHED"}));
            };
            match msg["action"].as_u64() {
                Some(11) if msg["channel"] == channel => return Ok(()),
                Some(9 | 13) => return Err(msg),
                _ => {}
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
