//! Configuration: the embedded default file, a user file merged over it, environment overrides for
//! the deploy-time knobs, then validation of everything at once into typed settings. Bad
//! configuration is reported in full before any port is bound.

pub(crate) mod apps;
mod audit;
mod audit_trail;
mod connections;
pub(crate) mod engine;
mod raw;
mod redact;
mod reload;
pub(crate) mod secret;
mod source;
mod tenants;
mod vendors;

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::auth::token::SubscribeAuth;
pub use apps::{AppConfig, Forward};
pub use audit_trail::AuditConfig;
pub use connections::{ConnectionLimits, RateLimit};
pub use engine::{EngineConfig, RedisConfig};
pub use raw::Raw;
pub use reload::Reload;
pub use secret::{fresh_secret, Secret};
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
    pub audit: AuditConfig,
    /// Memory, or a Redis shared by several nodes.
    pub engine: EngineConfig,
    /// Longest planned maintenance window.
    pub max_maintenance_window: Duration,
    /// `[[apps]]`: Pusher apps and Ably keys served by the drop-in protocols.
    pub apps: Vec<AppConfig>,
    /// `[tenant_defaults]`: the quotas of the default tenant and of every tenant that does not
    /// set its own.
    pub tenant_defaults: crate::tenant::Quotas,
    /// `[[tenants]]`: the customers sharing this node and the channels each owns.
    pub tenants: Vec<crate::tenant::TenantConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub shutdown_timeout: Duration,
    pub reconnect_jitter: Duration,
    pub drain_window: Duration,
    pub cors_allow_origins: Vec<String>,
    /// Origins whose pages may call the admin API from a browser; empty: none.
    pub admin_cors_allow_origins: Vec<String>,
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

    /// Why the vendor path is readable without a token, when it is (`vendors.public_channels`
    /// with a vendor whose channels it makes public).
    pub fn public_vendor_channels(&self) -> Option<&'static str> {
        let has_pusher = self
            .vendors
            .vendors
            .iter()
            .any(|v| matches!(v, crate::upstream::VendorConfig::Pusher(_)));
        (self.vendors.public_channels && has_pusher).then_some(
            "vendors.public_channels = true: events go on public Pusher channels that anyone with the app key can read, without an understudy token",
        )
    }

    /// The shipped development credentials in force.
    pub fn uses_dev_credentials(&self) -> Vec<DevCredential> {
        dev_credentials(
            self.auth.publisher_keys.iter().map(Secret::expose),
            self.auth.subscribe,
            self.auth.subscriber_secret.expose(),
            self.auth.admin_tokens.iter().map(|t| t.token.expose()),
        )
    }
}

/// A public development credential in force, and what replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevCredential {
    /// The configuration key that holds it.
    pub key: &'static str,
    /// The environment variable that replaces it.
    pub env: &'static str,
    pub what: &'static str,
}

impl std::fmt::Display for DevCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} (set {})", self.key, self.what, self.env)
    }
}

/// Which of the shipped development credentials are in force.
fn dev_credentials<'a>(
    mut publisher_keys: impl Iterator<Item = &'a str>,
    subscribe: SubscribeAuth,
    subscriber_secret: &str,
    mut admin_tokens: impl Iterator<Item = &'a str>,
) -> Vec<DevCredential> {
    let mut out = Vec::new();
    if publisher_keys.any(|k| k == DEV_PUBLISHER_KEY) {
        out.push(DevCredential {
            key: "auth.publisher_keys",
            env: "UNDERSTUDY_PUBLISHER_KEYS",
            what: "holds the public development key",
        });
    }
    if subscribe == SubscribeAuth::Jwt && subscriber_secret == DEV_SUBSCRIBER_SECRET {
        out.push(DevCredential {
            key: "auth.subscriber_secret",
            env: "UNDERSTUDY_SUBSCRIBER_SECRET",
            what: "is the public development secret",
        });
    }
    if admin_tokens.any(|t| t == DEV_ADMIN_TOKEN) {
        out.push(DevCredential {
            key: "auth.admin_tokens",
            env: "UNDERSTUDY_ADMIN_TOKEN",
            what: "holds the public development token",
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::VendorConfig;

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
            "UNDERSTUDY_PUBLISHER_KEYS" => {
                Some("key-one-0123456789, key-two-0123456789".to_string())
            }
            "UNDERSTUDY_SUBSCRIBE_AUTH" => Some("none".to_string()),
            "UNDERSTUDY_LOG_FORMAT" => Some("json".to_string()),
            "UNDERSTUDY_ADMIN_TOKEN" => Some("from-env-token-0123456789".to_string()),
            _ => None,
        };
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.server.listen.port(), 1);
        let keys: Vec<&str> = c.auth.publisher_keys.iter().map(|k| k.expose()).collect();
        assert_eq!(keys, vec!["key-one-0123456789", "key-two-0123456789"]);
        assert_eq!(c.auth.subscribe, SubscribeAuth::None);
        assert_eq!(c.log.format, LogFormat::Json);
        let names: Vec<&str> = c
            .auth
            .admin_tokens
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, vec!["env"], "the env token replaces the file's list");
        assert_eq!(c.uses_dev_credentials(), vec![]);
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn protected_mode_refuses_an_exposed_listener_with_development_credentials() {
        let e = Config::load(None, &env_of(&[("UNDERSTUDY_LISTEN", "0.0.0.0:8080")])).unwrap_err();
        let refusal =
            e.0.iter()
                .find(|m| m.starts_with("protected mode"))
                .expect("refused by protected mode");
        assert!(refusal.contains("0.0.0.0:8080"), "{refusal}");
        assert!(!refusal.contains("127.0.0.1:9090"), "{refusal}");
        for var in [
            "UNDERSTUDY_PUBLISHER_KEYS",
            "UNDERSTUDY_SUBSCRIBER_SECRET",
            "UNDERSTUDY_ADMIN_TOKEN",
        ] {
            assert!(refusal.contains(var), "names {var}: {refusal}");
        }
        assert!(
            !refusal.contains(DEV_ADMIN_TOKEN),
            "never echoes a secret: {refusal}"
        );
        // The admin listener alone counts too, and one credential left is still refused.
        let e = Config::load(
            None,
            &env_of(&[
                ("UNDERSTUDY_ADMIN_LISTEN", "[::]:9090"),
                ("UNDERSTUDY_PUBLISHER_KEYS", "real-key-0123456789abcdef"),
                ("UNDERSTUDY_ADMIN_TOKEN", "real-token-0123456789abcdef"),
            ]),
        )
        .unwrap_err();
        let refusal =
            e.0.iter()
                .find(|m| m.starts_with("protected mode"))
                .unwrap();
        assert!(refusal.contains("[::]:9090"), "{refusal}");
        assert!(
            refusal.contains("UNDERSTUDY_SUBSCRIBER_SECRET"),
            "{refusal}"
        );
        assert!(!refusal.contains("UNDERSTUDY_ADMIN_TOKEN"), "{refusal}");
    }

    #[test]
    fn an_exposed_listener_starts_with_credentials_of_its_own() {
        let c = Config::load(
            None,
            &env_of(&[
                ("UNDERSTUDY_LISTEN", "0.0.0.0:8080"),
                ("UNDERSTUDY_ADMIN_LISTEN", "0.0.0.0:9090"),
                ("UNDERSTUDY_PUBLISHER_KEYS", "real-key-0123456789abcdef"),
                (
                    "UNDERSTUDY_SUBSCRIBER_SECRET",
                    "real-secret-0123456789abcdef",
                ),
                ("UNDERSTUDY_ADMIN_TOKEN", "real-token-0123456789abcdef"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
        // Loopback with the development credentials is the README's first command: allowed.
        assert_eq!(Config::embedded().uses_dev_credentials().len(), 3);
        // Subscriber auth off: the development secret is not in force.
        let c = Config::load(
            None,
            &env_of(&[
                ("UNDERSTUDY_LISTEN", "0.0.0.0:8080"),
                ("UNDERSTUDY_SUBSCRIBE_AUTH", "none"),
                ("UNDERSTUDY_PUBLISHER_KEYS", "real-key-0123456789abcdef"),
                ("UNDERSTUDY_ADMIN_TOKEN", "real-token-0123456789abcdef"),
            ]),
        );
        assert!(c.is_ok(), "{:?}", c.err());
    }

    #[test]
    fn short_secrets_are_refused_without_showing_them() {
        let e = Config::load(
            None,
            &env_of(&[
                (
                    "UNDERSTUDY_PUBLISHER_KEYS",
                    "real-key-0123456789abcdef,short-key",
                ),
                ("UNDERSTUDY_SUBSCRIBER_SECRET", "tiny-secret"),
                ("UNDERSTUDY_ADMIN_TOKEN", "tiny-token"),
            ]),
        )
        .unwrap_err();
        let all = e.0.join("\n");
        assert!(
            all.contains("auth.publisher_keys: key 2 of 2 has 9 characters; use at least 16"),
            "{all}"
        );
        assert!(
            all.contains("auth.subscriber_secret must be at least 16"),
            "{all}"
        );
        assert!(
            all.contains("auth.admin_tokens: token \"env\" needs a name and at least 16"),
            "{all}"
        );
        for secret in ["short-key", "tiny-secret", "tiny-token"] {
            assert!(!all.contains(secret), "{secret} echoed: {all}");
        }
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
    fn vendor_channels_are_private_unless_made_public() {
        let url = "[vendors]\nurls = [\"pusher://k:s@127.0.0.1:6001/app?tls=false\"]\n";
        let private = Config::load(Some(url), &|_| None).unwrap();
        let VendorConfig::Pusher(p) = &private.vendors.vendors[0] else {
            panic!("a pusher vendor")
        };
        assert!(p.private_channels);
        assert_eq!(private.public_vendor_channels(), None);
        let public =
            Config::load(Some(&format!("{url}public_channels = true\n")), &|_| None).unwrap();
        let VendorConfig::Pusher(p) = &public.vendors.vendors[0] else {
            panic!("a pusher vendor")
        };
        assert!(!p.private_channels);
        assert!(public
            .public_vendor_channels()
            .is_some_and(|w| w.contains("public_channels")));
    }

    #[test]
    fn a_vendor_ca_file_is_read_at_load_and_its_problems_listed() {
        let dir = std::env::temp_dir().join(format!("understudy-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&good, params.self_signed(&key).unwrap().pem()).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();

        let env = |k: &str| (k == "UNDERSTUDY_VENDOR_CA_FILE").then(|| good.display().to_string());
        let c = Config::load(None, &env).unwrap();
        let ca = c.vendors.failover.http.ca.expect("the bundle is loaded");
        assert_eq!((ca.path(), ca.len()), (good.as_path(), 1));
        assert!(Config::embedded().vendors.failover.http.ca.is_none());

        let file = format!(
            "[vendors]\nca_file = {:?}\n[history]\nmax_events = 0\n",
            dir.join("missing.pem").display().to_string()
        );
        let err = Config::load(Some(&file), &|_| None).unwrap_err();
        assert_eq!(err.0.len(), 2, "every problem at once: {err}");
        assert!(
            err.0
                .iter()
                .any(|e| e.starts_with("vendors.ca_file: ")
                    && e.contains("missing.pem: cannot be read")),
            "{err}"
        );
        let file = format!("[vendors]\nca_file = {:?}\n", empty.display().to_string());
        let err = Config::load(Some(&file), &|_| None).unwrap_err();
        assert!(
            err.to_string().contains("empty.pem: no certificate in it"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
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
        let file = "[vendors]\ncanary_interval_ms = 0\nwindow_ms = 0\nrequest_timeout_ms = 86400000\n[server]\nheader_read_timeout_ms = 0\nmax_connections = 0\nnew_subscribers_burst = 0\nreconnect_later_jitter_ms = 3600000\n";
        let err = Config::load(Some(file), &|_| None).unwrap_err();
        for key in [
            "vendors.canary_interval_ms = 0",
            "vendors.window_ms = 0",
            "vendors.request_timeout_ms = 86400000",
            "server.header_read_timeout_ms = 0",
            "server.max_connections must",
            "server.new_subscribers_burst must be at least 1",
            "server.reconnect_later_jitter_ms = 3600000",
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
