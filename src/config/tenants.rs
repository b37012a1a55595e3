//! `[tenant_defaults]` and `[[tenants]]`: the customers of a shared node, the channels each owns,
//! their publisher keys, apps, quotas and (optionally) their own vendor credentials.

use serde::Deserialize;

use super::{AppConfig, Secret};
use crate::core::ChannelName;
use crate::tenant::{patterns_overlap, Quotas, TenantConfig, TenantId, DEFAULT_TENANT};
use crate::upstream::VendorConfig;

/// `[tenant_defaults]`: every tenant's quotas unless it sets its own. 0 is no limit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuotas {
    #[serde(default)]
    publish_per_second: Option<u32>,
    #[serde(default)]
    publish_burst: Option<u32>,
    #[serde(default)]
    max_connections: Option<usize>,
    #[serde(default)]
    max_channels: Option<usize>,
    #[serde(default)]
    history_max_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    id: String,
    channels: Vec<String>,
    #[serde(default)]
    publisher_keys: Vec<String>,
    /// Names of environment variables holding more publisher keys, so the file can be committed.
    #[serde(default)]
    publisher_keys_env: Vec<String>,
    #[serde(default)]
    apps: Vec<String>,
    /// The tenant's own vendor URLs (`pusher://`, `ably://`, `webhook+https://`); absent: the
    /// shared `[vendors]`.
    #[serde(default)]
    vendors: Option<Vec<String>>,
    #[serde(flatten)]
    quotas: RawQuotas,
    #[serde(skip)]
    from_env: Vec<Option<String>>,
}

impl std::fmt::Debug for RawTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and vendor URLs are secrets.
        f.debug_struct("RawTenant")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Reads each tenant's `publisher_keys_env` variables.
pub(super) fn apply_env(tenants: &mut [RawTenant], env: &dyn Fn(&str) -> Option<String>) {
    for t in tenants {
        t.from_env = t.publisher_keys_env.iter().map(|v| env(v)).collect();
    }
}

fn nonzero<T: PartialEq + Default>(v: Option<T>) -> Option<Option<T>> {
    v.map(|v| (v != T::default()).then_some(v))
}

impl RawQuotas {
    /// `base` with every quota this table sets applied over it.
    fn over(&self, base: Quotas) -> Quotas {
        let mut q = base;
        if let Some(v) = nonzero(self.publish_per_second) {
            q.publish_per_second = v;
        }
        if let Some(v) = self.publish_burst {
            q.publish_burst = v;
        }
        if let Some(v) = nonzero(self.max_connections) {
            q.max_connections = v;
        }
        if let Some(v) = nonzero(self.max_channels) {
            q.max_channels = v;
        }
        if let Some(v) = nonzero(self.history_max_bytes) {
            q.history_max_bytes = v;
        }
        // A bucket that cannot hold one event would refuse everything.
        if let Some(rate) = q.publish_per_second {
            if q.publish_burst == 0 {
                q.publish_burst = rate;
            }
        }
        q
    }
}

/// Validates the defaults and every tenant, collecting each problem into `errs` (never quoting a
/// key or a vendor URL). `vendors` checks and builds a tenant's own vendor URLs as `[vendors]`
/// does its own.
pub(super) fn validate(
    defaults: RawQuotas,
    raw: Vec<RawTenant>,
    apps: &[AppConfig],
    min_secret: usize,
    vendor_url: &dyn Fn(&str) -> Result<VendorConfig, String>,
    errs: &mut Vec<String>,
) -> (Quotas, Vec<TenantConfig>) {
    let defaults = defaults.over(Quotas::default());
    let mut tenants: Vec<TenantConfig> = Vec::with_capacity(raw.len());
    let mut owner_of_app = std::collections::HashMap::new();
    for (i, t) in raw.into_iter().enumerate() {
        let at = format!("tenants[{i}]");
        let valid_id = !t.id.is_empty()
            && t.id.len() <= 64
            && t.id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_id {
            errs.push(format!(
                "{at}.id = {:?}: use 1 to 64 of A-Z a-z 0-9 - _",
                t.id
            ));
        }
        if t.id == DEFAULT_TENANT {
            errs.push(format!(
                "{at}.id = {DEFAULT_TENANT:?} is the tenant of every channel no tenant claims; choose another id"
            ));
        }
        if tenants.iter().any(|o| o.id.as_str() == t.id) {
            errs.push(format!("{at}.id = {:?} is given to another tenant", t.id));
        }
        if t.channels.is_empty() {
            errs.push(format!(
                "{at}.channels is empty: list the channel names or prefixes (ending in *) it owns"
            ));
        }
        for (j, p) in t.channels.iter().enumerate() {
            if let Err(e) = ChannelName::check_pattern(p) {
                errs.push(format!(
                    "{at}.channels[{j}] = {p:?}: {e}; write a channel name or a prefix ending in *"
                ));
                continue;
            }
            for other in &tenants {
                if let Some(q) = other.channels.iter().find(|q| patterns_overlap(p, q)) {
                    errs.push(format!(
                        "{at}.channels[{j}] = {p:?} overlaps {q:?} of tenant {:?}: every channel has one owner",
                        other.id.as_str()
                    ));
                }
            }
        }
        let mut keys: Vec<Secret> = Vec::new();
        for (j, k) in t.publisher_keys.into_iter().enumerate() {
            if k.len() < min_secret {
                errs.push(format!(
                    "{at}.publisher_keys[{j}] has {} characters; use at least {min_secret}",
                    k.len()
                ));
            }
            keys.push(Secret::new(k));
        }
        for (var, value) in t.publisher_keys_env.iter().zip(t.from_env) {
            match value {
                Some(k) if k.len() >= min_secret => keys.push(Secret::new(k)),
                Some(k) => errs.push(format!(
                    "{at}.publisher_keys_env {var:?} holds {} characters; use at least {min_secret}",
                    k.len()
                )),
                None => errs.push(format!(
                    "{at}.publisher_keys_env {var:?}: that environment variable is not set"
                )),
            }
        }
        for app in &t.apps {
            if !apps.iter().any(|a| &a.id == app) {
                errs.push(format!("{at}.apps: no [[apps]] has id {app:?}"));
            } else if let Some(other) = owner_of_app.insert(app.clone(), t.id.clone()) {
                errs.push(format!(
                    "{at}.apps: app {app:?} already belongs to tenant {other:?}"
                ));
            }
        }
        let vendors = t.vendors.map(|urls| {
            urls.iter()
                .enumerate()
                .filter_map(|(j, u)| {
                    vendor_url(u)
                        .map_err(|e| errs.push(format!("{at}.vendors[{j}]: {e}")))
                        .ok()
                })
                .collect()
        });
        tenants.push(TenantConfig {
            id: TenantId::new(&t.id),
            channels: t.channels,
            publisher_keys: keys,
            apps: t.apps,
            quotas: t.quotas.over(defaults),
            vendors,
        });
    }
    // A key is one tenant's: the same key in two would publish as whichever is found first.
    for (i, a) in tenants.iter().enumerate() {
        for b in &tenants[i + 1..] {
            if a.publisher_keys
                .iter()
                .any(|k| b.publisher_keys.iter().any(|l| k.expose() == l.expose()))
            {
                errs.push(format!(
                    "tenants {:?} and {:?} share a publisher key; give each its own",
                    a.id.as_str(),
                    b.id.as_str()
                ));
            }
        }
    }
    (defaults, tenants)
}

#[cfg(test)]
mod tests {

    fn parse(text: &str) -> Result<crate::config::Config, String> {
        let mut raw = crate::config::Raw::parse(Some(text))?;
        raw.apply_env(&|name| (name == "KEY_B").then(|| "key-b-from-env-0123".to_string()));
        raw.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn tenants_take_defaults_and_their_own_overrides() {
        let cfg = parse(
            r#"
            [tenant_defaults]
            publish_per_second = 100
            max_connections = 50

            [[tenants]]
            id = "clinic-a"
            channels = ["clinic-a.*"]
            publisher_keys = ["key-a-0123456789"]
            publish_per_second = 10
            publish_burst = 20

            [[tenants]]
            id = "clinic-b"
            channels = ["clinic-b.*"]
            publisher_keys_env = ["KEY_B"]
            max_channels = 3
            "#,
        )
        .unwrap();
        assert_eq!(cfg.tenant_defaults.publish_per_second, Some(100));
        let a = &cfg.tenants[0];
        assert_eq!(a.quotas.publish_per_second, Some(10));
        assert_eq!(a.quotas.publish_burst, 20);
        assert_eq!(a.quotas.max_connections, Some(50));
        let b = &cfg.tenants[1];
        assert_eq!(b.quotas.publish_per_second, Some(100));
        assert_eq!(
            b.quotas.publish_burst, 100,
            "a burst defaults to one second's worth"
        );
        assert_eq!(b.quotas.max_channels, Some(3));
        assert_eq!(b.publisher_keys[0].expose(), "key-b-from-env-0123");
        assert!(b.vendors.is_none());
    }

    #[test]
    fn bad_tenants_are_all_reported_without_their_keys() {
        let err = parse(
            r#"
            [[tenants]]
            id = "default"
            channels = ["a.*"]
            publisher_keys = ["short-secret-key"]

            [[tenants]]
            id = "b"
            channels = ["a.x", "b*x*"]
            publisher_keys = ["tiny"]
            apps = ["nope"]
            vendors = ["gopher://x"]
            "#,
        )
        .unwrap_err();
        for want in [
            "tenants[0].id = \"default\" is the tenant of every channel",
            "tenants[1].channels[0] = \"a.x\" overlaps \"a.*\" of tenant \"default\"",
            "tenants[1].channels[1] = \"b*x*\"",
            "tenants[1].publisher_keys[0] has 4 characters",
            "tenants[1].apps: no [[apps]] has id \"nope\"",
            "tenants[1].vendors[0]",
        ] {
            assert!(err.contains(want), "{want:?} missing from {err}");
        }
        assert!(!err.contains("tiny") && !err.contains("short-secret-key"));
    }
}
