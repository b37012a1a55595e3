//! The Pusher Channels adapter: HTTP API publishing (`/events`, `/batch_events`, signed per
//! VENDORS.md §3.1) and the WebSocket protocol 7 session the canary listens on. Works with
//! Pusher's cloud and with any Pusher-compatible server (sockudo, soketi).
//!
//! On the wire (docs/protocol.md, "Events through the vendor"): channel with `:` replaced by
//! `;`, event name `understudy.event` (heartbeat `understudy.heartbeat`, canary
//! `understudy.canary`), `data` the event JSON as a string.

pub mod classify;
pub mod client;
pub mod config;
pub mod realtime;
pub mod signing;

pub use client::PusherVendor;
pub use config::PusherConfig;

use super::EventKind;

/// Pusher does not allow `:` in channel names; understudy does not allow `;`.
pub fn wire_channel(channel: &str) -> String {
    channel.replace(':', ";")
}

/// The inverse of [`wire_channel`].
pub fn understudy_channel(wire: &str) -> String {
    wire.replace(';', ":")
}

/// The Pusher event name for an outbound event of this kind.
pub fn wire_event_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Event => super::PUSHER_EVENT_NAME,
        EventKind::Heartbeat => super::HEARTBEAT_EVENT,
        EventKind::Canary => super::CANARY_EVENT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_mapping_round_trips() {
        assert_eq!(
            wire_channel("clinic-42:waiting:room"),
            "clinic-42;waiting;room"
        );
        assert_eq!(
            understudy_channel("clinic-42;waiting;room"),
            "clinic-42:waiting:room"
        );
        assert_eq!(wire_event_name(EventKind::Event), "understudy.event");
        assert_eq!(
            wire_event_name(EventKind::Heartbeat),
            "understudy.heartbeat"
        );
    }
}
