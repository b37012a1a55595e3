//! Events, the drafts publishers hand in, positions clients hold, and why a position can be void.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
#[cfg(test)]
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::{json, ChannelName, Epoch};

/// A sequenced event. Immutable once built; shared by history, every subscriber and the vendor
/// lanes through `Arc<Event>`.
#[derive(Debug)]
pub struct Event {
    pub channel: ChannelName,
    /// Strictly +1 per channel within an epoch, starting at 1.
    pub seq: u64,
    pub epoch: Epoch,
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// Publish time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The event serialised once as the wire message `{"type":"event",...}`; every transport sends
    /// these bytes as they are.
    pub frame: Bytes,
    /// When the event entered history, for age-based trimming.
    pub(crate) stored_at: Instant,
    /// A Pusher-protocol socket that must not receive this event (the `socket_id` a Pusher
    /// publisher gave to leave out the client that caused it). Not part of the frame.
    pub exclude_socket: Option<Arc<str>>,
    /// The event as a Pusher protocol message, serialised by the first `/app/{key}` socket that
    /// sends it and shared by the rest (see `transport::pusher_ws`); empty until then, so events
    /// no Pusher-protocol socket receives cost nothing.
    pub pusher_frame: OnceLock<Bytes>,
}

impl Event {
    pub(crate) fn build(
        channel: ChannelName,
        seq: u64,
        epoch: Epoch,
        draft: &EventDraft,
        id: Arc<str>,
        ts: u64,
        stored_at: Instant,
    ) -> Self {
        let fields = Frame {
            kind: "event",
            channel: channel.as_str(),
            seq,
            epoch: epoch.as_str(),
            id: &id,
            name: &draft.name,
            data: &draft.data,
            ts,
        };
        // Sized once for what the frame holds (names, numbers, the data; escapes are rare), so
        // writing it does not grow the buffer five or six times from empty.
        let mut frame = Vec::with_capacity(fields.size_hint());
        fields.write(&mut frame);
        Self {
            channel,
            seq,
            epoch,
            id,
            name: draft.name.clone(),
            ts,
            frame: Bytes::from(frame),
            stored_at,
            exclude_socket: draft.exclude_socket.clone(),
            pusher_frame: OnceLock::new(),
        }
    }

    /// Bytes this event accounts for in the history memory budget.
    pub fn cost(&self) -> usize {
        self.frame.len() + std::mem::size_of::<Self>()
    }

    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            seq: self.seq,
        }
    }
}

/// The event's wire message. Written by hand ([`Frame::write`]); the derived `Serialize` is the
/// tests' reference for it.
#[cfg_attr(test, derive(Serialize))]
struct Frame<'a> {
    #[cfg_attr(test, serde(rename = "type"))]
    kind: &'static str,
    channel: &'a str,
    seq: u64,
    epoch: &'a str,
    id: &'a str,
    name: &'a str,
    data: &'a RawValue,
    ts: u64,
}

impl Frame<'_> {
    /// Appends the frame: what `serde_json::to_writer` writes for it, keys written as they are.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"type":"#);
        json::push_str(out, self.kind);
        out.extend_from_slice(br#","channel":"#);
        json::push_str(out, self.channel);
        out.extend_from_slice(br#","seq":"#);
        json::push_u64(out, self.seq);
        out.extend_from_slice(br#","epoch":"#);
        json::push_str(out, self.epoch);
        out.extend_from_slice(br#","id":"#);
        json::push_str(out, self.id);
        out.extend_from_slice(br#","name":"#);
        json::push_str(out, self.name);
        out.extend_from_slice(br#","data":"#);
        out.extend_from_slice(self.data.get().as_bytes());
        out.extend_from_slice(br#","ts":"#);
        json::push_u64(out, self.ts);
        out.push(b'}');
    }

    /// The frame's length when no string needs escaping (nearly always): the keys and
    /// punctuation, the two numbers' digits, and the strings and data as they are. Exact, so the
    /// frame's buffer is full and becomes its `Bytes` without a shared header allocated for it.
    fn size_hint(&self) -> usize {
        const FIXED: usize =
            r#"{"type":"event","channel":"","seq":,"epoch":"","id":"","name":"","data":,"ts":}"#
                .len();
        let digits = |n: u64| n.checked_ilog10().map_or(1, |d| d as usize + 1);
        FIXED
            + digits(self.seq)
            + digits(self.ts)
            + self.channel.len()
            + self.epoch.len()
            + self.id.len()
            + self.name.len()
            + self.data.get().len()
    }
}

/// What a publisher asks to publish, validated but not yet sequenced.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub name: Arc<str>,
    /// Copied into each event's frame, so owned here rather than shared.
    pub data: Box<RawValue>,
    /// The event id: the publisher's idempotency key, or a generated one shared by every channel
    /// the draft is published to.
    pub id: Arc<str>,
    /// Whether `id` came from the publisher and so must be checked against the idempotency window.
    pub idempotent: bool,
    /// See [`Event::exclude_socket`].
    pub exclude_socket: Option<Arc<str>>,
}

impl EventDraft {
    /// A draft with the publisher's id if given, or a generated one.
    pub fn new(name: Arc<str>, data: Box<RawValue>, id: Option<Arc<str>>) -> Self {
        Self {
            name,
            data,
            idempotent: id.is_some(),
            id: id.unwrap_or_else(generate_id),
            exclude_socket: None,
        }
    }
}

/// A place in a channel's stream: the epoch and the last seq seen in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: Epoch,
    pub seq: u64,
}

/// Why a position cannot be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The channel's history was lost (restart, reclaim): a new epoch began.
    EpochChanged,
    /// Events after the position have already left history.
    HistoryExceeded,
    /// The position claims events the channel never had.
    AheadOfHead,
}

impl ResetReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EpochChanged => "epoch_changed",
            Self::HistoryExceeded => "history_exceeded",
            Self::AheadOfHead => "ahead_of_head",
        }
    }
}

/// A generated event id: 16 lowercase hex characters. Written digit by digit: `format!` went
/// through `core::fmt` and a `String` on every publish without an id.
pub fn generate_id() -> Arc<str> {
    hex_id(rand::random::<u64>())
}

/// `n` as `{:016x}` writes it.
fn hex_id(n: u64) -> Arc<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 16];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    Arc::from(std::str::from_utf8(&id).expect("hex digits are ASCII"))
}

/// Milliseconds since the Unix epoch, for the `ts` field.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_16_lowercase_hex_digits_and_differ() {
        let (a, b) = (generate_id(), generate_id());
        for id in [&a, &b] {
            assert_eq!(id.len(), 16, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{id}"
            );
        }
        assert_ne!(a, b);
        // Most significant first, zero-padded, as `{:016x}` wrote them.
        for n in [0, 10, 0x0123_4567_89ab_cdef, u64::MAX] {
            assert_eq!(*hex_id(n), format!("{n:016x}"));
        }
    }

    #[test]
    fn the_frame_fills_the_room_reserved_for_it() {
        let data = RawValue::from_string(r#"{"ticket": "A-17"}"#.into()).unwrap();
        let edges = [
            0,
            1,
            9,
            10,
            99,
            100,
            1_764_000_000_000,
            u64::MAX / 10,
            u64::MAX,
        ];
        for (seq, ts) in edges.iter().zip(edges.iter().rev()) {
            let (seq, ts) = (*seq, *ts);
            let fields = Frame {
                kind: "event",
                channel: "clinic.room-1",
                seq,
                epoch: "e1",
                id: "0123456789abcdef",
                name: "patient.checked_in",
                data: &data,
                ts,
            };
            let written = serde_json::to_vec(&fields).unwrap();
            assert_eq!(written.len(), fields.size_hint(), "seq {seq}, ts {ts}");
        }
    }

    #[test]
    fn the_frame_is_written_as_serde_json_writes_it() {
        let data = RawValue::from_string(r#"{"t": [1, "\"x\""]}"#.into()).unwrap();
        for (id, name) in [
            ("0123456789abcdef", "n"),
            ("say \"hi\"", "tab\tand\\"),
            ("", "ü✓"),
        ] {
            let fields = Frame {
                kind: "event",
                channel: "clinic.room-1",
                seq: u64::MAX,
                epoch: "e1",
                id,
                name,
                data: &data,
                ts: 1_700_000_000_000,
            };
            let mut written = Vec::new();
            fields.write(&mut written);
            assert_eq!(written, serde_json::to_vec(&fields).unwrap());
        }
    }

    #[test]
    fn frame_is_the_documented_event_json() {
        let draft = EventDraft::new(
            Arc::from("patient.checked_in"),
            RawValue::from_string(r#"{"ticket": "A-17"}"#.into()).unwrap(),
            None,
        );
        let ev = Event::build(
            ChannelName::parse("c").unwrap(),
            7,
            Epoch::from_client("e1"),
            &draft,
            Arc::from("id-1"),
            1000,
            Instant::now(),
        );
        assert_eq!(
            std::str::from_utf8(&ev.frame).unwrap(),
            r#"{"type":"event","channel":"c","seq":7,"epoch":"e1","id":"id-1","name":"patient.checked_in","data":{"ticket": "A-17"},"ts":1000}"#
        );
    }
}
