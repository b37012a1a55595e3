//! Pusher connection settings and the URLs derived from them (HTTP API base, WebSocket URL).

use crate::upstream::Secret;

/// Pusher Channels (or a Pusher-compatible server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PusherConfig {
    /// Operator-given vendor name (default `pusher`).
    pub name: String,
    pub app_id: String,
    /// App key: public, sent to browsers.
    pub key: String,
    pub secret: Secret,
    /// HTTP API host, e.g. `api-eu.pusher.com` or `127.0.0.1`.
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Cluster (`mt1`, `eu`...): given, or read from an `api-{cluster}.pusher.com` host.
    pub cluster: Option<String>,
    /// WebSocket host; default: `ws-{cluster}.pusher.com` for Pusher's cloud, else `host`.
    pub ws_host: Option<String>,
    /// WebSocket port; default: 443 for Pusher's cloud, else `port`.
    pub ws_port: Option<u16>,
    /// Largest event `data` Pusher takes. Default 10 KiB (Pusher's limit).
    pub max_data_bytes: usize,
    /// Events go on `private-` channels, which only a client signed by the app secret (through
    /// `POST /v1/vendor/auth`) can subscribe to. Default `true`; `vendors.public_channels` turns
    /// it off for every Pusher vendor.
    pub private_channels: bool,
}

/// Pusher's limit on channel name length.
pub const MAX_CHANNEL_LEN: usize = 164;
/// Pusher's limit on events per `batch_events` call.
pub const MAX_BATCH: usize = 10;
/// Pusher's default `data` limit.
pub const DEFAULT_MAX_DATA_BYTES: usize = 10 * 1024;

impl PusherConfig {
    /// A config for `host:port` with the defaults for everything else.
    pub fn new(app_id: &str, key: &str, secret: Secret, host: &str, port: u16, tls: bool) -> Self {
        PusherConfig {
            name: "pusher".into(),
            app_id: app_id.into(),
            key: key.into(),
            secret,
            host: host.into(),
            port,
            tls,
            cluster: cluster_of_host(host),
            ws_host: None,
            ws_port: None,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            private_channels: true,
        }
    }

    /// Whether the host is Pusher's own cloud (`*.pusher.com`, `*.pusherapp.com`).
    pub fn is_pusher_cloud(&self) -> bool {
        self.host.ends_with(".pusher.com") || self.host.ends_with(".pusherapp.com")
    }

    /// `http(s)://host:port` of the HTTP API.
    pub fn api_base(&self) -> Result<url::Url, url::ParseError> {
        let scheme = if self.tls { "https" } else { "http" };
        url::Url::parse(&format!("{scheme}://{}:{}", bracket(&self.host), self.port))
    }

    /// The WebSocket host the browsers (and the canary) connect to.
    pub fn realtime_host(&self) -> String {
        if let Some(host) = &self.ws_host {
            return host.clone();
        }
        match (&self.cluster, self.is_pusher_cloud()) {
            (Some(cluster), true) => format!("ws-{cluster}.pusher.com"),
            _ => self.host.clone(),
        }
    }

    pub fn realtime_port(&self) -> u16 {
        self.ws_port.unwrap_or(if self.is_pusher_cloud() {
            443
        } else {
            self.port
        })
    }

    /// `ws(s)://host:port/app/{key}?protocol=7&client=understudy&version=..&flash=false`.
    pub fn realtime_url(&self) -> Result<url::Url, url::ParseError> {
        let scheme = if self.tls { "wss" } else { "ws" };
        let mut url = url::Url::parse(&format!(
            "{scheme}://{}:{}/app/",
            bracket(&self.realtime_host()),
            self.realtime_port()
        ))?;
        url.path_segments_mut()
            .map_err(|_| url::ParseError::RelativeUrlWithCannotBeABaseBase)?
            .pop_if_empty()
            .push(&self.key);
        url.query_pairs_mut()
            .append_pair("protocol", "7")
            .append_pair("client", "understudy")
            .append_pair("version", env!("CARGO_PKG_VERSION"))
            .append_pair("flash", "false");
        Ok(url)
    }
}

/// `mt1` from `api-mt1.pusher.com`.
pub fn cluster_of_host(host: &str) -> Option<String> {
    let rest = host.strip_prefix("api-")?;
    let cluster = rest.strip_suffix(".pusher.com")?;
    (!cluster.is_empty() && !cluster.contains('.')).then(|| cluster.to_owned())
}

/// IPv6 literals need brackets in URLs.
pub(crate) fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_hosts_derive_cluster_and_ws_host() {
        let c = PusherConfig::new("1", "k", Secret::new("s"), "api-eu.pusher.com", 443, true);
        assert_eq!(c.cluster.as_deref(), Some("eu"));
        assert_eq!(c.api_base().unwrap().as_str(), "https://api-eu.pusher.com/");
        assert_eq!(
            c.realtime_url().unwrap().as_str(),
            concat!(
                "wss://ws-eu.pusher.com/app/k?protocol=7&client=understudy&version=",
                env!("CARGO_PKG_VERSION"),
                "&flash=false"
            )
        );
    }

    #[test]
    fn compatible_servers_use_the_api_host_for_websockets() {
        let c = PusherConfig::new(
            "app-id",
            "app-key",
            Secret::new("s"),
            "127.0.0.1",
            6001,
            false,
        );
        assert_eq!(c.cluster, None);
        assert_eq!(c.api_base().unwrap().as_str(), "http://127.0.0.1:6001/");
        assert!(c
            .realtime_url()
            .unwrap()
            .as_str()
            .starts_with("ws://127.0.0.1:6001/app/app-key?protocol=7"));
    }
}
