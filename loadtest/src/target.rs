//! The server under test: a loopback-only base URL, its resolved socket address, the
//! [`Dialect`] it speaks, and the endpoint URLs (publish, WebSocket, SSE) built from them.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use reqwest::Url;

/// Hosts a run may target. Anything else is refused before a socket is opened.
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// The publish and subscribe protocol of the server under test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Dialect {
    /// understudy: `POST /v1/publish` answering seq and epoch, `/v1/ws` and `/v1/sse` with a
    /// `subscribed` message first and every event carrying its seq.
    #[default]
    Understudy,
    /// nginx + nchan, and the `floor` reference server: `POST /pub?id=<channel>` with the body
    /// delivered verbatim to `/sub/<channel>` (WebSocket or EventSource). There is no
    /// `subscribed` message and no server seq: the load tool numbers each channel's events
    /// itself, inside the body, so loss and duplicates are still counted.
    Nchan,
}

/// A validated loopback target.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `http://<loopback host>:<port>`; its path is ignored, endpoints are absolute.
    base: Url,
    /// The address every raw TCP connection (WebSocket) goes to.
    addr: SocketAddr,
    dialect: Dialect,
}

impl Target {
    /// Parses `--url`, refusing any scheme but `http` and any host but a loopback one.
    pub(crate) async fn parse(raw: &str) -> Result<Self> {
        let base = check_loopback(raw)?;
        let host = base.host_str().unwrap_or_default().trim_matches(['[', ']']);
        let port = base.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}:{port}"))?
            .find(|a| a.ip().is_loopback())
            .with_context(|| format!("{host} does not resolve to a loopback address"))?;
        Ok(Self {
            base,
            addr,
            dialect: Dialect::Understudy,
        })
    }

    /// The same target, speaking `dialect`.
    pub(crate) fn speaking(self, dialect: Dialect) -> Self {
        Self { dialect, ..self }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `Host` header value: `127.0.0.1:8080`.
    pub(crate) fn host_header(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// Any path on the target, e.g. `/v1/route`.
    pub(crate) fn url(&self, path: &str) -> Url {
        self.endpoint(path, &[], None)
    }

    /// `POST /v1/publish` (understudy; nchan's publish path names the channel, see
    /// [`Target::nchan_publish_path`]).
    pub(crate) fn publish_url(&self) -> Url {
        self.endpoint("/v1/publish", &[], None)
    }

    /// `/pub?id=<channel>`: nchan's publisher location. Channel names the tool generates need
    /// no escaping.
    pub(crate) fn nchan_publish_path(channel: &str) -> String {
        format!("/pub?id={channel}")
    }

    /// `ws://../v1/ws?channel=..[&token=..]`, or nchan's `ws://../sub/<channel>`.
    pub(crate) fn ws_url(&self, channels: &[&str], token: Option<&str>) -> Url {
        let mut url = self.subscribe_url("/v1/ws", channels, token);
        // http -> ws is a change between two special schemes, which `Url` always allows.
        let _ = url.set_scheme("ws");
        url
    }

    /// `http://../v1/sse?channel=..[&token=..]`, or nchan's `http://../sub/<channel>`.
    pub(crate) fn sse_url(&self, channels: &[&str], token: Option<&str>) -> Url {
        self.subscribe_url("/v1/sse", channels, token)
    }

    fn subscribe_url(&self, v1_path: &str, channels: &[&str], token: Option<&str>) -> Url {
        match self.dialect {
            Dialect::Understudy => self.endpoint(v1_path, channels, token),
            // One channel per nchan subscriber; the tool never subscribes to more there.
            Dialect::Nchan => {
                let channel = channels.first().copied().unwrap_or_default();
                self.endpoint(&format!("/sub/{channel}"), &[], None)
            }
        }
    }

    fn endpoint(&self, path: &str, channels: &[&str], token: Option<&str>) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url.set_query(None);
        url.set_fragment(None);
        if !channels.is_empty() || token.is_some() {
            let mut query = url.query_pairs_mut();
            for channel in channels {
                query.append_pair("channel", channel);
            }
            if let Some(token) = token {
                query.append_pair("token", token);
            }
        }
        url
    }
}

/// The pure half of [`Target::parse`]: scheme and host checks.
fn check_loopback(raw: &str) -> Result<Url> {
    let base = Url::parse(raw).with_context(|| format!("--url {raw:?} is not a URL"))?;
    if base.scheme() != "http" {
        bail!(
            "--url must use http:// (got {}://): loopback runs need no TLS",
            base.scheme()
        );
    }
    let host = base.host_str().unwrap_or_default();
    if !LOOPBACK_HOSTS.contains(&host) {
        bail!(
            "refusing --url host {host:?}: only {} may be load-tested",
            LOOPBACK_HOSTS.join(", ")
        );
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_loopback_hosts() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:80/x",
        ] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://127.0.0.2:8080",
            "https://127.0.0.1:8443",
            "http://localhost.evil.com",
            "127.0.0.1:8080",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn builds_endpoint_urls() {
        let t = Target::parse("http://127.0.0.1:18080/ignored?x=1")
            .await
            .unwrap();
        assert_eq!(
            t.publish_url().as_str(),
            "http://127.0.0.1:18080/v1/publish"
        );
        assert_eq!(
            t.ws_url(&["a", "b"], Some("j.w+t")).as_str(),
            "ws://127.0.0.1:18080/v1/ws?channel=a&channel=b&token=j.w%2Bt"
        );
        assert_eq!(
            t.sse_url(&["a"], None).as_str(),
            "http://127.0.0.1:18080/v1/sse?channel=a"
        );
        assert_eq!(t.addr(), "127.0.0.1:18080".parse().unwrap());
        assert_eq!(t.host_header(), "127.0.0.1:18080");
        let t = t.speaking(Dialect::Nchan);
        assert_eq!(
            t.ws_url(&["lt-a-0"], None).as_str(),
            "ws://127.0.0.1:18080/sub/lt-a-0"
        );
        assert_eq!(
            t.sse_url(&["lt-a-0"], None).as_str(),
            "http://127.0.0.1:18080/sub/lt-a-0"
        );
        assert_eq!(Target::nchan_publish_path("lt-a-0"), "/pub?id=lt-a-0");
    }
}
