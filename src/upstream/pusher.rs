//! The Pusher Channels adapter: HTTP API publishing (`/events`, `/batch_events`, signed per
//! VENDORS.md §3.1) and the WebSocket protocol 7 session the canary listens on. Works with
//! Pusher's cloud and with any Pusher-compatible server (sockudo, soketi).
//!
//! On the wire (docs/protocol.md, "Events through the vendor"): channel `private-` + the name
//! with `:` replaced by `;` (no prefix with `vendors.public_channels`), event name
//! `understudy.event` (heartbeat `understudy.heartbeat`, canary `understudy.canary`), `data` the
//! event JSON as a string.

pub mod classify;
pub mod client;
pub mod config;
pub mod realtime;
pub mod signing;

pub use client::PusherVendor;
pub use config::PusherConfig;

use super::{EventKind, OutboundEvent};
use config::MAX_CHANNEL_LEN;

/// Prefix of Pusher private channels: subscribing needs a signature from the app secret.
pub const PRIVATE_PREFIX: &str = "private-";

/// The Pusher channel for an understudy channel: `private-` unless channels are public, and `;`
/// for every `:` (Pusher does not allow `:` in channel names; understudy does not allow `;`).
/// Every other understudy character (`[A-Za-z0-9_.@-]`) is allowed by Pusher as it is.
pub fn wire_channel(channel: &str, private: bool) -> String {
    let prefix = if private { PRIVATE_PREFIX } else { "" };
    let mut wire = String::with_capacity(prefix.len() + channel.len());
    wire.push_str(prefix);
    wire.extend(channel.chars().map(|c| if c == ':' { ';' } else { c }));
    wire
}

/// The understudy channel a Pusher private channel carries, or `None` when `wire` is not a
/// private channel. Whether the result is a valid understudy name is the caller's check.
pub fn understudy_channel_of_private(wire: &str) -> Option<String> {
    let name = wire.strip_prefix(PRIVATE_PREFIX)?;
    Some(name.replace(';', ":"))
}

/// The longest understudy channel name that maps onto Pusher's 164-character limit: 156 with
/// the `private-` prefix, 164 without. Longer names are refused for the vendor (their events
/// still reach understudy's own transports).
pub fn max_understudy_channel_len(private: bool) -> usize {
    MAX_CHANNEL_LEN - if private { PRIVATE_PREFIX.len() } else { 0 }
}

/// The Pusher event name for an outbound event: fixed by its kind, or the publisher's own for
/// an event forwarded as published.
pub fn wire_event_name(event: &OutboundEvent) -> &str {
    match event.kind {
        EventKind::Event => super::PUSHER_EVENT_NAME,
        EventKind::Heartbeat => super::HEARTBEAT_EVENT,
        EventKind::Canary => super::CANARY_EVENT,
        EventKind::AsPublished => &event.name,
    }
}

/// The Pusher channel for an outbound event: an event forwarded as published keeps its own
/// name (never `private-`), every other one is mapped by [`wire_channel`].
pub fn wire_channel_of(event: &OutboundEvent, private: bool) -> String {
    let private = private && event.kind != EventKind::AsPublished;
    wire_channel(&event.channel, private)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_mapping_round_trips() {
        assert_eq!(
            wire_channel("clinic-42:waiting:room", false),
            "clinic-42;waiting;room"
        );
        assert_eq!(
            wire_channel("clinic-42:waiting:room", true),
            "private-clinic-42;waiting;room"
        );
        assert_eq!(
            understudy_channel_of_private("private-clinic-42;waiting;room").as_deref(),
            Some("clinic-42:waiting:room")
        );
        assert_eq!(understudy_channel_of_private("clinic-42;waiting"), None);
        assert_eq!(understudy_channel_of_private("presence-a"), None);
        assert_eq!(max_understudy_channel_len(true), 156);
        assert_eq!(max_understudy_channel_len(false), 164);
        let ev = |kind| OutboundEvent {
            kind,
            ..OutboundEvent::new("a:b", "order.paid", "i", "1".into(), Default::default())
        };
        assert_eq!(wire_event_name(&ev(EventKind::Event)), "understudy.event");
        assert_eq!(
            wire_event_name(&ev(EventKind::Heartbeat)),
            "understudy.heartbeat"
        );
        assert_eq!(wire_event_name(&ev(EventKind::AsPublished)), "order.paid");
        assert_eq!(wire_channel_of(&ev(EventKind::Event), true), "private-a;b");
        assert_eq!(wire_channel_of(&ev(EventKind::AsPublished), true), "a;b");
    }
}
