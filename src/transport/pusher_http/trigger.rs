//! A Pusher event, checked against Pusher's limits and understudy's channel names, into the
//! channels and draft understudy publishes. Pure: no state, no clock.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::PusherError;
use crate::core::{ChannelName, EventDraft};
use crate::transport::wire::pusher_http::PusherTrigger;
use crate::upstream::pusher::signing::is_socket_id;

/// Longest event name (Pusher's limit), in characters.
pub(crate) const MAX_NAME_CHARS: usize = 200;
/// Largest `data` string, in bytes once decoded (Pusher's 10 KB). Fixed, not configurable: an
/// app's event is forwarded to the vendor as published, and a Pusher vendor refuses more.
pub(crate) const MAX_DATA_BYTES: usize = 10 * 1024;
/// Channels per event (Pusher's limit).
pub(crate) const MAX_CHANNELS: usize = 100;
/// Events per `batch_events` request (Pusher's limit).
pub(crate) const MAX_BATCH: usize = 10;
/// Longest channel name (Pusher's limit), in characters.
pub(crate) const MAX_CHANNEL_CHARS: usize = 164;
/// Largest request body: a full batch of 10 events whose 10 KB of data each needed an escape
/// for every byte, with room for names and channels.
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;

/// What one Pusher event becomes: an understudy draft for each of its channels.
#[derive(Debug)]
pub(crate) struct Trigger {
    pub(crate) channels: Vec<ChannelName>,
    pub(crate) draft: EventDraft,
    /// `info=subscription_count` was asked for.
    pub(crate) subscription_count: bool,
}

/// Parses a body, naming the field at fault (`batch[3].data: ...`).
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PusherError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = if path == "." || path.is_empty() || inner.is_syntax() || inner.is_eof() {
            String::new()
        } else {
            format!("field {path}: ")
        };
        PusherError::BadRequest(format!("the body is not a Pusher event: {at}{inner}"))
    })?;
    de.end()
        .map_err(|e| PusherError::BadRequest(format!("the body is not one JSON value: {e}")))?;
    Ok(value)
}

/// Checks one event. `index` is its place in a batch, which every refusal names.
pub(crate) fn validate(event: PusherTrigger, index: Option<usize>) -> Result<Trigger, PusherError> {
    let at = |message: String| match index {
        Some(i) => format!("batch[{i}]: {message}"),
        None => message,
    };
    let bad = |message: String| PusherError::BadRequest(at(message));
    let names = match (event.channel, event.channels) {
        (Some(_), Some(_)) => return Err(bad("give channel or channels, not both".into())),
        (Some(c), None) => vec![c],
        (None, Some(cs)) if index.is_some() => {
            return Err(bad(format!(
                "a batch item takes one channel, not channels ({} given)",
                cs.len()
            )))
        }
        (None, Some(cs)) => cs,
        (None, None) => return Err(bad("missing field channel (or channels)".into())),
    };
    if names.is_empty() || names.len() > MAX_CHANNELS {
        return Err(bad(format!(
            "an event goes to 1 to {MAX_CHANNELS} channels, got {}",
            names.len()
        )));
    }
    let mut channels: Vec<ChannelName> = Vec::with_capacity(names.len());
    for name in &names {
        let channel = channel(name).map_err(&bad)?;
        // Pusher publishes once per channel however often it is listed.
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    let chars = event.name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(bad(format!(
            "field name must be 1 to {MAX_NAME_CHARS} characters, got {chars}"
        )));
    }
    if event.name.starts_with("pusher:") || event.name.starts_with("pusher_internal:") {
        return Err(bad(
            "event names starting pusher: or pusher_internal: are the protocol's own".into(),
        ));
    }
    let raw = event.data.get();
    if !raw.starts_with('"') {
        return Err(bad(
            "field data must be a string (the Pusher SDKs send an object JSON-encoded)".into(),
        ));
    }
    // Escapes only ever shorten a string when decoded, so most data is measured by its length.
    if raw.len() - 2 > MAX_DATA_BYTES {
        let size = serde_json::from_str::<String>(raw).map_or(raw.len(), |s| s.len());
        if size > MAX_DATA_BYTES {
            return Err(PusherError::DataTooLarge {
                at: at(String::new()),
                size,
            });
        }
    }
    let socket = match event.socket_id {
        Some(s) if is_socket_id(&s) => Some(Arc::<str>::from(s)),
        Some(_) => {
            return Err(bad(
                "field socket_id must be a Pusher socket id such as 1234.5678".into(),
            ))
        }
        None => None,
    };
    let mut subscription_count = false;
    for attribute in event.info.as_deref().unwrap_or("").split(',') {
        match attribute.trim() {
            "" => {}
            "subscription_count" => subscription_count = true,
            "user_count" => {
                return Err(bad(
                    "info=user_count is for presence channels, which understudy does not have"
                        .into(),
                ))
            }
            other => {
                return Err(bad(format!(
                    "info {:?} is not known; ask for subscription_count",
                    other.chars().take(40).collect::<String>()
                )))
            }
        }
    }
    // No id: every request is a new event, as on Pusher (docs/protocol.md).
    let mut draft = EventDraft::new(Arc::from(event.name), event.data, None);
    draft.exclude_socket = socket;
    Ok(Trigger {
        channels,
        draft,
        subscription_count,
    })
}

/// A Pusher channel name understudy can hold as it is: Pusher's characters and length, and
/// understudy's characters. A name only one side allows is refused, never mangled.
fn channel(name: &str) -> Result<ChannelName, String> {
    let shown: String = name.chars().take(64).collect();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_CHANNEL_CHARS {
        return Err(format!(
            "channel names are 1 to {MAX_CHANNEL_CHARS} characters, got {chars}"
        ));
    }
    let pusher = |c: char| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c);
    if let Some(c) = name.chars().find(|c| !pusher(*c)) {
        return Err(format!(
            "channel {shown:?} contains {c:?}, which Pusher channel names cannot hold \
             (A-Z a-z 0-9 _ - = @ , . ;)"
        ));
    }
    if let Some(c) = name.chars().find(|c| "=,;".contains(*c)) {
        return Err(format!(
            "channel {shown:?} contains {c:?}: Pusher allows it, understudy's channel names \
             cannot hold it (A-Z a-z 0-9 _ . : @ -); rename the channel"
        ));
    }
    ChannelName::parse(name).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(json: &str) -> Result<Trigger, PusherError> {
        validate(parse::<PusherTrigger>(json.as_bytes())?, None)
    }

    fn refusal(json: &str) -> String {
        match trigger(json) {
            Ok(t) => panic!("accepted {json}: {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_pusher_event_becomes_one_draft_for_its_channels() {
        let t = trigger(
            r#"{"name":"order.paid","channels":["orders-7","private-orders-7","orders-7"],
                "data":"{\"total\":12}","socket_id":"123.456","info":"subscription_count"}"#,
        )
        .unwrap();
        let names: Vec<&str> = t.channels.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["orders-7", "private-orders-7"]);
        assert_eq!(&*t.draft.name, "order.paid");
        assert_eq!(t.draft.data.get(), r#""{\"total\":12}""#);
        assert_eq!(t.draft.exclude_socket.as_deref(), Some("123.456"));
        assert!(!t.draft.idempotent && t.subscription_count);
        let t = trigger(r#"{"name":"e","channel":"a","data":"","newer_sdk_field":1}"#).unwrap();
        assert_eq!((t.channels.len(), t.subscription_count), (1, false));
    }

    #[test]
    fn pusher_limits_hold_at_their_edges() {
        let data = |n: usize| format!(r#"{{"name":"e","channel":"a","data":"{}"}}"#, "x".repeat(n));
        assert!(trigger(&data(MAX_DATA_BYTES)).is_ok());
        assert!(matches!(
            trigger(&data(MAX_DATA_BYTES + 1)),
            Err(PusherError::DataTooLarge { size: 10241, .. })
        ));
        // Escapes count once decoded: 10240 newlines are 20480 bytes of JSON but 10 KB of data.
        let escaped = format!(
            r#"{{"name":"e","channel":"a","data":"{}"}}"#,
            "\\n".repeat(MAX_DATA_BYTES)
        );
        assert!(trigger(&escaped).is_ok());
        let name = |n: usize| format!(r#"{{"name":"{}","channel":"a","data":""}}"#, "n".repeat(n));
        assert!(trigger(&name(200)).is_ok());
        assert!(refusal(&name(201)).contains("1 to 200 characters, got 201"));
        let channels = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("\"c{i}\"")).collect();
            format!(
                r#"{{"name":"e","channels":[{}],"data":""}}"#,
                list.join(",")
            )
        };
        assert_eq!(trigger(&channels(100)).unwrap().channels.len(), 100);
        assert!(refusal(&channels(101)).contains("1 to 100 channels, got 101"));
        assert!(refusal(&channels(0)).contains("1 to 100 channels, got 0"));
        let long = |n: usize| format!(r#"{{"name":"e","channel":"{}","data":""}}"#, "c".repeat(n));
        assert!(trigger(&long(164)).is_ok());
        assert!(refusal(&long(165)).contains("1 to 164 characters, got 165"));
    }

    #[test]
    fn each_bad_event_is_refused_with_its_cause() {
        let cases = [
            (
                r#"{"name":"e","channel":"a","data":{"total":12}}"#,
                "data must be a string",
            ),
            (
                r#"{"name":"e","channel":"a","data":12}"#,
                "data must be a string",
            ),
            (r#"{"name":"e","channel":"a"}"#, "missing field `data`"),
            (r#"{"channel":"a","data":""}"#, "missing field `name`"),
            (r#"{"name":"e","data":""}"#, "missing field channel"),
            (
                r#"{"name":"e","channel":"a","channels":["b"],"data":""}"#,
                "not both",
            ),
            (r#"{"name":"","channel":"a","data":""}"#, "got 0"),
            (
                r#"{"name":"pusher:subscribe","channel":"a","data":""}"#,
                "protocol's own",
            ),
            (
                r#"{"name":"e","channel":"a:b","data":""}"#,
                "Pusher channel names cannot hold",
            ),
            (
                r#"{"name":"e","channel":"a b","data":""}"#,
                "Pusher channel names cannot hold",
            ),
            (
                r#"{"name":"e","channel":"a;b","data":""}"#,
                "understudy's channel names",
            ),
            (
                r#"{"name":"e","channel":"a=b","data":""}"#,
                "rename the channel",
            ),
            (
                r#"{"name":"e","channel":"a","data":"","socket_id":"1.2:x"}"#,
                "socket_id",
            ),
            (
                r#"{"name":"e","channel":"a","data":"","info":"user_count"}"#,
                "presence",
            ),
            (
                r#"{"name":"e","channel":"a","data":"","info":"members"}"#,
                "\"members\" is not known",
            ),
            (r#"{"name":"e","channel":"a","data":"",}"#, "line 1 column"),
            (
                r#"{"name":"e","channel":"a","data":""} {}"#,
                "one JSON value",
            ),
            (
                r#"{"name":5,"channel":"a","data":""}"#,
                "field name: invalid type",
            ),
        ];
        for (json, want) in cases {
            let got = refusal(json);
            assert!(got.contains(want), "{json}: {got}");
        }
    }

    #[test]
    fn a_batch_item_takes_one_channel_and_is_named_in_refusals() {
        let item = parse::<PusherTrigger>(br#"{"name":"e","channels":["a"],"data":""}"#).unwrap();
        let err = validate(item, Some(3)).unwrap_err().to_string();
        assert!(
            err.starts_with("batch[3]: a batch item takes one channel"),
            "{err}"
        );
        let item = parse::<PusherTrigger>(br#"{"name":"e","channel":"a","data":1}"#).unwrap();
        assert!(validate(item, Some(0))
            .unwrap_err()
            .to_string()
            .starts_with("batch[0]: "));
    }
}
