//! The backend side: `POST /v1/publish` over keep-alive HTTP/1.1, the load tool's event body
//! `{"t": <µs>, "pad": ".."}`, and classifying the answer.

use std::time::Duration;

use anyhow::Result;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;

use crate::stats::unix_micros;
use crate::target::Target;

/// Bytes of `data` besides the padding: `{"t":1763895123456789,"pad":""}`.
const DATA_OVERHEAD: usize = r#"{"t":1763895123456789,"pad":""}"#.len();

/// A cheap clone sharing one connection pool.
#[derive(Clone)]
pub(crate) struct Publisher {
    http: reqwest::Client,
    url: Url,
    auth: HeaderValue,
    /// `"pad"` value making `data` about `--payload-bytes` long.
    pad: std::sync::Arc<str>,
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
    /// `pool` is the number of connections kept alive (one per concurrent publisher).
    pub(crate) fn new(
        target: &Target,
        key: &str,
        payload_bytes: usize,
        pool: usize,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(60))
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {key}"))?;
        auth.set_sensitive(true);
        let pad = "x".repeat(payload_bytes.saturating_sub(DATA_OVERHEAD));
        Ok(Self {
            http,
            url: target.publish_url(),
            auth,
            pad: pad.into(),
        })
    }

    /// Publishes one load-tool event to `channel`, stamping `t` with the time of sending.
    pub(crate) async fn publish(&self, channel: &str) -> Outcome {
        let body = event_body(channel, unix_micros(), &self.pad);
        let sent = self
            .http
            .post(self.url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(error_chain(&e)),
        };
        let status = response.status().as_u16();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Failed(format!(
                    "reading the answer to a {status}: {}",
                    error_chain(&e)
                ))
            }
        };
        if status == 202 {
            if let Ok(answer) = serde_json::from_slice::<Answer>(&body) {
                return Outcome::Accepted {
                    seq: answer.seq,
                    epoch: answer.epoch,
                };
            }
        }
        Outcome::Rejected {
            status,
            body: String::from_utf8_lossy(&body).chars().take(300).collect(),
        }
    }
}

/// The publish body. Channel names the tool generates need no JSON escaping, and the
/// padding is ASCII `x`.
fn event_body(channel: &str, t_us: u64, pad: &str) -> String {
    format!(r#"{{"channel":"{channel}","name":"lt","data":{{"t":{t_us},"pad":"{pad}"}}}}"#)
}

/// reqwest's errors hide the cause (refused, reset) in their source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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
