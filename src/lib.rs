//! understudy: a realtime push fallback proxy.
//!
//! Backends publish over HTTP; understudy sequences every event per channel, keeps a bounded
//! history, and delivers through its own WebSocket, SSE and polling transports, so a client can
//! switch transport and resume with nothing lost and nothing duplicated.
//!
//! # Layout
//! - [`core`]: channel names, events, sequencing, epochs, history, idempotency, cursors, registry.
//!   Plain Rust, no sockets.
//! - [`vendor`]: forwarding to realtime vendors (Pusher, Ably, signed webhook) on bounded lanes.
//! - [`failover`]: vendor health, the failover state machine, operator mode and the route.
//! - [`web`]: the clinic demo served under `/demo` when `demo.enabled` (pages embedded from
//!   `src/web/demo/`, and the demo's small backend). The browser client `src/web/understudy.js`
//!   is served by [`transport`].

pub mod app;
pub mod auth;
pub mod config;
pub mod core;
pub mod failover;
pub mod lifecycle;
pub mod ops;
pub mod telemetry;
pub mod transport;
pub mod vendor;
pub mod web;

pub use app::{bind, App, AppState, Listeners};
pub use config::Config;
