//! The backend side: `POST /v1/publish` over keep-alive HTTP/1.1, the load tool's event body
//! `{"t": <µs>, "pad": ".."}`, and classifying the answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::client::http1::Http1Conn;
use crate::stats::unix_micros;
use crate::target::Target;

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
}

/// The outcome of one publish.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// `202` with the seq and epoch the server assigned.
    Accepted { seq: u64, epoch: String },
    /// Any other status (or a 202 whose body did not parse), with the body for the report.
    Rejected { status: u16, body: String },
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
        })
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
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.send(channel)).await;
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

    async fn send(&mut self, channel: &str) -> std::io::Result<crate::client::http1::Answer> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => Http1Conn::connect(self.publisher.addr).await?,
        };
        let body = event_body(channel, unix_micros(), &self.publisher.pad);
        self.request.clear();
        self.request
            .extend_from_slice(self.publisher.head.as_bytes());
        self.request
            .extend_from_slice(format!("{}\r\n\r\n", body.len()).as_bytes());
        self.request.extend_from_slice(body.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

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
