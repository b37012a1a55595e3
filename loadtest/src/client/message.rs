//! The few fields of a server JSON message the load tool reads. Borrowed from the frame and
//! never fully parsed: `data.pad`, `id`, `name` and `ts` are skipped.

use std::borrow::Cow;

use serde::Deserialize;

/// A server message (`welcome`, `subscribed`, `event`, `reset`, `error`, ...).
#[derive(Debug, Deserialize)]
pub(crate) struct ServerMessage<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) channel: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) seq: Option<u64>,
    #[serde(default, borrow)]
    pub(crate) epoch: Option<Cow<'a, str>>,
    /// Only the load tool's own event payloads are read: `{"t": <µs>, "pad": ".."}`.
    #[serde(default)]
    pub(crate) data: Option<EventData>,
    /// `error.code`, `reset.reason` and `reconnect.reason`, for reports.
    #[serde(default, borrow)]
    pub(crate) code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) message: Option<Cow<'a, str>>,
    /// `route.route`: `vendor`, `self` or `poll`.
    #[serde(default, borrow)]
    pub(crate) route: Option<Cow<'a, str>>,
}

/// `data` of an event the load tool published.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventData {
    /// Send time, microseconds since the Unix epoch.
    #[serde(default)]
    pub(crate) t: Option<u64>,
}

impl<'a> ServerMessage<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }

    /// A one-line description for anomaly reports (`error invalid_channel: ...`).
    pub(crate) fn describe(&self) -> String {
        let mut out = self.kind.to_string();
        for part in [&self.channel, &self.code, &self.reason, &self.message]
            .into_iter()
            .flatten()
        {
            out.push(' ');
            out.push_str(part);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_event_and_skips_the_rest() {
        let raw = br#"{"type":"event","channel":"lt-1","seq":17,"epoch":"k3v9q2m8x1ab","id":"x",
            "name":"lt","data":{"t":1763895123456789,"pad":"xxxxxxxx"},"ts":1763895123456}"#;
        let m = ServerMessage::parse(raw).unwrap();
        assert_eq!(m.kind, "event");
        assert_eq!(m.channel.as_deref(), Some("lt-1"));
        assert_eq!(
            (m.seq, m.epoch.as_deref()),
            (Some(17), Some("k3v9q2m8x1ab"))
        );
        assert_eq!(m.data.and_then(|d| d.t), Some(1763895123456789));
    }

    #[test]
    fn parses_control_messages() {
        let m = ServerMessage::parse(br#"{"type":"subscribed","channel":"a","epoch":"e","seq":0}"#)
            .unwrap();
        assert_eq!((m.kind.as_ref(), m.seq), ("subscribed", Some(0)));
        let m = ServerMessage::parse(
            br#"{"type":"error","code":"invalid_channel","message":"bad \"x\"","channel":"x!"}"#,
        )
        .unwrap();
        assert_eq!(m.describe(), "error x! invalid_channel bad \"x\"");
        let m = ServerMessage::parse(br#"{"type":"heartbeat","ts":1}"#).unwrap();
        assert_eq!(m.kind, "heartbeat");
    }
}
