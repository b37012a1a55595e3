//! One Pusher WebSocket protocol 7 session (VENDORS.md §3.3): wait for
//! `pusher:connection_established` (its `data` is a JSON string holding the `socket_id`),
//! `pusher:subscribe` to the channel (a private one with an `auth` the session signs itself
//! from the app secret), wait for `pusher_internal:subscription_succeeded`, then report every
//! event on the channel. Answers `pusher:ping`, sends `pusher:ping` after silence.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{signing, wire_channel};
use crate::upstream::realtime::{
    report, Arrival, Next, RealtimeConfig, RealtimeError, SessionEnd, Socket,
};
use crate::upstream::Secret;

/// The app key and secret that sign a private-channel subscription; `None` for public channels.
pub(crate) type Signer<'a> = Option<(&'a str, &'a Secret)>;

/// Runs one session until the connection ends.
pub(crate) async fn session(
    url: &url::Url,
    tls: &Arc<rustls::ClientConfig>,
    channel: &str,
    signer: Signer<'_>,
    config: &RealtimeConfig,
    arrivals: mpsc::Sender<Arrival>,
) -> SessionEnd {
    let mut subscribed = false;
    let error = match run(
        url,
        tls,
        &wire_channel(channel, signer.is_some()),
        signer,
        config,
        &arrivals,
        &mut subscribed,
    )
    .await
    {
        Ok(never) => match never {},
        // Close codes 4000-4099: "don't reconnect" (bad app, disabled, over quota...).
        Err(RealtimeError::Closed {
            code: code @ 4000..=4099,
            reason,
        }) => RealtimeError::Refused {
            code: u32::from(code),
            message: reason,
        },
        Err(error) => error,
    };
    SessionEnd { subscribed, error }
}

async fn run(
    url: &url::Url,
    tls: &Arc<rustls::ClientConfig>,
    channel: &str,
    signer: Signer<'_>,
    config: &RealtimeConfig,
    arrivals: &mpsc::Sender<Arrival>,
    subscribed: &mut bool,
) -> Result<Infallible, RealtimeError> {
    let until = Instant::now() + config.handshake_timeout;
    let mut socket = Socket::connect(url, tls, until).await?;
    let result = async {
        // connection_established
        let socket_id = loop {
            let text = socket
                .text_until(until)
                .await?
                .ok_or(RealtimeError::HandshakeTimeout(
                    "pusher:connection_established",
                ))?;
            let msg = parse(&text)?;
            match msg.event.as_str() {
                "pusher:connection_established" => break socket_id_of(&msg.data)?,
                "pusher:error" => return Err(error_of(&msg.data)),
                _ => {}
            }
        };
        let subscribe = match signer {
            Some((key, secret)) => {
                let auth = signing::channel_auth(key, secret, &socket_id, channel);
                json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}})
            }
            None => json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
        };
        socket.send_text(subscribe.to_string()).await?;
        loop {
            let text = socket
                .text_until(until)
                .await?
                .ok_or(RealtimeError::HandshakeTimeout(
                    "pusher_internal:subscription_succeeded",
                ))?;
            let msg = parse(&text)?;
            match msg.event.as_str() {
                "pusher_internal:subscription_succeeded"
                    if msg.channel.as_deref() == Some(channel) =>
                {
                    break
                }
                "pusher:error" => return Err(error_of(&msg.data)),
                "pusher:ping" => socket.send_text(pong()).await?,
                _ => {}
            }
        }
        *subscribed = true;
        report(arrivals, Arrival::Subscribed).await?;
        loop {
            let text = match socket.next(config).await? {
                Next::PingDue => {
                    socket
                        .send_text(json!({"event": "pusher:ping", "data": {}}).to_string())
                        .await?;
                    socket.ping_sent();
                    continue;
                }
                Next::Text(text) => text,
            };
            let at = Instant::now();
            let msg = parse(&text)?;
            match msg.event.as_str() {
                "pusher:ping" => socket.send_text(pong()).await?,
                "pusher:error" => return Err(error_of(&msg.data)),
                _ if msg.channel.as_deref() == Some(channel)
                    && !msg.event.starts_with("pusher") =>
                {
                    if let Some(id) = data_id(&msg.data) {
                        report(arrivals, Arrival::Message { id, at }).await?;
                    }
                }
                _ => {}
            }
        }
    }
    .await;
    socket.close().await;
    result
}

/// A Pusher protocol message.
struct Msg {
    event: String,
    channel: Option<String>,
    data: Value,
}

fn parse(text: &str) -> Result<Msg, RealtimeError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| RealtimeError::Protocol(format!("not JSON: {e}")))?;
    let event = value
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| RealtimeError::Protocol("message without an event".into()))?
        .to_owned();
    let channel = value
        .get("channel")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let data = value.get("data").cloned().unwrap_or(Value::Null);
    Ok(Msg {
        event,
        channel,
        data,
    })
}

/// The `socket_id` of `pusher:connection_established` (its data is a JSON string).
fn socket_id_of(data: &Value) -> Result<String, RealtimeError> {
    let data = match data {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    data.get("socket_id")
        .and_then(Value::as_str)
        .filter(|id| signing::is_socket_id(id))
        .map(str::to_owned)
        .ok_or_else(|| {
            RealtimeError::Protocol("pusher:connection_established without a socket_id".into())
        })
}

fn pong() -> String {
    json!({"event": "pusher:pong", "data": {}}).to_string()
}

/// The `id` inside an event's data (a JSON string holding the event JSON).
fn data_id(data: &Value) -> Option<String> {
    let inner: Value = match data {
        Value::String(s) => serde_json::from_str(s).ok()?,
        other => other.clone(),
    };
    inner.get("id").and_then(Value::as_str).map(str::to_owned)
}

/// `pusher:error` data (an object or a JSON string): 4000-4099 means do not reconnect.
fn error_of(data: &Value) -> RealtimeError {
    let data = match data {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let code = data.get("code").and_then(Value::as_u64).unwrap_or(0);
    let message = data
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("pusher:error")
        .to_owned();
    match u32::try_from(code) {
        Ok(code @ 4000..=4099) => RealtimeError::Refused { code, message },
        _ => RealtimeError::Closed {
            code: u16::try_from(code).unwrap_or(0),
            reason: message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_id_reads_the_event_json_string() {
        assert_eq!(
            data_id(&json!("{\"id\":\"n1\",\"type\":\"canary\"}")),
            Some("n1".into())
        );
        assert_eq!(data_id(&json!({"id": "n2"})), Some("n2".into()));
        assert_eq!(data_id(&json!("not json")), None);
    }

    #[test]
    fn errors_in_4000_range_are_refusals() {
        assert!(error_of(&json!({"code": 4001, "message": "App does not exist"})).is_fatal());
        assert!(error_of(&json!("{\"code\":4009,\"message\":\"x\"}")).is_fatal());
        assert!(!error_of(&json!({"code": 4201, "message": "Pong reply not received"})).is_fatal());
    }

    #[test]
    fn established_data_is_a_string() {
        let msg = parse(r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#).unwrap();
        assert_eq!(msg.event, "pusher:connection_established");
        assert!(msg.data.is_string());
        assert_eq!(socket_id_of(&msg.data).unwrap(), "1.2");
        assert!(socket_id_of(&json!("{}")).is_err());
    }
}
