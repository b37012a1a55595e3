//! The generic signed-webhook adapter, for teams whose vendor is something else: every event is
//! `POST`ed to one URL as its JSON body (the same bytes understudy's own transports send), with
//!
//! - `Content-Type: application/json`
//! - `X-Understudy-Signature: sha256=<hex HMAC-SHA256(secret, body)>`
//! - `X-Understudy-Timestamp: <unix seconds>` (informational; not covered by the signature)
//! - `X-Understudy-Event-Id: <event id>` and `X-Understudy-Channel: <channel>`
//!
//! A receiver verifies the signature over the raw body, compares in constant time, and dedupes
//! on the event id (a time-out is retried once and may duplicate). The webhook has no realtime
//! side, so it has no canary; its health comes from its requests alone.

pub(crate) mod classify;
pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod signing;

pub(crate) use client::WebhookVendor;
pub(crate) use config::WebhookConfig;

/// Header carrying `sha256=<hex>`.
pub(crate) const SIGNATURE_HEADER: &str = "X-Understudy-Signature";
/// Header carrying the send time in Unix seconds.
pub(crate) const TIMESTAMP_HEADER: &str = "X-Understudy-Timestamp";
/// Header carrying the event id.
pub(crate) const EVENT_ID_HEADER: &str = "X-Understudy-Event-Id";
/// Header carrying the understudy channel name.
pub(crate) const CHANNEL_HEADER: &str = "X-Understudy-Channel";
