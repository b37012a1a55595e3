//! The connection keys of `[server]`: read deadlines and connection caps, validated into
//! [`ConnectionLimits`]. A connection that sends nothing, or sends a byte a second, must not hold
//! a descriptor for long; a flood of them must not take the descriptors the node needs to answer
//! everyone else; a storm of reconnecting subscribers must not starve the publish path.

use std::time::Duration;

/// The `[server]` connection keys as written.
pub(super) struct RawConnections {
    pub(super) header_read_timeout_ms: u64,
    pub(super) body_read_timeout_ms: u64,
    pub(super) max_connections: usize,
    pub(super) max_connections_per_address: usize,
    pub(super) admin_max_connections: usize,
    pub(super) max_new_subscribers_per_second: u32,
    pub(super) new_subscribers_burst: u32,
    pub(super) reconnect_later_jitter_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A whole request head must arrive within this, counted from the accept and again from the
    /// end of each response: it is also how long a kept-alive connection may sit idle.
    pub header_read_timeout: Duration,
    /// A whole request body must arrive within this, counted from its first read.
    pub body_read_timeout: Duration,
    /// Open connections on the public listener, as configured (the descriptor limit may lower
    /// the cap in force: see `transport::admission`).
    pub max_connections: usize,
    /// Open connections from one client address on the public listener; 0: no per-address cap
    /// (behind a proxy every client shares its address).
    pub max_connections_per_address: usize,
    /// Open connections on the admin listener, counted apart so that a flood of public
    /// connections never keeps `/readyz` and `/metrics` from answering.
    pub admin_max_connections: usize,
    /// New WebSocket and SSE subscribers admitted per second on the public listener, the rest
    /// told to come back later (`503 reconnect_later`). Read at each admission: a reload applies
    /// at once.
    pub new_subscribers: RateLimit,
}

/// Longest deadline accepted: beyond an hour a deadline protects nothing.
const MAX_DEADLINE_MS: u64 = 3_600_000;
/// Widest retry window accepted for a refused subscriber.
const MAX_JITTER_MS: u64 = 60_000;

pub(super) fn validate(raw: RawConnections, errs: &mut Vec<String>) -> ConnectionLimits {
    for (key, v) in [
        ("server.header_read_timeout_ms", raw.header_read_timeout_ms),
        ("server.body_read_timeout_ms", raw.body_read_timeout_ms),
    ] {
        if !(1..=MAX_DEADLINE_MS).contains(&v) {
            errs.push(format!(
                "{key} = {v} must be between 1 and {MAX_DEADLINE_MS}: without a deadline an idle connection holds its descriptor for ever"
            ));
        }
    }
    for (key, v) in [
        ("server.max_connections", raw.max_connections),
        ("server.admin_max_connections", raw.admin_max_connections),
    ] {
        if v == 0 {
            errs.push(format!("{key} must be greater than 0"));
        }
    }
    if raw.max_connections_per_address > raw.max_connections {
        errs.push(format!(
            "server.max_connections_per_address ({}) must not exceed server.max_connections ({}); 0 turns it off",
            raw.max_connections_per_address, raw.max_connections
        ));
    }
    if raw.max_new_subscribers_per_second > 0 && raw.new_subscribers_burst == 0 {
        errs.push(
            "server.new_subscribers_burst must be at least 1 while server.max_new_subscribers_per_second is set: with no room in the bucket nobody is admitted".into(),
        );
    }
    if raw.reconnect_later_jitter_ms > MAX_JITTER_MS {
        errs.push(format!(
            "server.reconnect_later_jitter_ms = {} must be at most {MAX_JITTER_MS}: clients told to wait longer than a minute look like an outage",
            raw.reconnect_later_jitter_ms
        ));
    }
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(raw.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(raw.body_read_timeout_ms),
        max_connections: raw.max_connections,
        max_connections_per_address: raw.max_connections_per_address,
        admin_max_connections: raw.admin_max_connections,
        new_subscribers: RateLimit {
            per_second: raw.max_new_subscribers_per_second,
            burst: raw.new_subscribers_burst,
            jitter: Duration::from_millis(raw.reconnect_later_jitter_ms),
        },
    }
}

/// `[server]` settings of the bucket, read at each admission so that a reload applies at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// New subscriber connections admitted per second, sustained; 0: no limit.
    pub per_second: u32,
    /// How many may be admitted at once after a quiet spell (the bucket's size); at least 1.
    pub burst: u32,
    /// A refused client is told to wait until the next token plus a uniform draw in
    /// `[0, jitter)`; zero in tests so waits are exact.
    pub jitter: Duration,
}

impl RateLimit {
    pub fn enabled(&self) -> bool {
        self.per_second > 0
    }
}
