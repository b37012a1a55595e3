//! The JSON shapes on the wire, apart from the event frame the core serialises itself. This is the
//! only place request and message structs live; docs/protocol.md specifies them.

pub(crate) mod pusher_http;

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::{Position, Published};

/// A publish request body, also one item of a batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishBody {
    pub channel: Option<String>,
    pub channels: Option<Vec<String>>,
    pub name: String,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    pub id: Option<String>,
    /// Vendor lane: `realtime` (default) or `bulk`.
    pub priority: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    pub events: Vec<Box<RawValue>>,
}

/// One channel's publish result. Serialised straight into the answer, so its fields are in the
/// order the answer has always had (alphabetical, as a `serde_json::Value` writes them).
#[derive(Debug, Serialize)]
pub(crate) struct PublishResult {
    pub channel: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    pub epoch: String,
    pub id: Arc<str>,
    pub seq: u64,
}

impl PublishResult {
    pub(crate) fn new(channel: &str, p: &Published) -> Self {
        Self {
            channel: channel.to_string(),
            seq: p.seq,
            epoch: p.epoch.to_string(),
            id: p.id.clone(),
            duplicate: p.duplicate,
        }
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
