//! The JSON of Pusher protocol 7 as `/app/{key}` speaks it: what pusher-js sends (subscribe,
//! unsubscribe, ping, pong, client events) and what it is sent (connection_established,
//! subscription_succeeded, events, ping, pong, errors). docs/protocol.md specifies it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::Event;

/// Pusher error codes (<https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#error-codes>).
/// 4000 to 4099 tell pusher-js not to reconnect, 4100 to 4199 to reconnect after a back-off,
/// 4200 to 4299 to reconnect at once.
pub(crate) mod code {
    /// The app key names no `[[apps]]` entry.
    pub(crate) const APP_NOT_FOUND: u16 = 4001;
    /// The client asked for a protocol version this server does not speak.
    pub(crate) const UNSUPPORTED_PROTOCOL: u16 = 4007;
    /// The client did not say which protocol version it speaks.
    pub(crate) const NO_PROTOCOL: u16 = 4008;
    /// A subscription was refused: a bad or missing channel authorisation, or a channel kind
    /// understudy does not serve.
    pub(crate) const UNAUTHORIZED: u16 = 4009;
    /// The connection fell behind (a slow consumer): reconnect after a back-off.
    pub(crate) const OVER_CAPACITY: u16 = 4100;
    /// Reconnect now (server restart or drain).
    pub(crate) const RECONNECT: u16 = 4200;
    /// The client did not answer a ping.
    pub(crate) const PONG_NOT_RECEIVED: u16 = 4201;
    /// A client event was refused.
    pub(crate) const CLIENT_EVENT_REJECTED: u16 = 4301;
}

/// A message from the client, before its `data` is looked at.
#[derive(Debug, Deserialize)]
pub(crate) struct ClientFrame<'a> {
    #[serde(borrow)]
    pub(crate) event: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(crate) channel: Option<std::borrow::Cow<'a, str>>,
}

/// `pusher:subscribe` and `pusher:unsubscribe` data. pusher-js sends it as an object; some
/// clients send it as a JSON string holding the object, which is read the same way.
#[derive(Debug, Deserialize)]
pub(crate) struct SubscribeData {
    pub(crate) channel: String,
    #[serde(default)]
    pub(crate) auth: Option<String>,
}

impl SubscribeData {
    pub(crate) fn parse(data: Option<&RawValue>) -> Result<Self, String> {
        let raw = data.ok_or("the message has no data")?;
        match serde_json::from_str::<Self>(raw.get()) {
            Ok(d) => Ok(d),
            Err(e) => match serde_json::from_str::<String>(raw.get()) {
                Ok(inner) => serde_json::from_str(&inner).map_err(|e| e.to_string()),
                Err(_) => Err(e.to_string()),
            },
        }
    }
}

/// A server message whose `data` is a JSON string, as Pusher sends its own events.
#[derive(Serialize)]
struct Outgoing<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a str,
}

fn encode(event: &str, channel: Option<&str>, data: &str) -> Bytes {
    let msg = Outgoing {
        event,
        channel,
        data,
    };
    Bytes::from(serde_json::to_vec(&msg).expect("strings serialise"))
}

/// The first message: the socket id pusher-js signs private channels with, and how long it may
/// stay quiet before it pings.
pub(crate) fn connection_established(socket_id: &str, activity_timeout_s: u64) -> Bytes {
    let data = serde_json::json!({
        "socket_id": socket_id,
        "activity_timeout": activity_timeout_s,
    });
    encode("pusher:connection_established", None, &data.to_string())
}

pub(crate) fn subscription_succeeded(channel: &str) -> Bytes {
    encode(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        "{}",
    )
}

pub(crate) fn ping() -> Bytes {
    encode("pusher:ping", None, "{}")
}

pub(crate) fn pong() -> Bytes {
    encode("pusher:pong", None, "{}")
}

/// `pusher:error`, with the channel it concerns if any. Its data is an object, as Pusher sends
/// it; `code` is null for a message that is not understood (there is no Pusher code for it).
pub(crate) fn error(code: Option<u16>, message: &str, channel: Option<&str>) -> Bytes {
    #[derive(Serialize)]
    struct ErrorData<'a> {
        code: Option<u16>,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct ErrorMessage<'a> {
        event: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        data: ErrorData<'a>,
    }
    let msg = ErrorMessage {
        event: "pusher:error",
        channel,
        data: ErrorData { code, message },
    };
    Bytes::from(serde_json::to_vec(&msg).expect("strings serialise"))
}

/// The event as pusher-js receives it, serialised once per event and shared by every
/// `/app/{key}` socket. Pusher's `data` is a string: data published as a JSON string is sent as
/// that string; any other JSON value is sent as its JSON text, which is what Pusher itself sends
/// for an object handed to its server SDK.
pub(crate) fn event_frame(ev: &Event) -> Bytes {
    ev.pusher_frame.get_or_init(|| encode_event(ev)).clone()
}

fn encode_event(ev: &Event) -> Bytes {
    #[derive(Deserialize)]
    struct Stored<'a> {
        #[serde(borrow)]
        data: &'a RawValue,
    }
    let stored: Stored<'_> = serde_json::from_slice(&ev.frame)
        .expect("an event frame is the core's own JSON with a data field");
    let raw = stored.data.get();
    #[derive(Serialize)]
    struct Message<'a> {
        event: &'a str,
        channel: &'a str,
        data: &'a RawValue,
    }
    let text;
    let data: &RawValue = if raw.starts_with('"') {
        stored.data
    } else {
        text = RawValue::from_string(serde_json::to_string(raw).expect("a string serialises"))
            .expect("a serialised string is valid JSON");
        &text
    };
    let msg = Message {
        event: &ev.name,
        channel: ev.channel.as_str(),
        data,
    };
    Bytes::from(serde_json::to_vec(&msg).expect("an event serialises"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::{ChannelName, Epoch, EventDraft};

    fn event(data: &str) -> Event {
        let draft = EventDraft::new(
            Arc::from("checked-in"),
            RawValue::from_string(data.into()).unwrap(),
            None,
        );
        Event::build(
            ChannelName::parse("private-ward-3").unwrap(),
            1,
            Epoch::from_client("e"),
            &draft,
            Arc::from("id"),
            0,
            tokio::time::Instant::now(),
        )
    }

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn string_data_is_sent_unchanged_and_other_data_as_its_json_text() {
        assert_eq!(
            text(event_frame(&event(r#""{\"ticket\":\"A-17\"}""#))),
            r#"{"event":"checked-in","channel":"private-ward-3","data":"{\"ticket\":\"A-17\"}"}"#
        );
        assert_eq!(
            text(event_frame(&event(r#"{"ticket": "A-17"}"#))),
            r#"{"event":"checked-in","channel":"private-ward-3","data":"{\"ticket\": \"A-17\"}"}"#
        );
        assert_eq!(
            text(event_frame(&event("17"))),
            r#"{"event":"checked-in","channel":"private-ward-3","data":"17"}"#
        );
    }

    #[test]
    fn the_handshake_data_is_a_json_string() {
        let v: serde_json::Value =
            serde_json::from_slice(&connection_established("12.34", 30)).unwrap();
        assert_eq!(v["event"], "pusher:connection_established");
        let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"socket_id": "12.34", "activity_timeout": 30})
        );
    }

    #[test]
    fn subscribe_data_is_read_as_an_object_or_a_string_holding_one() {
        let object = RawValue::from_string(r#"{"channel":"a","auth":"k:s"}"#.into()).unwrap();
        let d = SubscribeData::parse(Some(&object)).unwrap();
        assert_eq!((d.channel.as_str(), d.auth.as_deref()), ("a", Some("k:s")));
        let string = RawValue::from_string(r#""{\"channel\":\"b\"}""#.into()).unwrap();
        assert_eq!(SubscribeData::parse(Some(&string)).unwrap().channel, "b");
        assert!(SubscribeData::parse(None).is_err());
        let bad = RawValue::from_string("[1]".into()).unwrap();
        assert!(SubscribeData::parse(Some(&bad)).is_err());
    }
}
