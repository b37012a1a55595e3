//! One Ably realtime WebSocket session, JSON protocol (VENDORS.md §2.2): wait for CONNECTED (4),
//! ATTACH (10) the channel, wait for ATTACHED (11), then report every MESSAGE (15) on it.
//! Re-attaches on DETACHED (13); ends on ERROR (9), DISCONNECTED (6) or CLOSED (8). After
//! silence it sends a HEARTBEAT (0), which the server echoes.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::upstream::realtime::{
    report, Arrival, Next, RealtimeConfig, RealtimeError, SessionEnd, Socket,
};

const HEARTBEAT: u64 = 0;
const CONNECTED: u64 = 4;
const DISCONNECTED: u64 = 6;
const CLOSED: u64 = 8;
const ERROR: u64 = 9;
const ATTACH: u64 = 10;
const ATTACHED: u64 = 11;
const DETACHED: u64 = 13;
const MESSAGE: u64 = 15;

/// Runs one session until the connection ends.
pub(crate) async fn session(
    url: &url::Url,
    tls: &Arc<rustls::ClientConfig>,
    channel: &str,
    config: &RealtimeConfig,
    arrivals: mpsc::Sender<Arrival>,
) -> SessionEnd {
    let mut subscribed = false;
    let error = match run(url, tls, channel, config, &arrivals, &mut subscribed).await {
        Ok(never) => match never {},
        Err(error) => error,
    };
    SessionEnd { subscribed, error }
}

async fn run(
    url: &url::Url,
    tls: &Arc<rustls::ClientConfig>,
    channel: &str,
    config: &RealtimeConfig,
    arrivals: &mpsc::Sender<Arrival>,
    subscribed: &mut bool,
) -> Result<Infallible, RealtimeError> {
    let until = Instant::now() + config.handshake_timeout;
    let mut socket = Socket::connect(url, tls, until).await?;
    let attach = json!({"action": ATTACH, "channel": channel}).to_string();
    let result = async {
        loop {
            let text = socket
                .text_until(until)
                .await?
                .ok_or(RealtimeError::HandshakeTimeout("CONNECTED"))?;
            let msg: Value = parse(&text)?;
            match action(&msg) {
                CONNECTED => break,
                ERROR | DISCONNECTED | CLOSED => return Err(error_of(&msg)),
                _ => {}
            }
        }
        socket.send_text(attach.clone()).await?;
        loop {
            let text = socket
                .text_until(until)
                .await?
                .ok_or(RealtimeError::HandshakeTimeout("ATTACHED"))?;
            let msg = parse(&text)?;
            match action(&msg) {
                ATTACHED if on_channel(&msg, channel) => break,
                ERROR | DISCONNECTED | CLOSED | DETACHED => return Err(error_of(&msg)),
                _ => {}
            }
        }
        *subscribed = true;
        report(arrivals, Arrival::Subscribed).await?;
        let mut heartbeat = 0u64;
        loop {
            let text = match socket.next(config).await? {
                Next::PingDue => {
                    heartbeat += 1;
                    socket
                        .send_text(
                            json!({"action": HEARTBEAT, "id": heartbeat.to_string()}).to_string(),
                        )
                        .await?;
                    socket.ping_sent();
                    continue;
                }
                Next::Text(text) => text,
            };
            let at = Instant::now();
            let msg = parse(&text)?;
            match action(&msg) {
                MESSAGE if on_channel(&msg, channel) => {
                    for id in message_ids(&msg) {
                        report(arrivals, Arrival::Message { id, at }).await?;
                    }
                }
                DETACHED if on_channel(&msg, channel) => socket.send_text(attach.clone()).await?,
                ERROR if !msg.get("channel").is_some_and(Value::is_string) => {
                    return Err(error_of(&msg))
                }
                ERROR => return Err(error_of(&msg)),
                DISCONNECTED | CLOSED => return Err(error_of(&msg)),
                _ => {}
            }
        }
    }
    .await;
    socket.close().await;
    result
}

fn parse(text: &str) -> Result<Value, RealtimeError> {
    serde_json::from_str(text).map_err(|e| RealtimeError::Protocol(format!("not JSON: {e}")))
}

fn action(msg: &Value) -> u64 {
    msg.get("action")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

fn on_channel(msg: &Value, channel: &str) -> bool {
    msg.get("channel").and_then(Value::as_str) == Some(channel)
}

/// Each message's `id`, or the `id` field of its JSON `data` when the id is missing.
fn message_ids(msg: &Value) -> Vec<String> {
    let Some(messages) = msg.get("messages").and_then(Value::as_array) else {
        return Vec::new();
    };
    messages
        .iter()
        .filter_map(|m| {
            if let Some(id) = m.get("id").and_then(Value::as_str) {
                return Some(id.to_owned());
            }
            let data = m.get("data")?;
            let inner: Value = match data {
                Value::String(s) => serde_json::from_str(s).ok()?,
                other => other.clone(),
            };
            inner.get("id").and_then(Value::as_str).map(str::to_owned)
        })
        .collect()
}

/// The error a protocol message carries: 401xx/403xx refusals cannot be fixed by reconnecting.
fn error_of(msg: &Value) -> RealtimeError {
    let error = msg.get("error");
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("connection ended by the vendor")
        .to_owned();
    match u32::try_from(code) {
        Ok(code @ (40100..=40139 | 40150..=40199 | 40300..=40399)) => {
            RealtimeError::Refused { code, message }
        }
        _ => RealtimeError::Closed {
            code: 1000,
            reason: format!("action {} code {code}: {message}", action(msg)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_prefer_the_message_id() {
        let msg = json!({"action": 15, "channel": "c", "messages": [
            {"id": "n1", "data": "{\"id\":\"other\"}"},
            {"data": "{\"id\":\"n2\"}"},
            {"data": "plain"}
        ]});
        assert_eq!(message_ids(&msg), vec!["n1".to_owned(), "n2".to_owned()]);
    }

    #[test]
    fn credential_errors_are_refusals() {
        let bad_key = json!({"action": 9, "error": {"code": 40101, "statusCode": 401, "message": "Invalid credentials"}});
        assert!(error_of(&bad_key).is_fatal());
        let expired = json!({"action": 6, "error": {"code": 40142, "message": "Token expired"}});
        assert!(!error_of(&expired).is_fatal());
        assert!(!error_of(&json!({"action": 6})).is_fatal());
    }
}
