//! The bodies of the Pusher HTTP API ingress (`POST /apps/{app_id}/events` and
//! `/batch_events`), as the Pusher server SDKs send them. Fields Pusher defines and understudy
//! does not use are ignored, as Pusher ignores them, so a newer SDK keeps working.

use serde::Deserialize;
use serde_json::value::RawValue;

/// One Pusher event: the `/events` body, and one item of a batch.
#[derive(Debug, Deserialize)]
pub(crate) struct PusherTrigger {
    pub name: String,
    /// A JSON string (the SDKs encode objects first); anything else is refused.
    pub data: Box<RawValue>,
    pub channel: Option<String>,
    pub channels: Option<Vec<String>>,
    /// A Pusher-protocol connection (`\d+\.\d+`) that must not receive the event.
    pub socket_id: Option<String>,
    /// Comma-separated attributes to answer per channel (`subscription_count`).
    pub info: Option<String>,
}

/// The `/batch_events` body.
#[derive(Debug, Deserialize)]
pub(crate) struct PusherBatch {
    pub batch: Vec<PusherTrigger>,
}
