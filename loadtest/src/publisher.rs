//! The backend side: `POST /v1/publish` (or the Pusher HTTP API's `POST /apps/{id}/events`,
//! signed per request as the Pusher SDKs sign, or nchan's `POST /pub?id=<channel>`) over
//! keep-alive HTTP/1.1, the load tool's event body `{"t": <µs>, "pad": ".."}`, and classifying
//! the answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::client::http1::Http1Conn;
use crate::stats::unix_micros;
use crate::target::{Dialect, Target};

/// Bytes of `data` besides the padding: `{"t":1763895123456789,"pad":""}`.
const DATA_OVERHEAD: usize = r#"{"t":1763895123456789,"pad":""}"#.len();

/// Longest a publish (connect included) may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every publishing session shares: where to send and what to send.
#[derive(Clone)]
pub(crate) struct Publisher {
    addr: SocketAddr,
    /// Request line and headers up to `content-length: ` (the key is inside).
    head: Arc<str>,
    /// `"pad"` value making `data` about `--payload-bytes` long.
    pad: Arc<str>,
    /// Publishing through the Pusher HTTP API instead of `/v1/publish`.
    pusher: Option<Arc<PusherApp>>,
    /// `Host` header value, for requests whose head is built per channel (nchan).
    host: Arc<str>,
    dialect: Dialect,
}

/// A Pusher app to publish as: every request is signed with its key and secret, with the
/// server's own signing code (`understudy::upstream::pusher::signing`).
pub(crate) struct PusherApp {
    /// `/apps/{id}/events`.
    path: String,
    host: String,
    key: String,
    secret: understudy::upstream::Secret,
}

/// The outcome of one publish.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// `202` with the seq and epoch the server assigned.
    Accepted { seq: u64, epoch: String },
    /// Any other status (or a 202 whose body did not parse), with the body for the report.
    Rejected { status: u16, body: String },
    /// `200` from the Pusher HTTP API, which answers no seq.
    Triggered,
    /// No HTTP answer at all.
    Failed(String),
}

#[derive(Deserialize)]
struct Answer {
    seq: u64,
    epoch: String,
}

impl Publisher {
    pub(crate) fn new(target: &Target, key: &str, payload_bytes: usize) -> Result<Self> {
        if key.bytes().any(|b| b.is_ascii_control()) {
            bail!("the publisher key holds control characters");
        }
        let url = target.publish_url();
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: ",
            url.path(),
            target.host_header()
        );
        let pad = "x".repeat(payload_bytes.saturating_sub(DATA_OVERHEAD));
        Ok(Self {
            addr: target.addr(),
            head: head.into(),
            pad: pad.into(),
            pusher: None,
            host: target.host_header().into(),
            dialect: target.dialect(),
        })
    }

    /// A publisher that sends Pusher events as app `app_id` (key and secret as configured in
    /// the server's `[[apps]]`).
    pub(crate) fn pusher(
        target: &Target,
        app_id: &str,
        key: &str,
        secret: &str,
        payload_bytes: usize,
    ) -> Result<Self> {
        let ok = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !ok(app_id) || !ok(key) {
            bail!("the Pusher app id and key are [A-Za-z0-9_.-]");
        }
        let mut publisher = Self::new(target, "unused", payload_bytes)?;
        publisher.pusher = Some(Arc::new(PusherApp {
            path: format!("/apps/{app_id}/events"),
            host: target.host_header(),
            key: key.to_owned(),
            secret: understudy::upstream::Secret::new(secret),
        }));
        Ok(publisher)
    }

    /// A publishing session: one keep-alive connection, one request at a time.
    pub(crate) fn session(&self) -> Session {
        Session {
            publisher: self.clone(),
            conn: None,
            request: Vec::with_capacity(512),
        }
    }
}

/// One publisher's connection, reopened after an error or a `Connection: close`.
pub(crate) struct Session {
    publisher: Publisher,
    conn: Option<Http1Conn>,
    /// Reused request buffer.
    request: Vec<u8>,
}

impl Session {
    /// Publishes one load-tool event to `channel`, stamping `t` with the time of sending.
    /// A failed request is not retried: a POST that may have landed must not be sent twice.
    pub(crate) async fn publish(&mut self, channel: &str) -> Outcome {
        self.publish_numbered(channel, 0).await
    }

    /// [`Session::publish`] of the channel's event number `seq` (from 1). understudy numbers
    /// events itself and ignores it; in the nchan dialect it travels inside the body, where
    /// subscribers read it as the event's seq, and is answered back as [`Outcome::Accepted`].
    pub(crate) async fn publish_numbered(&mut self, channel: &str, seq: u64) -> Outcome {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.send(channel, seq)).await;
        let answer = match result {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                self.conn = None;
                return Outcome::Failed(e.to_string());
            }
            Err(_) => {
                self.conn = None;
                return Outcome::Failed(format!("no answer within {REQUEST_TIMEOUT:?}"));
            }
        };
        if answer.status == 200 && self.publisher.pusher.is_some() {
            return Outcome::Triggered;
        }
        // nchan answers 201 or 202 with channel figures; the floor 202 with no body.
        if self.publisher.dialect == Dialect::Nchan && (200..300).contains(&answer.status) {
            return Outcome::Accepted {
                seq,
                epoch: String::new(),
            };
        }
        if answer.status == 202 {
            if let Ok(a) = serde_json::from_slice::<Answer>(&answer.body) {
                return Outcome::Accepted {
                    seq: a.seq,
                    epoch: a.epoch,
                };
            }
        }
        let body = String::from_utf8_lossy(&answer.body)
            .chars()
            .take(300)
            .collect();
        Outcome::Rejected {
            status: answer.status,
            body,
        }
    }

    async fn send(
        &mut self,
        channel: &str,
        seq: u64,
    ) -> std::io::Result<crate::client::http1::Answer> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => Http1Conn::connect(self.publisher.addr).await?,
        };
        self.request.clear();
        if let Some(app) = &self.publisher.pusher {
            let body = pusher_body(channel, unix_micros(), &self.publisher.pad);
            let timestamp = unix_micros() / 1_000_000;
            let query = understudy::upstream::pusher::signing::signed_query(
                &app.key,
                &app.secret,
                &app.path,
                body.as_bytes(),
                timestamp,
            );
            let head = format!(
                "POST {}?{query} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                app.path,
                app.host,
                body.len()
            );
            self.request.extend_from_slice(head.as_bytes());
            self.request.extend_from_slice(body.as_bytes());
        } else if self.publisher.dialect == Dialect::Nchan {
            let body = nchan_body(channel, seq, unix_micros(), &self.publisher.pad);
            let head = format!(
                "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                Target::nchan_publish_path(channel),
                self.publisher.host,
                body.len()
            );
            self.request.extend_from_slice(head.as_bytes());
            self.request.extend_from_slice(body.as_bytes());
        } else {
            let body = event_body(channel, unix_micros(), &self.publisher.pad);
            self.request
                .extend_from_slice(self.publisher.head.as_bytes());
            self.request
                .extend_from_slice(format!("{}\r\n\r\n", body.len()).as_bytes());
            self.request.extend_from_slice(body.as_bytes());
        }
        let answer = conn.send(&self.request).await?;
        if conn.reusable() {
            self.conn = Some(conn);
        }
        Ok(answer)
    }
}

/// The publish body. Channel names the tool generates need no JSON escaping, and the
/// padding is ASCII `x`.
fn event_body(channel: &str, t_us: u64, pad: &str) -> String {
    format!(r#"{{"channel":"{channel}","name":"lt","data":{{"t":{t_us},"pad":"{pad}"}}}}"#)
}

/// The nchan-dialect body: delivered verbatim to subscribers, so it is shaped as the
/// understudy `event` message the subscribers already read (`channel`, `seq`, an empty `epoch`,
/// the same `data`).
fn nchan_body(channel: &str, seq: u64, t_us: u64, pad: &str) -> String {
    format!(
        r#"{{"type":"event","channel":"{channel}","seq":{seq},"epoch":"","name":"lt","data":{{"t":{t_us},"pad":"{pad}"}}}}"#
    )
}

/// The Pusher event body: the same data as [`event_body`], as the JSON-encoded string a Pusher
/// SDK sends (`"data":"{\"t\":..,\"pad\":\"..\"}"`).
fn pusher_body(channel: &str, t_us: u64, pad: &str) -> String {
    format!(r#"{{"name":"lt","channel":"{channel}","data":"{{\"t\":{t_us},\"pad\":\"{pad}\"}}"}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_body_carries_the_same_data_as_a_string() {
        let pad = "x".repeat(100 - DATA_OVERHEAD);
        let body = pusher_body("lt-ab12-0", 1_763_895_123_456_789, &pad);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let data = v["data"].as_str().unwrap();
        assert_eq!(data.len(), 100);
        let inner: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(inner["t"], 1_763_895_123_456_789u64);
        assert_eq!(
            (&v["name"], &v["channel"]),
            (&"lt".into(), &"lt-ab12-0".into())
        );
    }

    #[test]
    fn nchan_body_reads_as_an_event_message() {
        let pad = "x".repeat(100 - DATA_OVERHEAD);
        let body = nchan_body("lt-ab12-0", 7, 1_763_895_123_456_789, &pad);
        let m = crate::client::message::ServerMessage::parse(body.as_bytes()).unwrap();
        assert_eq!(m.kind, "event");
        assert_eq!(
            (m.channel.as_deref(), m.seq, m.epoch.as_deref()),
            (Some("lt-ab12-0"), Some(7), Some(""))
        );
        assert_eq!(m.data.and_then(|d| d.t), Some(1_763_895_123_456_789));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(serde_json::to_string(&v["data"]).unwrap().len(), 100);
    }

    #[test]
    fn body_is_json_with_the_requested_data_size() {
        let pad = "x".repeat(100 - DATA_OVERHEAD);
        let body = event_body("lt-ab12-0", 1_763_895_123_456_789, &pad);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["channel"], "lt-ab12-0");
        assert_eq!(v["data"]["t"], 1_763_895_123_456_789u64);
        assert_eq!(serde_json::to_string(&v["data"]).unwrap().len(), 100);
    }
}
