//! The JSON shapes on the wire, apart from the event frame the core serialises itself. This is the
//! only place request and message structs live; docs/protocol.md specifies them.

pub(crate) mod pusher_http;

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::{json, ChannelName, Epoch, Position, Published};

/// A publish request body, also one item of a batch. Its channels and name are read in place
/// from the body's bytes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishBody<'a> {
    #[serde(borrow)]
    pub channel: Option<Text<'a>>,
    #[serde(borrow)]
    pub channels: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    pub id: Option<String>,
    /// Vendor lane: `realtime` (default) or `bulk`.
    pub priority: Option<String>,
}

/// A JSON string borrowed from the body it was parsed from when it has no escapes (nearly
/// always), copied only when it has. Refuses what a `String` refuses, in the same words.
#[derive(Debug)]
pub(crate) struct Text<'a>(Cow<'a, str>);

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Self(Cow::Borrowed(s))
    }
}

impl Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        deserializer.deserialize_str(Visit).map(Text)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    pub events: Vec<Box<RawValue>>,
}

/// One channel's publish result. Serialised straight into the answer, so its fields are in the
/// order the answer has always had (alphabetical, as a `serde_json::Value` writes them).
/// The channel and epoch are the shared names, not copies.
#[derive(Debug, Serialize)]
pub(crate) struct PublishResult {
    #[serde(serialize_with = "channel_str")]
    pub channel: ChannelName,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    #[serde(serialize_with = "epoch_str")]
    pub epoch: Epoch,
    pub id: Arc<str>,
    pub seq: u64,
}

impl PublishResult {
    pub(crate) fn new(channel: &ChannelName, p: &Published) -> Self {
        Self {
            channel: channel.clone(),
            seq: p.seq,
            epoch: p.epoch.clone(),
            id: p.id.clone(),
            duplicate: p.duplicate,
        }
    }
}

fn channel_str<S: serde::Serializer>(c: &ChannelName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

fn epoch_str<S: serde::Serializer>(e: &Epoch, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(e.as_str())
}

impl PublishResult {
    /// Appends the result as its derived `Serialize` writes it (which batch answers use).
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"channel":"#);
        json::push_str(out, self.channel.as_str());
        if self.duplicate {
            out.extend_from_slice(br#","duplicate":true"#);
        }
        out.extend_from_slice(br#","epoch":"#);
        json::push_str(out, self.epoch.as_str());
        out.extend_from_slice(br#","id":"#);
        json::push_str(out, &self.id);
        out.extend_from_slice(br#","seq":"#);
        json::push_u64(out, self.seq);
        out.push(b'}');
    }
}

/// A publish's answer. A batch item is its `serde_json::Value`; the answer to a single publish
/// is written by hand ([`PublishAnswer::into_response`]), the same bytes for less than half the
/// instructions of a serde walk through axum's `Json`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum PublishAnswer {
    /// Sent as `channel`.
    One(PublishResult),
    /// Sent as `channels`: the id, and a result per channel.
    Many {
        id: Arc<str>,
        results: Vec<PublishResult>,
    },
}

impl PublishAnswer {
    /// As a batch item or the demo's backend want it.
    pub(crate) fn into_value(self) -> serde_json::Value {
        serde_json::to_value(self).expect("publish results serialise")
    }

    /// The answer's JSON, as the derived `Serialize` writes it.
    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(192);
        self.write_json(&mut out);
        out
    }

    /// Appends the answer's JSON, as the derived `Serialize` writes it.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Self::One(result) => result.write(out),
            Self::Many { id, results } => {
                out.extend_from_slice(br#"{"id":"#);
                json::push_str(out, id);
                out.extend_from_slice(br#","results":["#);
                for (i, result) in results.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    result.write(out);
                }
                out.extend_from_slice(b"]}");
            }
        }
    }

    /// `202 Accepted` with the answer as `application/json`.
    pub(crate) fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.to_json()));
        *response.status_mut() = StatusCode::ACCEPTED;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// A position as clients send and receive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WirePosition {
    pub epoch: String,
    pub seq: u64,
}

impl From<&Position> for WirePosition {
    fn from(p: &Position) -> Self {
        Self {
            epoch: p.epoch.to_string(),
            seq: p.seq,
        }
    }
}

/// What a WebSocket client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ClientMessage {
    Subscribe {
        channel: String,
        since: Option<WirePosition>,
    },
    Unsubscribe {
        channel: String,
    },
}

/// Control messages the server sends on WebSocket and SSE (events are the core's frames).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerMessage<'a> {
    Welcome {
        conn_id: &'a str,
        heartbeat_ms: u64,
    },
    Subscribed {
        channel: &'a str,
        epoch: &'a str,
        seq: u64,
    },
    Reset {
        channel: &'a str,
        epoch: &'a str,
        seq: u64,
        reason: &'static str,
    },
    Unsubscribed {
        channel: &'a str,
    },
    Heartbeat {
        ts: u64,
    },
    Reconnect {
        reason: &'static str,
        retry_ms: u64,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
    },
}

impl ServerMessage<'_> {
    pub(crate) fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("server messages serialise"))
    }
}

/// A poll request body for several channels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PollBody {
    pub channels: Vec<PollItem>,
    pub limit: Option<usize>,
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PollItem {
    pub channel: String,
    pub epoch: Option<String>,
    pub since: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(channel: &str, id: &str, duplicate: bool) -> PublishResult {
        PublishResult {
            channel: ChannelName::parse(channel).unwrap(),
            duplicate,
            epoch: Epoch::from_client("e\"1"),
            id: Arc::from(id),
            seq: u64::MAX,
        }
    }

    #[test]
    fn a_body_s_names_are_read_in_place_unless_escaped() {
        let body: PublishBody =
            serde_json::from_slice(br#"{"channel":"a\"b","name":"n"}"#).unwrap();
        assert!(matches!(body.name.0, Cow::Borrowed("n")));
        assert!(matches!(body.channel.unwrap().0, Cow::Owned(ref c) if c == "a\"b"));
        for bad in [
            r#"{"channel":5,"name":"n"}"#,
            r#"{"channels":[null],"name":"n"}"#,
        ] {
            let text = serde_json::from_str::<PublishBody>(bad)
                .unwrap_err()
                .to_string();
            let string = serde_json::from_str::<Owned>(bad).unwrap_err().to_string();
            assert_eq!(text, string);
        }
    }

    /// The body as it was parsed before, owning its strings: the wording of errors to match.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Owned {
        channel: Option<String>,
        channels: Option<Vec<String>>,
        name: String,
    }

    #[test]
    fn answers_are_written_as_serde_json_writes_them() {
        let answers = [
            PublishAnswer::One(result("c", "0123456789abcdef", false)),
            PublishAnswer::One(result("c", "my-id", true)),
            PublishAnswer::Many {
                id: Arc::from("tab\there"),
                results: vec![result("a", "x", false), result("b", "x", true)],
            },
        ];
        for answer in answers {
            let want = serde_json::to_vec(&answer).unwrap();
            assert_eq!(
                String::from_utf8(answer.to_json()).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }
}
