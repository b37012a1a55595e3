//! `GET /admin/tenants`: each tenant's channels, quotas and usage on this node now; and the
//! per-tenant gauges sampled, and publish counts exported, at each scrape. No secrets: keys are
//! counted, never shown.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::admin::Admin;
use super::metrics::Metrics;
use crate::tenant::PUBLISH_REASONS;
use crate::transport::AppState;

/// `GET /admin/tenants`: the default tenant first, then the configured ones in file order.
pub(super) async fn list(State(state): State<AppState>, _admin: Admin) -> impl IntoResponse {
    Json(tenants_json(&state))
}

pub(crate) fn tenants_json(state: &AppState) -> Value {
    let tenants = state.tenants.load();
    let registry = state.engine.registry();
    let now = Instant::now();
    let list: Vec<Value> = (tenants.all().iter())
        .map(|t| {
            let q = &t.quotas;
            let usage = state.usage.counts(t, now);
            json!({
                "id": t.id.as_str(),
                "metric_label": tenants.metric_label(&t.id),
                "channels": t.channels,
                "apps": t.apps,
                "publisher_keys": t.publisher_keys.len(),
                "own_vendors": t.vendors.as_ref().map_or(0, Vec::len),
                "quotas": {
                    "publish_per_second": q.publish_per_second,
                    "publish_burst": q.publish_per_second.map(|_| q.publish_burst),
                    "max_connections": q.max_connections,
                    "max_channels": q.max_channels,
                    "history_max_bytes": q.history_max_bytes,
                },
                "usage": {
                    "connections": usage.connections,
                    "channels": registry.channels_of(t.id.as_str()),
                    "bucket_level": usage.bucket_level,
                    "publishes_accepted": usage.publishes_accepted,
                    "publishes_refused": usage.publishes_refused.iter().collect::<BTreeMap<_, _>>(),
                },
            })
        })
        .collect();
    json!({ "tenants": list })
}

/// Adds each tenant's publishes counted since the last scrape to its publish counters, under
/// the label it has now. A publish only counts in the tenant's usage (atomics): resolving a
/// labelled counter per publish cost a label allocation, a scan of the tenants and a registry
/// lookup.
fn export_publishes(state: &AppState) {
    let tenants = state.tenants.load();
    for (id, counts) in state.usage.unexported_publishes() {
        let label = tenants.metric_label(&id);
        let [accepted, refused @ ..] = counts;
        if accepted > 0 {
            Metrics::tenant_publish(label, None).increment(accepted);
        }
        for (reason, n) in PUBLISH_REASONS.iter().zip(refused) {
            if n > 0 {
                Metrics::tenant_publish(label, Some(*reason)).increment(n);
            }
        }
    }
}

/// Sets the per-tenant gauges from what the tenants use now, and exports the publish counts. Tenants sharing the "other" label
/// are summed; a label no tenant has any more (after a reload) is set to 0, not left stale.
pub(super) fn sample_gauges(state: &AppState) {
    export_publishes(state);
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let tenants = state.tenants.load();
    let registry = state.engine.registry();
    let mut by_label: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for t in tenants.all() {
        let entry = by_label.entry(tenants.metric_label(&t.id)).or_default();
        entry.0 += state.usage.connections(&t.id);
        entry.1 += registry.channels_of(t.id.as_str());
    }
    let mut seen = SEEN.get_or_init(Mutex::default).lock();
    for label in seen.iter() {
        if !by_label.contains_key(label.as_str()) {
            Metrics::tenant_connections(label).set(0.0);
            Metrics::tenant_channels(label).set(0.0);
        }
    }
    for (label, (connections, channels)) in by_label {
        Metrics::tenant_connections(label).set(connections as f64);
        Metrics::tenant_channels(label).set(channels as f64);
        seen.insert(label.to_owned());
    }
}
