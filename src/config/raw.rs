//! The configuration as written: TOML merged over the embedded file, environment overrides, and
//! the one `validate` step that turns it into typed settings or a list of every problem.

use super::secret::MIN_SECRET_LEN;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::audit::RawAudit;
use super::engine::RawEngine;
use super::vendors::RawVendors;
use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    server: RawServer,
    log: RawLog,
    publish: RawPublish,
    history: RawHistory,
    channels: RawChannels,
    subscribers: RawSubscribers,
    auth: RawAuth,
    demo: RawDemo,
    vendors: RawVendors,
    audit: RawAudit,
    maintenance: RawMaintenance,
    engine: RawEngine,
    /// `[[apps]]`; none in the embedded file.
    #[serde(default)]
    apps: Vec<super::apps::RawApp>,
    /// `[tenant_defaults]`: every tenant's quotas; none in the embedded file.
    #[serde(default)]
    tenant_defaults: super::tenants::RawQuotas,
    /// `[[tenants]]`; none in the embedded file.
    #[serde(default)]
    tenants: Vec<super::tenants::RawTenant>,
    /// Environment values that could not be applied; reported by `validate` with the rest.
    #[serde(skip)]
    env_errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    max_window_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    admin_listen: String,
    shutdown_timeout_ms: u64,
    reconnect_jitter_ms: u64,
    drain_window_ms: u64,
    cors_allow_origins: Vec<String>,
    admin_cors_allow_origins: Vec<String>,
    header_read_timeout_ms: u64,
    body_read_timeout_ms: u64,
    max_connections: usize,
    max_connections_per_address: usize,
    admin_max_connections: usize,
    max_new_subscribers_per_second: u32,
    new_subscribers_burst: u32,
    reconnect_later_jitter_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    filter: String,
    format: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    max_body_bytes: usize,
    max_batch_events: usize,
    max_channels_per_publish: usize,
    idempotency_window_secs: u64,
    idempotency_max_keys: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    max_events: usize,
    max_age_secs: u64,
    max_bytes: usize,
    prune_interval_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannels {
    idle_reclaim_secs: u64,
    max_channels: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscribers {
    buffer_events: usize,
    buffer_bytes: usize,
    write_timeout_ms: u64,
    heartbeat_ms: u64,
    max_channels_per_connection: usize,
    poll_interval_ms: u64,
    long_poll_max_ms: u64,
    sse_retry_ms: u64,
    transports: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    publisher_keys: Vec<String>,
    subscribe: String,
    subscriber_secret: String,
    admin_tokens: Vec<RawAdminToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdminToken {
    name: String,
    token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDemo {
    enabled: bool,
    state_file: String,
    pusher_js: String,
}

impl std::fmt::Debug for RawAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAuth")
            .field("subscribe", &self.subscribe)
            .finish_non_exhaustive()
    }
}

/// Recursively lays `over` on top of `base`: tables merge, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl Raw {
    /// The embedded file with `file` merged over it.
    pub fn parse(file: Option<&str>) -> Result<Self, String> {
        let mut table: toml::Table = EMBEDDED.parse().expect("embedded configuration parses");
        if let Some(text) = file {
            let over: toml::Table = text.parse().map_err(|e| super::redact::syntax(&e, text))?;
            merge(&mut table, over);
        }
        Raw::deserialize(table).map_err(|e| super::redact::shape(&e.to_string()))
    }

    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        super::apps::apply_env(&mut self.apps, env);
        super::tenants::apply_env(&mut self.tenants, env);
        let set = |name: &str, target: &mut String| {
            if let Some(v) = env(name) {
                *target = v;
            }
        };
        set("UNDERSTUDY_LISTEN", &mut self.server.listen);
        set("UNDERSTUDY_ADMIN_LISTEN", &mut self.server.admin_listen);
        set("UNDERSTUDY_SUBSCRIBE_AUTH", &mut self.auth.subscribe);
        set(
            "UNDERSTUDY_SUBSCRIBER_SECRET",
            &mut self.auth.subscriber_secret,
        );
        set("UNDERSTUDY_LOG", &mut self.log.filter);
        set("UNDERSTUDY_LOG_FORMAT", &mut self.log.format);
        // Replaces the file's list, so the shipped development token stops working the moment an
        // operator sets their own; a named list stays possible in the file.
        if let Some(token) = env("UNDERSTUDY_ADMIN_TOKEN") {
            self.auth.admin_tokens = vec![RawAdminToken {
                name: "env".into(),
                token,
            }];
        }
        if let Some(dir) = env("UNDERSTUDY_AUDIT_DIR") {
            self.audit.dir = dir;
        }
        if let Some(url) = env("UNDERSTUDY_ENGINE_URL") {
            self.engine.url = url;
        }
        if let Some(url) = env("UNDERSTUDY_VENDOR_URL") {
            self.vendors.urls = vec![url];
        }
        if let Some(path) = env("UNDERSTUDY_VENDOR_CA_FILE") {
            self.vendors.ca_file = path;
        }
        if let Some(keys) = env("UNDERSTUDY_PUBLISHER_KEYS") {
            self.auth.publisher_keys = comma_list(&keys);
        }
        if let Some(list) = env("UNDERSTUDY_TRANSPORTS") {
            self.subscribers.transports = comma_list(&list);
        }
        if let Some(v) = env("UNDERSTUDY_DEMO") {
            match v.trim() {
                "true" | "1" => self.demo.enabled = true,
                "false" | "0" => self.demo.enabled = false,
                other => self.env_errors.push(format!(
                    "UNDERSTUDY_DEMO = {other:?}: use \"true\" or \"false\""
                )),
            }
        }
    }

    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut errs = self.env_errors.clone();
        let transports = transports(&self.subscribers.transports, &mut errs);
        let mut addr = |key: &str, v: &str| -> SocketAddr {
            v.parse().unwrap_or_else(|_| {
                errs.push(format!(
                    "{key} = {v:?} is not an address; write it as IP:PORT, e.g. 127.0.0.1:8080"
                ));
                SocketAddr::from(([127, 0, 0, 1], 0))
            })
        };
        let listen = addr("server.listen", &self.server.listen);
        let admin_listen = addr("server.admin_listen", &self.server.admin_listen);
        let mut check = |ok: bool, msg: String| {
            if !ok {
                errs.push(msg);
            }
        };
        check(
            listen.port() == 0 || listen != admin_listen,
            "server.listen and server.admin_listen must differ: the admin API listens apart".into(),
        );
        check(
            self.server.drain_window_ms < self.server.shutdown_timeout_ms,
            format!(
                "server.drain_window_ms ({}) must be shorter than server.shutdown_timeout_ms ({}): connections need time to leave after their turn",
                self.server.drain_window_ms, self.server.shutdown_timeout_ms
            ),
        );
        for origin in &self.server.cors_allow_origins {
            check(
                origin == "*" || origin.starts_with("http://") || origin.starts_with("https://"),
                format!("server.cors_allow_origins: {origin:?} must be \"*\" or an origin like https://app.example.com"),
            );
        }
        for origin in &self.server.admin_cors_allow_origins {
            check(
                origin.starts_with("http://") || origin.starts_with("https://"),
                format!("server.admin_cors_allow_origins: {origin:?} must be an origin like https://ops.example.com (\"*\" is not allowed on the admin API)"),
            );
        }
        let format = match self.log.format.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                check(
                    false,
                    format!("log.format = {other:?}: use \"pretty\" or \"json\""),
                );
                LogFormat::Pretty
            }
        };
        let subscribe = match self.auth.subscribe.as_str() {
            "jwt" => SubscribeAuth::Jwt,
            "none" => SubscribeAuth::None,
            other => {
                check(
                    false,
                    format!("auth.subscribe = {other:?}: use \"jwt\" or \"none\""),
                );
                SubscribeAuth::None
            }
        };
        check(
            !self.auth.publisher_keys.is_empty(),
            "auth.publisher_keys is empty: publishers could not authenticate; add a key".into(),
        );
        // Lengths only, never the secret itself: these messages reach logs and the reload answer.
        let count = self.auth.publisher_keys.len();
        for (i, key) in self.auth.publisher_keys.iter().enumerate() {
            check(
                key.len() >= MIN_SECRET_LEN,
                format!(
                    "auth.publisher_keys: key {} of {count} has {} characters; use at least {MIN_SECRET_LEN} ({GEN_SECRET_HINT})",
                    i + 1,
                    key.len()
                ),
            );
        }
        check(
            subscribe != SubscribeAuth::Jwt || self.auth.subscriber_secret.len() >= MIN_SECRET_LEN,
            format!(
                "auth.subscriber_secret must be at least {MIN_SECRET_LEN} characters when auth.subscribe = \"jwt\" ({GEN_SECRET_HINT})"
            ),
        );
        for t in &self.auth.admin_tokens {
            check(
                !t.name.is_empty() && t.token.len() >= MIN_SECRET_LEN,
                format!(
                    "auth.admin_tokens: token {:?} needs a name and at least {MIN_SECRET_LEN} characters ({GEN_SECRET_HINT})",
                    t.name
                ),
            );
        }
        let dev = dev_credentials(
            self.auth.publisher_keys.iter().map(String::as_str),
            subscribe,
            &self.auth.subscriber_secret,
            self.auth.admin_tokens.iter().map(|t| t.token.as_str()),
        );
        if let Some(refusal) = protected_mode(&[listen, admin_listen], &dev) {
            check(false, refusal);
        }
        let mut positive = |key: &str, v: u64| {
            check(v > 0, format!("{key} must be greater than 0"));
        };
        positive("history.max_events", self.history.max_events as u64);
        positive("history.max_age_secs", self.history.max_age_secs);
        positive("history.max_bytes", self.history.max_bytes as u64);
        positive("history.prune_interval_ms", self.history.prune_interval_ms);
        positive("publish.max_body_bytes", self.publish.max_body_bytes as u64);
        positive("channels.max_channels", self.channels.max_channels as u64);
        positive(
            "subscribers.buffer_events",
            self.subscribers.buffer_events as u64,
        );
        positive(
            "subscribers.buffer_bytes",
            self.subscribers.buffer_bytes as u64,
        );
        positive("subscribers.heartbeat_ms", self.subscribers.heartbeat_ms);
        positive(
            "subscribers.write_timeout_ms",
            self.subscribers.write_timeout_ms,
        );
        positive(
            "subscribers.poll_interval_ms",
            self.subscribers.poll_interval_ms,
        );
        let mut at_most = |key: &str, v: usize, max: usize| {
            check(
                (1..=max).contains(&v),
                format!("{key} = {v} must be between 1 and {max}"),
            );
        };
        at_most(
            "publish.max_batch_events",
            self.publish.max_batch_events,
            500,
        );
        at_most(
            "publish.max_channels_per_publish",
            self.publish.max_channels_per_publish,
            100,
        );
        at_most(
            "subscribers.max_channels_per_connection",
            self.subscribers.max_channels_per_connection,
            10_000,
        );
        at_most(
            "subscribers.long_poll_max_ms",
            self.subscribers.long_poll_max_ms as usize,
            30_000,
        );
        let connections = super::connections::validate(
            super::connections::RawConnections {
                header_read_timeout_ms: self.server.header_read_timeout_ms,
                body_read_timeout_ms: self.server.body_read_timeout_ms,
                max_connections: self.server.max_connections,
                max_connections_per_address: self.server.max_connections_per_address,
                admin_max_connections: self.server.admin_max_connections,
                max_new_subscribers_per_second: self.server.max_new_subscribers_per_second,
                new_subscribers_burst: self.server.new_subscribers_burst,
                reconnect_later_jitter_ms: self.server.reconnect_later_jitter_ms,
            },
            &mut errs,
        );
        let vendors = self.vendors.validate(&mut errs);
        let audit = self.audit.validate(&mut errs);
        let engine = self.engine.validate(&mut errs);
        let apps = super::apps::validate(self.apps, MIN_SECRET_LEN, &mut errs);
        let public_channels = vendors.public_channels;
        let (tenant_defaults, tenants) = super::tenants::validate(
            self.tenant_defaults,
            self.tenants,
            &apps,
            MIN_SECRET_LEN,
            &|url| super::vendors::tenant_vendor(url, public_channels),
            &mut errs,
        );
        if self.maintenance.max_window_secs == 0 {
            errs.push("maintenance.max_window_secs must be greater than 0".into());
        }
        if !errs.is_empty() {
            return Err(ConfigError(errs));
        }
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        Ok(Config {
            server: Server {
                listen,
                admin_listen,
                shutdown_timeout: ms(self.server.shutdown_timeout_ms),
                reconnect_jitter: ms(self.server.reconnect_jitter_ms),
                drain_window: ms(self.server.drain_window_ms),
                cors_allow_origins: self.server.cors_allow_origins,
                admin_cors_allow_origins: self.server.admin_cors_allow_origins,
                connections,
            },
            log: Log {
                filter: self.log.filter,
                format,
            },
            publish: Publish {
                max_body_bytes: self.publish.max_body_bytes,
                max_batch_events: self.publish.max_batch_events,
                max_channels_per_publish: self.publish.max_channels_per_publish,
                idempotency_window: secs(self.publish.idempotency_window_secs),
                idempotency_max_keys: self.publish.idempotency_max_keys,
            },
            history: History {
                max_events: self.history.max_events,
                max_age: secs(self.history.max_age_secs),
                max_bytes: self.history.max_bytes,
                prune_interval: ms(self.history.prune_interval_ms),
            },
            channels: Channels {
                idle_reclaim: secs(self.channels.idle_reclaim_secs),
                max_channels: self.channels.max_channels,
            },
            subscribers: Subscribers {
                buffer_events: self.subscribers.buffer_events,
                buffer_bytes: self.subscribers.buffer_bytes,
                write_timeout: ms(self.subscribers.write_timeout_ms),
                heartbeat: ms(self.subscribers.heartbeat_ms),
                max_channels_per_connection: self.subscribers.max_channels_per_connection,
                poll_interval: ms(self.subscribers.poll_interval_ms),
                long_poll_max: ms(self.subscribers.long_poll_max_ms),
                sse_retry: ms(self.subscribers.sse_retry_ms),
                transports,
            },
            vendors,
            audit,
            engine,
            apps,
            tenant_defaults,
            tenants,
            max_maintenance_window: Duration::from_secs(self.maintenance.max_window_secs),
            auth: Auth {
                publisher_keys: self
                    .auth
                    .publisher_keys
                    .into_iter()
                    .map(Secret::new)
                    .collect(),
                subscribe,
                subscriber_secret: Secret::new(self.auth.subscriber_secret),
                admin_tokens: self
                    .auth
                    .admin_tokens
                    .into_iter()
                    .map(|t| crate::auth::AdminToken {
                        name: t.name,
                        token: Secret::new(t.token),
                    })
                    .collect(),
            },
            demo: Demo {
                enabled: self.demo.enabled,
                state_file: path(self.demo.state_file),
                pusher_js: path(self.demo.pusher_js),
            },
        })
    }
}

/// Shortest publisher key, subscriber secret or admin token accepted.
const GEN_SECRET_HINT: &str = "`understudy gen-secret` prints fresh ones";

/// Protected mode: a listener that other machines can reach while a public development
/// credential is in force is refused, naming each credential to set. Loopback stays open so the
/// README's first command works on a laptop.
fn protected_mode(listeners: &[SocketAddr], dev: &[DevCredential]) -> Option<String> {
    let exposed: Vec<String> = listeners
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    if exposed.is_empty() || dev.is_empty() {
        return None;
    }
    let set: Vec<String> = dev
        .iter()
        .map(|d| format!("{} ({}: {})", d.env, d.key, d.what))
        .collect();
    Some(format!(
        "protected mode: refusing to listen on {} (reachable from other machines) while public development credentials are in force; set {} to secrets of your own ({GEN_SECRET_HINT}), or listen on 127.0.0.1 only",
        exposed.join(" and "),
        set.join(", ")
    ))
}

/// A comma-separated environment value, items trimmed, empty items dropped.
fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

/// An optional path: empty means none.
fn path(v: String) -> Option<std::path::PathBuf> {
    (!v.trim().is_empty()).then(|| v.into())
}

/// `subscribers.transports`: known names, at least one.
fn transports(names: &[String], errs: &mut Vec<String>) -> Transports {
    let mut t = Transports {
        ws: false,
        sse: false,
        poll: false,
    };
    for name in names {
        match name.as_str() {
            "ws" => t.ws = true,
            "sse" => t.sse = true,
            "poll" => t.poll = true,
            other => errs.push(format!(
                "subscribers.transports: unknown transport {other:?}; use \"ws\", \"sse\" or \"poll\""
            )),
        }
    }
    if names.is_empty() {
        errs.push(
            "subscribers.transports is empty: nobody could subscribe; list at least one of \"ws\", \"sse\", \"poll\""
                .into(),
        );
    }
    t
}
