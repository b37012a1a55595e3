//! understudy
//!
//! # Layout
//! - `vendor`: forwarding to realtime vendors (Pusher, Ably, signed webhook) on bounded lanes.
//! - `failover`: vendor health, the failover state machine, operator mode and the route.

pub mod failover;
pub mod vendor;
