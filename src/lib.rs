//! understudy: a realtime push fallback proxy.
//!
//! Backends publish over HTTP; understudy sequences every event per channel, keeps a bounded
//! history, and delivers through its own WebSocket, SSE and polling transports, so a client can
//! switch transport and resume with nothing lost and nothing duplicated.
//!
//! # Layout
//! - [`core`]: channel names, events, sequencing, epochs, history, idempotency, cursors, registry.
//!   Plain Rust, no sockets.

pub mod config;
pub mod core;
