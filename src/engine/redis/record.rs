//! How an event is written into Redis and read back. The publish script stores `seq ts body` in
//! the history and publishes `epoch seq ts body`, where `body` is `{"id","name","data"}` as JSON;
//! each node builds the wire frame from it once, for all its subscribers. A body may also carry
//! `exclude_socket` (a Pusher `socket_id` to leave out), so the exclusion holds on every node.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::core::event::now_ms;
use crate::core::{ChannelName, Epoch, Event, EventDraft};

#[derive(Serialize, Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
    /// Absent in bodies without one (and in those written before it existed).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    exclude_socket: Option<Cow<'a, str>>,
}

/// The body of a draft, as the publish script stores it.
pub(crate) fn body(draft: &EventDraft) -> String {
    serde_json::to_string(&Body {
        id: Cow::Borrowed(&draft.id),
        name: Cow::Borrowed(&draft.name),
        data: &draft.data,
        exclude_socket: draft.exclude_socket.as_deref().map(Cow::Borrowed),
    })
    .expect("a body serialises: strings and valid JSON")
}

/// A record that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("malformed event record in Redis: {0}")]
pub(crate) struct BadRecord(String);

/// A history member `seq ts body` of `channel` in `epoch`.
pub(crate) fn from_member(
    ch: &ChannelName,
    epoch: &Epoch,
    member: &[u8],
) -> Result<Event, BadRecord> {
    let text = std::str::from_utf8(member).map_err(|e| BadRecord(e.to_string()))?;
    let (seq, rest) = split_number(text)?;
    let (ts, body) = split_number(rest)?;
    build(ch, epoch.clone(), seq, ts, body)
}

/// A pub/sub message `epoch seq ts body` of `channel`.
pub(crate) fn from_message(ch: &ChannelName, message: &[u8]) -> Result<Event, BadRecord> {
    let text = std::str::from_utf8(message).map_err(|e| BadRecord(e.to_string()))?;
    let (epoch, rest) = text
        .split_once(' ')
        .ok_or_else(|| BadRecord("no epoch".into()))?;
    let (seq, rest) = split_number(rest)?;
    let (ts, body) = split_number(rest)?;
    build(ch, Epoch::from_client(epoch), seq, ts, body)
}

fn split_number(text: &str) -> Result<(u64, &str), BadRecord> {
    let (n, rest) = text
        .split_once(' ')
        .ok_or_else(|| BadRecord("missing field".into()))?;
    let n = n
        .parse()
        .map_err(|_| BadRecord(format!("{n:?} is not a number")))?;
    Ok((n, rest))
}

fn build(
    ch: &ChannelName,
    epoch: Epoch,
    seq: u64,
    ts: u64,
    body: &str,
) -> Result<Event, BadRecord> {
    let b: Body = serde_json::from_str(body).map_err(|e| BadRecord(e.to_string()))?;
    let id: Arc<str> = Arc::from(b.id.as_ref());
    let draft = EventDraft {
        name: Arc::from(b.name.as_ref()),
        data: b.data.to_owned(),
        id: id.clone(),
        idempotent: false,
        exclude_socket: b.exclude_socket.map(|s| Arc::from(s.as_ref())),
    };
    Ok(Event::build(
        ch.clone(),
        seq,
        epoch,
        &draft,
        id,
        ts,
        stored_at(ts),
    ))
}

/// When an event published at `ts` entered history, on this node's clock, so age trimming
/// treats a loaded event by its real age.
fn stored_at(ts: u64) -> Instant {
    let age = Duration::from_millis(now_ms().saturating_sub(ts));
    let now = Instant::now();
    now.checked_sub(age).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_builds_the_same_frame_as_a_local_publish() {
        let ch = ChannelName::parse("room").unwrap();
        let draft = EventDraft::new(
            Arc::from("checked \"in\""),
            RawValue::from_string(r#"{"t": "A-1"}"#.into()).unwrap(),
            Some(Arc::from("k 1")),
        );
        let message = format!("ep1 7 1000 {}", body(&draft));
        let ev = from_message(&ch, message.as_bytes()).unwrap();
        let local = Event::build(
            ch.clone(),
            7,
            Epoch::from_client("ep1"),
            &draft,
            draft.id.clone(),
            1000,
            Instant::now(),
        );
        assert_eq!(ev.frame, local.frame);
        let member = format!("7 1000 {}", body(&draft));
        let ev = from_member(&ch, &Epoch::from_client("ep1"), member.as_bytes()).unwrap();
        assert_eq!(ev.frame, local.frame);
    }

    #[test]
    fn a_socket_exclusion_is_carried_and_a_body_without_one_reads_as_none() {
        let ch = ChannelName::parse("room").unwrap();
        let mut draft = EventDraft::new(
            Arc::from("n"),
            RawValue::from_string("\"x\"".into()).unwrap(),
            None,
        );
        let plain = body(&draft);
        assert!(!plain.contains("exclude_socket"), "{plain}");
        let ev = from_message(&ch, format!("ep1 1 1000 {plain}").as_bytes()).unwrap();
        assert_eq!(ev.exclude_socket, None);
        draft.exclude_socket = Some(Arc::from("123.456"));
        let member = format!("1 1000 {}", body(&draft));
        let ev = from_member(&ch, &Epoch::from_client("ep1"), member.as_bytes()).unwrap();
        assert_eq!(ev.exclude_socket.as_deref(), Some("123.456"));
        let message = format!("ep1 1 1000 {}", body(&draft));
        let ev = from_message(&ch, message.as_bytes()).unwrap();
        assert_eq!(ev.exclude_socket.as_deref(), Some("123.456"));
        // Not part of what subscribers see.
        assert!(!std::str::from_utf8(&ev.frame).unwrap().contains("123.456"));
    }

    #[test]
    fn malformed_records_are_refused() {
        let ch = ChannelName::parse("room").unwrap();
        for bad in [
            "",
            "ep",
            "ep x 1 {}",
            "ep 1 2 not-json",
            "ep 1 2 {\"id\":\"a\"}",
        ] {
            assert!(from_message(&ch, bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
