//! Configuration: the embedded default file, a user file merged over it, environment overrides for
//! the deploy-time knobs, then validation of everything at once into typed settings. Bad
//! configuration is reported in full before any port is bound.

mod audit;
mod connections;
mod engine;
mod raw;
mod redact;
mod reload;
mod secret;
mod source;
mod vendors;

use std::net::SocketAddr;
use std::time::Duration;

pub use connections::ConnectionLimits;
pub use engine::{EngineConfig, RedisConfig};
pub use raw::Raw;
pub use reload::Reload;
pub use secret::Secret;
pub use source::ConfigSource;
pub use vendors::Vendors;

/// The default configuration, embedded in the binary.
pub const EMBEDDED: &str = include_str!("../config/understudy.toml");
/// The publisher key shipped in the default file; using it logs a warning.
pub const DEV_PUBLISHER_KEY: &str = "dev-publisher-key-change-me";
/// The subscriber secret shipped in the default file; using it logs a warning.
pub const DEV_SUBSCRIBER_SECRET: &str = "dev-subscriber-secret-change-me";
/// The admin token shipped in the default file; using it logs a warning.
pub const DEV_ADMIN_TOKEN: &str = "dev-admin-token-change-me";

/// Every problem found in a configuration, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: Server,
    pub log: Log,
    pub publish: Publish,
    pub history: History,
    pub channels: Channels,
    pub subscribers: Subscribers,
    pub auth: Auth,
    pub demo: Demo,
    pub vendors: Vendors,
    pub audit: crate::ops::audit::AuditConfig,
    /// Memory, or a Redis shared by several nodes.
    pub engine: EngineConfig,
    /// Longest planned maintenance window.
    pub max_maintenance_window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub shutdown_timeout: Duration,
    pub reconnect_jitter: Duration,
    pub drain_window: Duration,
    pub cors_allow_origins: Vec<String>,
    /// Deadlines and caps that keep idle or hostile connections from holding the listeners.
    pub connections: ConnectionLimits,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub max_body_bytes: usize,
    pub max_batch_events: usize,
    pub max_channels_per_publish: usize,
    pub idempotency_window: Duration,
    pub idempotency_max_keys: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub max_events: usize,
    pub max_age: Duration,
    pub max_bytes: usize,
    pub prune_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Channels {
    pub idle_reclaim: Duration,
    pub max_channels: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscribers {
    pub buffer_events: usize,
    pub buffer_bytes: usize,
    pub write_timeout: Duration,
    pub heartbeat: Duration,
    pub max_channels_per_connection: usize,
    pub poll_interval: Duration,
    pub long_poll_max: Duration,
    pub sse_retry: Duration,
    pub transports: Transports,
}

/// Which subscribe transports this node serves. One left out answers `503 transport_disabled`,
/// so clients move down their ladder (or an operator keeps a transport a network cannot carry
/// out of the way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    pub ws: bool,
    pub sse: bool,
    /// Both poll routes, including the one clients use to fill gaps.
    pub poll: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    pub publisher_keys: Vec<Secret>,
    pub subscribe: SubscribeAuth,
    pub subscriber_secret: Secret,
    pub admin_tokens: Vec<crate::auth::AdminToken>,
}

/// The clinic demo pages and their small backend (`src/web/demo.rs`). Off by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Demo {
    pub enabled: bool,
    /// Where the demo backend keeps its waiting-room list across restarts; `None`: memory only.
    pub state_file: Option<std::path::PathBuf>,
    /// pusher-js served at `/demo/vendor/pusher.min.js`, read at start-up if present.
    pub pusher_js: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeAuth {
    Jwt,
    None,
}

impl Config {
    /// The embedded defaults with the process environment applied.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(None, &|k| std::env::var(k).ok())
    }

    /// The embedded defaults, `file` (TOML text) merged over them, then `env` overrides.
    pub fn load(
        file: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut raw = Raw::parse(file).map_err(|e| ConfigError(vec![e]))?;
        raw.apply_env(env);
        raw.validate()
    }

    /// The embedded defaults only, without environment: for tests and tools.
    pub fn embedded() -> Self {
        Self::load(None, &|_| None).expect("the embedded configuration is valid")
    }

    /// Whether a shipped development credential is in use.
    pub fn uses_dev_credentials(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self
            .auth
            .publisher_keys
            .iter()
            .any(|k| k.expose() == DEV_PUBLISHER_KEY)
        {
            out.push("auth.publisher_keys contains the public development key");
        }
        if self.auth.subscribe == SubscribeAuth::Jwt
            && self.auth.subscriber_secret.expose() == DEV_SUBSCRIBER_SECRET
        {
            out.push("auth.subscriber_secret is the public development secret");
        }
        if self
            .auth
            .admin_tokens
            .iter()
            .any(|t| t.token.expose() == DEV_ADMIN_TOKEN)
        {
            out.push("auth.admin_tokens contains the public development token");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_the_documented_ones() {
        let c = Config::embedded();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(c.history.max_events, 1000);
        assert_eq!(c.history.max_age, Duration::from_secs(600));
        assert_eq!(c.publish.max_body_bytes, 65536);
        assert_eq!(c.auth.subscribe, SubscribeAuth::Jwt);
        assert_eq!(c.uses_dev_credentials().len(), 3);
    }

    #[test]
    fn env_overrides_the_deploy_knobs() {
        let env = |k: &str| match k {
            "UNDERSTUDY_LISTEN" => Some("127.0.0.1:1".to_string()),
            "UNDERSTUDY_PUBLISHER_KEYS" => Some("k1, k2".to_string()),
            "UNDERSTUDY_SUBSCRIBE_AUTH" => Some("none".to_string()),
            "UNDERSTUDY_LOG_FORMAT" => Some("json".to_string()),
            "UNDERSTUDY_ADMIN_TOKEN" => Some("from-env-token-0123456789".to_string()),
            _ => None,
        };
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.server.listen.port(), 1);
        let keys: Vec<&str> = c.auth.publisher_keys.iter().map(|k| k.expose()).collect();
        assert_eq!(keys, vec!["k1", "k2"]);
        assert_eq!(c.auth.subscribe, SubscribeAuth::None);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.auth.admin_tokens.last().unwrap().name, "env");
        assert_eq!(
            c.uses_dev_credentials().len(),
            1,
            "the file's dev admin token is still listed"
        );
    }

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let c = Config::load(Some("[history]\nmax_events = 5\n"), &|_| None).unwrap();
        assert_eq!(c.history.max_events, 5);
        assert_eq!(c.history.max_age, Duration::from_secs(600));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let file = r#"
            [server]
            listen = "nowhere"
            [history]
            max_events = 0
            [auth]
            subscribe = "maybe"
            publisher_keys = []
        "#;
        let err = Config::load(Some(file), &|_| None).unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        assert!(err.to_string().contains("server.listen"));
        assert!(err.to_string().contains("history.max_events"));
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_refused() {
        let err = Config::load(Some("[server]\nlisten_typo = 1\n"), &|_| None).unwrap_err();
        assert!(err.to_string().contains("listen_typo"), "{err}");
        assert!(Config::load(Some("[server"), &|_| None).is_err());
    }

    #[test]
    fn a_vendor_url_from_the_environment_replaces_the_list() {
        let env = |k: &str| {
            (k == "UNDERSTUDY_VENDOR_URL")
                .then(|| "pusher://app-key:app-secret@127.0.0.1:6001/app-id?tls=false".to_string())
        };
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.vendors.vendors.len(), 1);
        assert!(!format!("{c:?}").contains("app-secret"));
        let bad = |k: &str| (k == "UNDERSTUDY_VENDOR_URL").then(|| "gopher://x".to_string());
        let err = Config::load(None, &bad).unwrap_err();
        assert!(err.to_string().contains("vendors.urls[0]"), "{err}");
    }

    #[test]
    fn vendor_defaults_detect_a_hang_within_three_seconds() {
        let f = Config::embedded().vendors.failover;
        let canary = f.canary.expect("the canary is on by default");
        assert!(canary.interval + canary.deadline <= Duration::from_secs(3));
        assert_eq!(f.http.connect_timeout, Duration::from_millis(500));
        assert_eq!(f.lanes.request_timeout, Duration::from_secs(2));
    }

    #[test]
    fn zero_or_absurd_intervals_are_refused() {
        let file = "[vendors]\ncanary_interval_ms = 0\nwindow_ms = 0\nrequest_timeout_ms = 86400000\n[server]\nheader_read_timeout_ms = 0\nmax_connections = 0\n";
        let err = Config::load(Some(file), &|_| None).unwrap_err();
        for key in [
            "vendors.canary_interval_ms = 0",
            "vendors.window_ms = 0",
            "vendors.request_timeout_ms = 86400000",
            "server.header_read_timeout_ms = 0",
            "server.max_connections must",
        ] {
            assert!(err.to_string().contains(key), "{key} in {err}");
        }
        // A turned-off canary's interval is not looked at.
        assert!(Config::load(
            Some("[vendors]\ncanary = false\ncanary_interval_ms = 0\n"),
            &|_| None
        )
        .is_ok());
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::embedded();
        let shown = format!("{c:?}");
        assert!(!shown.contains(DEV_PUBLISHER_KEY) && !shown.contains(DEV_SUBSCRIBER_SECRET));
    }
}
