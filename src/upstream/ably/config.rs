//! Ably connection settings: key, REST/realtime host, TLS, fallback hosts.

use std::time::Duration;

use crate::upstream::pusher::config::bracket;
use crate::upstream::Secret;

/// Ably's default REST and realtime host.
pub const DEFAULT_HOST: &str = "main.realtime.ably.net";
/// How long a fallback host that worked stays preferred (Ably `fallbackRetryTimeout`).
pub const FALLBACK_RETRY_TIMEOUT: Duration = Duration::from_secs(600);
/// Ably's default message size limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The protocol version sent as `X-Ably-Version` and `v=` (VENDORS.md §1.1).
pub const PROTOCOL_VERSION: &str = "6";

/// Ably (or an Ably-compatible server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AblyConfig {
    /// Operator-given vendor name (default `ably`).
    pub name: String,
    /// `appId.keyId`: public (it names the key), sent to browsers that use token auth.
    pub key_name: String,
    pub key_secret: Secret,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Hosts to retry on after a time-out, connect failure or 5xx. Default: Ably's
    /// `main.[a-e].fallback.ably-realtime.com` for the default host, none for any other host.
    pub fallback_hosts: Vec<String>,
    /// Largest event frame accepted. Default 64 KiB.
    pub max_message_bytes: usize,
    /// Realtime (WebSocket) host when it differs from `host` (e.g. REST through a proxy).
    pub ws_host: Option<String>,
    /// Realtime port when it differs from `port`.
    pub ws_port: Option<u16>,
}

impl AblyConfig {
    pub fn new(key_name: &str, key_secret: Secret, host: &str, port: u16, tls: bool) -> Self {
        AblyConfig {
            name: "ably".into(),
            key_name: key_name.into(),
            key_secret,
            host: host.into(),
            port,
            tls,
            fallback_hosts: default_fallbacks(host),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            ws_host: None,
            ws_port: None,
        }
    }

    /// The realtime host browsers (and the canary) connect to.
    pub fn realtime_host(&self) -> &str {
        self.ws_host.as_deref().unwrap_or(&self.host)
    }

    pub fn realtime_port(&self) -> u16 {
        self.ws_port.unwrap_or(self.port)
    }

    /// `http(s)://{host}:{port}` for `host` (the primary or a fallback).
    pub fn rest_base(&self, host: &str) -> Result<url::Url, url::ParseError> {
        let scheme = if self.tls { "https" } else { "http" };
        url::Url::parse(&format!("{scheme}://{}:{}", bracket(host), self.port))
    }

    /// `ws(s)://host:port/?key=..&format=json&v=6&heartbeats=true&echo=false`. Carries the key:
    /// never log it.
    pub fn realtime_url(&self) -> Result<url::Url, url::ParseError> {
        let scheme = if self.tls { "wss" } else { "ws" };
        let mut url = url::Url::parse(&format!(
            "{scheme}://{}:{}/",
            bracket(&self.host),
            self.port
        ))?;
        url.query_pairs_mut()
            .append_pair(
                "key",
                &format!("{}:{}", self.key_name, self.key_secret.expose()),
            )
            .append_pair("format", "json")
            .append_pair("v", PROTOCOL_VERSION)
            .append_pair("heartbeats", "true")
            .append_pair("echo", "false");
        Ok(url)
    }
}

/// Ably's default fallbacks apply only to its default host.
pub fn default_fallbacks(host: &str) -> Vec<String> {
    if host == DEFAULT_HOST {
        ["a", "b", "c", "d", "e"]
            .iter()
            .map(|l| format!("main.{l}.fallback.ably-realtime.com"))
            .collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks_only_for_the_default_host() {
        let cloud = AblyConfig::new("xVLyHw.mDYnFA", Secret::new("s"), DEFAULT_HOST, 443, true);
        assert_eq!(cloud.fallback_hosts.len(), 5);
        assert_eq!(cloud.fallback_hosts[0], "main.a.fallback.ably-realtime.com");
        let local = AblyConfig::new("app-key", Secret::new("s"), "127.0.0.1", 6001, false);
        assert!(local.fallback_hosts.is_empty());
        assert_eq!(
            local.rest_base("127.0.0.1").unwrap().as_str(),
            "http://127.0.0.1:6001/"
        );
    }

    #[test]
    fn realtime_url_carries_key_and_protocol() {
        let local = AblyConfig::new(
            "app-key",
            Secret::new("app-secret"),
            "127.0.0.1",
            6001,
            false,
        );
        assert_eq!(
            local.realtime_url().unwrap().as_str(),
            "ws://127.0.0.1:6001/?key=app-key%3Aapp-secret&format=json&v=6&heartbeats=true&echo=false"
        );
    }
}
