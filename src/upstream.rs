//! Forwarding events to realtime vendors: the [`Vendor`] trait every adapter implements, the
//! [`OutboundEvent`] the core hands over, and how a vendor is built from its configuration.
//!
//! Nothing here is on the publish path's critical section: the core calls
//! [`lanes::Lanes::enqueue`] (synchronous, never waits) and the lanes call [`Vendor::publish`] on
//! their own tasks, under their own time-outs.
//!
//! # Layout
//! - `error`: [`VendorError`], [`ErrorClass`], [`Party`], [`Retry`]: who failed and whether a
//!   retry is allowed.
//! - `secret`: [`Secret`], a credential whose `Debug` never prints it.
//! - `http`: [`http::HttpClient`], the pooled HTTP client with connect and request time-outs; it
//!   holds the side's TLS client configuration, which realtime sockets use too.
//! - `tls`: that configuration (platform roots plus `vendors.ca_file`) and
//!   [`tls::TlsProblem`], what a failed handshake means.
//! - `realtime`: the vendor's own WebSocket (for the canary): [`realtime::Arrival`],
//!   [`realtime::RealtimeError`], liveness settings.
//! - `config_url`: `pusher://`, `ably://` and `webhook+http(s)://` URLs into [`VendorConfig`].
//! - `pusher/`, `ably/`, `webhook/`: the adapters, each with `config`, `signing`, `client`,
//!   `classify` (and `realtime` where the vendor has a realtime protocol); Ably's
//!   `token_request` signs the TokenRequests subscribers exchange for tokens.
//! - `lanes`: per-vendor bounded queues per [`Priority`], in-flight limits, one retry under a
//!   global retry budget.

pub mod ably;
pub(crate) mod config_url;
pub(crate) mod error;
#[cfg(test)]
pub(crate) mod fake;
pub mod http;
pub mod lanes;
pub(crate) mod observation;
pub(crate) mod priority;
pub mod pusher;
pub mod realtime;
pub(crate) mod secret;
pub mod tls;
pub(crate) mod webhook;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;

pub use error::{ErrorClass, Party, Retry, VendorError};
pub use priority::Priority;
pub use secret::Secret;

use crate::tenant::id::TenantId;

/// Reserved channel of the vendor heartbeat (docs/protocol.md, "Route and the vendor path").
pub const HEARTBEAT_CHANNEL: &str = "understudy.heartbeat";
/// Event name of the vendor heartbeat.
pub const HEARTBEAT_EVENT: &str = "understudy.heartbeat";
/// Event name every forwarded event carries on Pusher.
pub const PUSHER_EVENT_NAME: &str = "understudy.event";
/// Ably message name of a signal; the publisher's event name stays home with the body.
pub const SIGNAL_EVENT: &str = "understudy.signal";
/// Default reserved channel of the canary.
pub const CANARY_CHANNEL: &str = "understudy.canary";
/// Event name of canary events.
pub const CANARY_EVENT: &str = "understudy.canary";

/// What an outbound event is, which decides its wire event name on vendors that need one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventKind {
    /// An event published to understudy (Pusher event name `understudy.event`).
    #[default]
    Event,
    /// The vendor heartbeat (`understudy.heartbeat`).
    Heartbeat,
    /// A canary probe (`understudy.canary`).
    Canary,
    /// An app's event forwarded as its publisher sent it (`[[apps]] forward = "as_published"`):
    /// the vendor receives the channel, event name and [`OutboundEvent::data`] unchanged, with no
    /// `private-` mapping and no `understudy.event` wrapper, as the publisher's SDK would have
    /// sent them to the vendor before understudy was put in front.
    AsPublished,
}

/// One event to forward to a vendor. The core builds it after sequencing the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundEvent {
    /// understudy channel name (`[A-Za-z0-9_.:@-]`); adapters map it to the vendor's rules.
    pub channel: String,
    /// The event name chosen by the publisher (Ably message `name`).
    pub name: String,
    /// The event's idempotency id (Ably message `id`, webhook `X-Understudy-Event-Id`).
    pub id: String,
    /// The event JSON exactly as understudy's own transports send it (valid UTF-8 JSON).
    pub frame: Bytes,
    pub priority: Priority,
    pub kind: EventKind,
    /// For [`EventKind::AsPublished`]: the event's `data` JSON exactly as published (a JSON
    /// string for Pusher events), which the Pusher and Ably adapters send instead of the frame.
    /// `None` for every other kind. Webhooks still receive the frame, which holds this data.
    pub data: Option<Bytes>,
    /// For [`EventKind::AsPublished`]: the Pusher `socket_id` the publisher asked to leave out,
    /// passed on to a Pusher vendor as the SDK would have.
    pub socket_id: Option<String>,
    /// The tenant that owns the channel: the lanes take turns between tenants, so one tenant's
    /// backlog never holds another's next event behind it.
    pub tenant: TenantId,
}

impl OutboundEvent {
    /// An ordinary event (kind [`EventKind::Event`]).
    pub fn new(
        channel: impl Into<String>,
        name: impl Into<String>,
        id: impl Into<String>,
        frame: Bytes,
        priority: Priority,
    ) -> Self {
        OutboundEvent {
            channel: channel.into(),
            name: name.into(),
            id: id.into(),
            frame,
            priority,
            kind: EventKind::Event,
            data: None,
            socket_id: None,
            tenant: TenantId::default(),
        }
    }

    /// This event, owned by `tenant`.
    pub fn for_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = tenant;
        self
    }

    /// An app's event as published ([`EventKind::AsPublished`]): `channel`, `name` and `data`
    /// (the data JSON as the publisher sent it) go to the vendor unchanged; `frame` is the event
    /// as understudy's own transports send it, for webhooks and the lanes' byte budget.
    pub fn as_published(
        channel: impl Into<String>,
        name: impl Into<String>,
        id: impl Into<String>,
        frame: Bytes,
        data: Bytes,
        socket_id: Option<String>,
        priority: Priority,
    ) -> Self {
        OutboundEvent {
            channel: channel.into(),
            name: name.into(),
            id: id.into(),
            frame,
            priority,
            kind: EventKind::AsPublished,
            data: Some(data),
            socket_id,
            tenant: TenantId::default(),
        }
    }

    /// A signal for a `vendors.signal_only` channel: `{"type":"signal","channel","epoch","seq",
    /// "id"}` and nothing else, so the event's name and data never leave understudy; clients
    /// fetch the body from history. It travels as an ordinary event (Pusher `understudy.event`),
    /// under the event's id so a vendor's de-duplication still works.
    pub fn signal(
        channel: &str,
        epoch: &str,
        seq: u64,
        id: impl Into<String>,
        priority: Priority,
    ) -> Self {
        let id = id.into();
        let frame = serde_json::json!({
            "type": "signal",
            "channel": channel,
            "epoch": epoch,
            "seq": seq,
            "id": id,
        });
        OutboundEvent {
            channel: channel.to_owned(),
            name: SIGNAL_EVENT.to_owned(),
            frame: Bytes::from(frame.to_string()),
            id,
            priority,
            kind: EventKind::Event,
            data: None,
            socket_id: None,
            tenant: TenantId::default(),
        }
    }

    /// The vendor heartbeat `{"type":"heartbeat","ts":..}` on [`HEARTBEAT_CHANNEL`].
    pub fn heartbeat(ts_ms: u64, id: impl Into<String>) -> Self {
        OutboundEvent {
            channel: HEARTBEAT_CHANNEL.to_owned(),
            name: HEARTBEAT_EVENT.to_owned(),
            id: id.into(),
            frame: Bytes::from(format!(r#"{{"type":"heartbeat","ts":{ts_ms}}}"#)),
            priority: Priority::Realtime,
            kind: EventKind::Heartbeat,
            data: None,
            socket_id: None,
            tenant: TenantId::default(),
        }
    }

    /// A canary probe `{"type":"canary","id":nonce,"ts":..}`; the nonce is also the event id.
    pub fn canary(channel: impl Into<String>, nonce: &str, ts_ms: u64) -> Self {
        OutboundEvent {
            channel: channel.into(),
            name: CANARY_EVENT.to_owned(),
            id: nonce.to_owned(),
            frame: Bytes::from(format!(
                r#"{{"type":"canary","id":"{nonce}","ts":{ts_ms}}}"#
            )),
            priority: Priority::Realtime,
            kind: EventKind::Canary,
            data: None,
            socket_id: None,
            tenant: TenantId::default(),
        }
    }

    /// The frame as text; the core guarantees it is UTF-8 JSON.
    pub(crate) fn frame_str(&self) -> Result<&str, VendorError> {
        std::str::from_utf8(&self.frame)
            .map_err(|_| VendorError::Internal("event frame is not UTF-8".into()))
    }

    /// The as-published data JSON as text, when this is an [`EventKind::AsPublished`] event.
    pub(crate) fn data_str(&self) -> Result<Option<&str>, VendorError> {
        match (&self.data, self.kind) {
            (Some(data), EventKind::AsPublished) => std::str::from_utf8(data)
                .map(Some)
                .map_err(|_| VendorError::Internal("event data is not UTF-8".into())),
            _ => Ok(None),
        }
    }

    /// Bytes this event holds, for the lanes' byte budget.
    pub fn size(&self) -> usize {
        self.frame.len() + self.data.as_ref().map_or(0, Bytes::len)
    }
}

/// Which protocol a vendor speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VendorKind {
    Pusher,
    Ably,
    Webhook,
}

impl VendorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VendorKind::Pusher => "pusher",
            VendorKind::Ably => "ably",
            VendorKind::Webhook => "webhook",
        }
    }
}

/// What a browser needs to open the vendor's SDK: public connection info only, never a secret.
/// This is the `vendor` object of `GET /v1/route`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublicInfo {
    pub kind: VendorKind,
    /// Pusher app key; Ably key name (the part before `:`, not a secret); `None` for webhooks.
    pub key: Option<String>,
    /// Realtime host the browser connects to.
    pub host: String,
    pub port: u16,
    pub tls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Subscribing needs a credential from `POST /v1/vendor/auth`: Pusher `private-` channels,
    /// and Ably always (it has no anonymous access).
    pub private: bool,
}

/// A realtime vendor behind one interface. Implemented by the Pusher, Ably and webhook adapters
/// (and by fakes in tests). Futures are boxed so the lanes can hold `Arc<dyn Vendor>`.
pub trait Vendor: Send + Sync + 'static {
    /// Operator-given name (`primary`, `pusher-eu`...), used in logs, metrics and status.
    fn name(&self) -> &str;

    fn kind(&self) -> VendorKind;

    /// Public connection info for clients.
    fn public_info(&self) -> PublicInfo;

    /// How many events one [`Vendor::publish`] call may carry.
    fn max_batch(&self) -> usize {
        1
    }

    /// Checks, before queueing, that the vendor can take this event at all (size, channel name).
    /// An event that fails here would fail its whole batch, so the lanes refuse it up front.
    fn check(&self, event: &OutboundEvent) -> Result<(), VendorError> {
        let _ = event;
        Ok(())
    }

    /// Sends `events` (at most [`Vendor::max_batch`]) in as few requests as the vendor allows.
    /// One attempt, no retry: retries and the overall deadline belong to the caller.
    fn publish<'a>(&'a self, events: &'a [OutboundEvent])
        -> BoxFuture<'a, Result<(), VendorError>>;

    /// Whether [`Vendor::listen`] is implemented (the vendor has a realtime protocol).
    fn has_realtime(&self) -> bool {
        false
    }

    /// One session on the vendor's own realtime connection, subscribed to `channel`: connects,
    /// subscribes, sends [`realtime::Arrival::Subscribed`], then one
    /// [`realtime::Arrival::Message`] per message on the channel, until the connection ends.
    /// Reconnecting is the caller's job.
    fn listen<'a>(
        &'a self,
        channel: &'a str,
        arrivals: mpsc::Sender<realtime::Arrival>,
    ) -> BoxFuture<'a, realtime::SessionEnd> {
        let _ = (channel, arrivals);
        Box::pin(async {
            realtime::SessionEnd {
                subscribed: false,
                error: realtime::RealtimeError::Unsupported,
            }
        })
    }
}

/// A vendor's configuration, one variant per adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VendorConfig {
    Pusher(pusher::PusherConfig),
    Ably(ably::AblyConfig),
    Webhook(webhook::WebhookConfig),
}

impl VendorConfig {
    pub fn name(&self) -> &str {
        match self {
            VendorConfig::Pusher(c) => &c.name,
            VendorConfig::Ably(c) => &c.name,
            VendorConfig::Webhook(c) => &c.name,
        }
    }

    /// The same vendor named `owner/name`: a tenant's own credentials, told apart from the
    /// shared vendors (and other tenants') in logs, metrics and status.
    pub fn owned_by(mut self, owner: &str) -> Self {
        let name = match &mut self {
            VendorConfig::Pusher(c) => &mut c.name,
            VendorConfig::Ably(c) => &mut c.name,
            VendorConfig::Webhook(c) => &mut c.name,
        };
        *name = format!("{owner}/{name}");
        self
    }

    pub fn kind(&self) -> VendorKind {
        match self {
            VendorConfig::Pusher(_) => VendorKind::Pusher,
            VendorConfig::Ably(_) => VendorKind::Ably,
            VendorConfig::Webhook(_) => VendorKind::Webhook,
        }
    }
}

/// Builds the adapter for `config`, sharing `http`'s connection pool.
pub fn build(
    config: &VendorConfig,
    http: &http::HttpClient,
    realtime: &realtime::RealtimeConfig,
) -> Result<Arc<dyn Vendor>, BuildError> {
    Ok(match config {
        VendorConfig::Pusher(c) => Arc::new(pusher::PusherVendor::new(
            c.clone(),
            http.clone(),
            realtime.clone(),
        )?),
        VendorConfig::Ably(c) => Arc::new(ably::AblyVendor::new(
            c.clone(),
            http.clone(),
            realtime.clone(),
        )?),
        VendorConfig::Webhook(c) => Arc::new(webhook::WebhookVendor::new(c.clone(), http.clone())),
    })
}

/// Why an adapter or its HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("building the vendor HTTP client: {0}")]
    HttpClient(String),
    #[error("building the vendor TLS configuration: {0}")]
    Tls(String),
    #[error("vendor {vendor}: invalid endpoint: {message}")]
    Endpoint { vendor: String, message: String },
}

/// Percent-encoding of one URL path segment: everything but RFC 3986 unreserved characters.
pub(crate) const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Milliseconds since the Unix epoch, for timestamps that go on the wire.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A random 16-hex-character id (canary nonces, heartbeat ids).
pub(crate) fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `tenant`'s own vendors, named `tenant/name`.
pub(crate) fn own_vendors(
    tenant: &crate::tenant::id::TenantId,
    vendors: &[VendorConfig],
) -> Vec<VendorConfig> {
    (vendors.iter())
        .map(|v| v.clone().owned_by(tenant.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_carries_the_position_and_id_and_nothing_else() {
        let s = OutboundEvent::signal("clinic-1", "e1", 7, "ev-7", Priority::Bulk);
        let frame: serde_json::Value = serde_json::from_slice(&s.frame).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({"type": "signal", "channel": "clinic-1", "epoch": "e1", "seq": 7, "id": "ev-7"})
        );
        assert_eq!((s.name.as_str(), s.id.as_str()), (SIGNAL_EVENT, "ev-7"));
        assert_eq!((s.kind, s.priority), (EventKind::Event, Priority::Bulk));
    }
}
