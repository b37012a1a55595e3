//! Tenants: the customers one node serves, each owning a set of channels, so one customer's
//! flood, quota or vendor never reaches another's.
//!
//! A tenant owns the channels its patterns match (exact names, or prefixes written `prefix*`);
//! patterns of different tenants never overlap, so every channel has exactly one owner. Channels
//! no tenant claims belong to the [`DEFAULT_TENANT`], as do `auth.publisher_keys` and apps no
//! tenant lists: with no `[[tenants]]` at all, the default tenant owns everything and the node
//! behaves as a single-tenant one.
//!
//! Publisher keys and apps belong to one tenant each and may publish only to its channels.
//! Plain Rust: no sockets, no clock (callers pass `now`).
//!
//! # Layout
//! - `quota`: [`Quotas`], the limits a tenant is held to.
//! - `bucket`: the token bucket of a tenant's publish rate.
//! - `usage`: what each tenant uses on this node ([`Usage`]), held against its quotas, and the
//!   seats a subscriber connection takes ([`Seats`]).

mod bucket;
pub(crate) mod id;
mod quota;
mod usage;

use std::collections::HashMap;
use std::sync::Arc;

use subtle::ConstantTimeEq;

pub use bucket::Bucket;
pub use id::{TenantId, DEFAULT_TENANT, LABELLED_TENANTS, OTHER_LABEL};
pub use quota::Quotas;
pub use usage::{retry_secs, Counts, Held, Refusal, Seats, Usage, PUBLISH_REASONS, REASONS};

use crate::config::secret::Secret;
use crate::core::ChannelName;

/// One tenant as configured (`[[tenants]]`), validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantConfig {
    pub id: TenantId,
    /// Channel patterns this tenant owns: exact names or `prefix*`. Never overlap another
    /// tenant's. Empty for the default tenant, which owns what nobody claims.
    pub channels: Vec<String>,
    /// Bearer keys that publish to this tenant's channels only (`/v1/publish`).
    pub publisher_keys: Vec<Secret>,
    /// Ids of the `[[apps]]` whose events and sockets belong to this tenant.
    pub apps: Vec<String>,
    /// This tenant's limits: `[tenant_defaults]` with the tenant's own overrides applied.
    pub quotas: Quotas,
    /// Vendor URLs of this tenant's own vendor credentials, in priority order; `None` shares the
    /// `[vendors]` list (and its health) with every other tenant that has none.
    pub vendors: Option<Vec<crate::upstream::VendorConfig>>,
}

impl TenantConfig {
    /// The default tenant: owns nothing explicitly, holds `keys`, limited by `quotas`.
    pub fn default_tenant(keys: Vec<Secret>, quotas: Quotas) -> Self {
        TenantConfig {
            id: TenantId::default_tenant(),
            channels: Vec::new(),
            publisher_keys: keys,
            apps: Vec::new(),
            quotas,
            vendors: None,
        }
    }
}

/// Whether some channel name matches both patterns (each an exact name or `prefix*`).
pub fn patterns_overlap(a: &str, b: &str) -> bool {
    match (a.strip_suffix('*'), b.strip_suffix('*')) {
        (Some(pa), Some(pb)) => pa.starts_with(pb) || pb.starts_with(pa),
        (Some(p), None) => b.starts_with(p),
        (None, Some(p)) => a.starts_with(p),
        (None, None) => a == b,
    }
}

/// Every tenant, found by channel, publisher key or app. Built from the configuration and
/// replaced whole by a reload.
#[derive(Debug, Clone)]
pub struct Tenants {
    /// Index 0 is the default tenant.
    tenants: Vec<Arc<TenantConfig>>,
    /// `(pattern, tenant index)`, every configured tenant's patterns.
    patterns: Vec<(String, usize)>,
    apps: HashMap<String, usize>,
}

impl Tenants {
    /// `default` first, then the configured tenants (validated: unique ids, patterns that do
    /// not overlap, apps listed once).
    pub fn new(default: TenantConfig, tenants: &[TenantConfig]) -> Self {
        let mut all = vec![Arc::new(default)];
        let mut patterns = Vec::new();
        let mut apps = HashMap::new();
        for t in tenants {
            let i = all.len();
            patterns.extend(t.channels.iter().map(|p| (p.clone(), i)));
            apps.extend(t.apps.iter().map(|a| (a.clone(), i)));
            all.push(Arc::new(t.clone()));
        }
        Tenants {
            tenants: all,
            patterns,
            apps,
        }
    }

    /// A node with only the default tenant.
    pub fn single(keys: Vec<Secret>) -> Self {
        Self::new(TenantConfig::default_tenant(keys, Quotas::default()), &[])
    }

    /// Whether any `[[tenants]]` is configured.
    pub fn is_multi(&self) -> bool {
        self.tenants.len() > 1
    }

    /// Every tenant, the default first.
    pub fn all(&self) -> &[Arc<TenantConfig>] {
        &self.tenants
    }

    pub fn default_tenant(&self) -> &Arc<TenantConfig> {
        &self.tenants[0]
    }

    pub fn get(&self, id: &str) -> Option<&Arc<TenantConfig>> {
        self.tenants.iter().find(|t| t.id.as_str() == id)
    }

    /// The `tenant` label of `id`'s metrics: its id for the default tenant and the first
    /// [`LABELLED_TENANTS`] in file order, [`OTHER_LABEL`] for the rest and for unknown ids.
    pub fn metric_label(&self, id: &TenantId) -> &str {
        match self.tenants.iter().position(|t| t.id == *id) {
            Some(i) if i < LABELLED_TENANTS => self.tenants[i].id.as_str(),
            _ => OTHER_LABEL,
        }
    }

    /// The tenant that owns `channel`.
    pub fn of_channel(&self, channel: &str) -> &Arc<TenantConfig> {
        let i = self
            .patterns
            .iter()
            .find(|(p, _)| matches(channel, p))
            .map_or(0, |(_, i)| *i);
        &self.tenants[i]
    }

    /// The tenant an `[[apps]]` entry belongs to (the default tenant when none lists it).
    pub fn of_app(&self, app_id: &str) -> &Arc<TenantConfig> {
        &self.tenants[self.apps.get(app_id).copied().unwrap_or(0)]
    }

    /// The tenant whose publisher key `presented` is, if any. Every key of every tenant is
    /// compared, so the time taken does not say which key came close.
    pub fn by_publisher_key(&self, presented: &str) -> Option<&Arc<TenantConfig>> {
        let presented = presented.as_bytes();
        let mut found = None;
        for t in &self.tenants {
            let hit = t.publisher_keys.iter().fold(0u8, |hit, k| {
                hit | k.expose().as_bytes().ct_eq(presented).unwrap_u8()
            });
            if hit == 1 && found.is_none() {
                found = Some(t);
            }
        }
        found
    }
}

impl TenantConfig {
    /// Whether this tenant owns `channel` in `tenants`.
    pub fn owns(&self, tenants: &Tenants, channel: &ChannelName) -> bool {
        tenants.of_channel(channel.as_str()).id == self.id
    }
}

/// The tenants in force, as the registry asks about them: read at each call, so a reload
/// applies to the next channel created and the next event appended.
#[derive(Debug)]
pub struct Owners(pub Arc<arc_swap::ArcSwap<Tenants>>);

impl crate::core::ChannelOwners for Owners {
    fn owner(&self, channel: &str) -> Arc<str> {
        self.0.load().of_channel(channel).id.0.clone()
    }

    fn max_history_bytes(&self, channel: &str) -> Option<usize> {
        self.0.load().of_channel(channel).quotas.history_max_bytes
    }
}

fn matches(name: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str, channels: &[&str], keys: &[&str], apps: &[&str]) -> TenantConfig {
        TenantConfig {
            id: TenantId::new(id),
            channels: channels.iter().map(|s| s.to_string()).collect(),
            publisher_keys: keys.iter().map(|k| Secret::new(*k)).collect(),
            apps: apps.iter().map(|s| s.to_string()).collect(),
            quotas: Quotas::default(),
            vendors: None,
        }
    }

    #[test]
    fn every_channel_has_one_owner_and_keys_and_apps_find_theirs() {
        let tenants = Tenants::new(
            TenantConfig::default_tenant(vec![Secret::new("operator-key-0123")], Quotas::default()),
            &[
                tenant(
                    "clinic-a",
                    &["clinic-a.*", "lobby"],
                    &["key-a-0123456789"],
                    &["1"],
                ),
                tenant("clinic-b", &["clinic-b.*"], &["key-b-0123456789"], &["2"]),
            ],
        );
        assert!(tenants.is_multi());
        let of = |c: &str| tenants.of_channel(c).id.to_string();
        assert_eq!(of("clinic-a.waiting-room"), "clinic-a");
        assert_eq!(of("lobby"), "clinic-a");
        assert_eq!(of("lobby2"), "default");
        assert_eq!(of("clinic-b.x"), "clinic-b");
        assert_eq!(of("clinic-c.x"), "default");
        let key = |k: &str| tenants.by_publisher_key(k).map(|t| t.id.to_string());
        assert_eq!(key("key-a-0123456789").as_deref(), Some("clinic-a"));
        assert_eq!(key("key-b-0123456789").as_deref(), Some("clinic-b"));
        assert_eq!(key("operator-key-0123").as_deref(), Some("default"));
        assert_eq!(key("key-a-012345678"), None);
        assert_eq!(tenants.of_app("2").id.as_str(), "clinic-b");
        assert_eq!(tenants.of_app("9").id.as_str(), "default");
        let a = tenants.get("clinic-a").unwrap();
        assert!(a.owns(&tenants, &ChannelName::parse("clinic-a.x").unwrap()));
        assert!(!a.owns(&tenants, &ChannelName::parse("clinic-b.x").unwrap()));
        assert_eq!(tenants.metric_label(&TenantId::new("clinic-b")), "clinic-b");
        assert_eq!(tenants.metric_label(&TenantId::new("gone")), OTHER_LABEL);
    }

    #[test]
    fn metric_labels_are_bounded() {
        let many: Vec<_> = (0..LABELLED_TENANTS + 5)
            .map(|i| tenant(&format!("t{i}"), &[&format!("t{i}.*")], &[], &[]))
            .collect();
        let tenants = Tenants::new(
            TenantConfig::default_tenant(vec![], Quotas::default()),
            &many,
        );
        let labels: std::collections::HashSet<_> = tenants
            .all()
            .iter()
            .map(|t| tenants.metric_label(&t.id).to_owned())
            .collect();
        assert_eq!(labels.len(), LABELLED_TENANTS + 1);
        assert!(labels.contains("default") && labels.contains(OTHER_LABEL));
    }

    #[test]
    fn overlapping_patterns_are_told_apart_from_disjoint_ones() {
        assert!(patterns_overlap("a.*", "a.b*"));
        assert!(patterns_overlap("a.b", "a.*"));
        assert!(patterns_overlap("*", "x"));
        assert!(patterns_overlap("x", "x"));
        assert!(!patterns_overlap("a.*", "b.*"));
        assert!(!patterns_overlap("a.b", "a.c"));
        assert!(!patterns_overlap("a.b", "a.bc*"));
    }
}
