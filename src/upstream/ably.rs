//! The Ably adapter: REST publishing (`POST /channels/{name}/messages`, Basic auth, the event
//! id as the idempotent message `id`, fallback hosts after vendor-side failures) and the JSON
//! realtime WebSocket session the canary listens on (VENDORS.md §1, §2.2).
//!
//! On the wire (docs/protocol.md): channel name unchanged, message `id` = event id, `name` =
//! event name, `data` = the event JSON as a string.

pub mod classify;
pub mod client;
pub mod config;
pub mod realtime;
pub mod signing;
pub mod token_request;

pub use client::AblyVendor;
pub use config::AblyConfig;
