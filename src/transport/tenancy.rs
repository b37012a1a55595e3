//! Where the edges hold a request to its tenant: the publisher's scope and quotas before
//! anything is published, and a subscriber connection's seat in each tenant whose channels it
//! holds. The checks, and the counts the per-tenant metrics are read from at each scrape, are
//! [`crate::tenant::Usage`]'s; this counts subscribe refusals in the per-tenant metrics.

use std::sync::Arc;

use tokio::time::Instant;

use crate::core::ChannelName;
use crate::ops::metrics::Metrics;
use crate::tenant::{Held, Refusal, Seats, TenantConfig};
use crate::transport::AppState;

/// The tenant whose publisher key `presented` is.
pub(crate) fn of_key(state: &AppState, presented: &str) -> Option<Arc<TenantConfig>> {
    state.tenants.load().by_publisher_key(presented).cloned()
}

/// The tenant of an `[[apps]]` entry.
pub(crate) fn of_app(state: &AppState, app_id: &str) -> Arc<TenantConfig> {
    state.tenants.load().of_app(app_id).clone()
}

/// Admits a publish of one event to each of `channels` (every event of a batch together) by
/// `publisher`, or refuses it whole; `by` names the publisher in the refusal ("key
/// publishes", "app publishes").
/// The tenant's quotas are read from the configuration in force now.
pub(crate) fn admit_publish(
    state: &AppState,
    publisher: &TenantConfig,
    by: &'static str,
    channels: &[&ChannelName],
) -> Result<(), Refusal> {
    let tenants = state.tenants.load();
    // The quotas in force now, not those of the tenant as it was when the key was looked up.
    let publisher: &TenantConfig = tenants.get(publisher.id.as_str()).map_or(publisher, |t| t);
    let registry = state.engine.registry();
    let shared = state.engine.redis();
    let outcome = state.usage.admit_publish(
        &tenants,
        publisher,
        by,
        channels,
        Held {
            count: registry.channels_of(publisher.id.as_str()),
            // With a shared engine the channels live in Redis and this node mirrors only those
            // its subscribers watch: whether a publish creates one is not known here, so the
            // channel quota is not held at publish.
            is_new: |c: &ChannelName| shared.is_none() && !registry.holds_published(c),
        },
        Instant::now(),
    );
    // Counted in the tenant's usage; the per-tenant metrics are read from it at each scrape.
    outcome
}

/// Refuses `publisher`'s publish before its body is read when its bucket is empty (see
/// [`crate::tenant::Usage::refuse_when_empty`]): a tenant flooding past its rate costs the node
/// one header check per request, not a body read and parse.
pub(crate) fn refuse_when_empty(state: &AppState, publisher: &TenantConfig) -> Result<(), Refusal> {
    let tenants = state.tenants.load();
    // The quotas in force now, as in `admit_publish`.
    let publisher: &TenantConfig = tenants.get(publisher.id.as_str()).map_or(publisher, |t| t);
    state.usage.refuse_when_empty(publisher, Instant::now())
}

/// Seats a subscriber connection for `channel` in its tenant (`max_connections`).
pub(crate) fn join(
    state: &AppState,
    seats: &mut Seats,
    channel: &ChannelName,
) -> Result<(), Refusal> {
    let tenants = state.tenants.load();
    let tenant = tenants.of_channel(channel.as_str());
    seats.join(channel, tenant).inspect_err(|r| {
        Metrics::tenant_subscribe_refused(tenants.metric_label(&tenant.id), r.reason()).increment(1)
    })
}

/// Whether a socket of app `app_id` may subscribe to `channel`: only its tenant's channels.
pub(crate) fn app_may_subscribe(
    state: &AppState,
    app_id: &str,
    channel: &ChannelName,
) -> Result<(), Refusal> {
    let tenants = state.tenants.load();
    let tenant = tenants.of_app(app_id);
    if tenant.owns(&tenants, channel) {
        return Ok(());
    }
    let refusal = Refusal::NotInTenant {
        channel: channel.as_str().to_owned(),
        tenant: tenant.id.clone(),
        by: "app subscribes",
    };
    state.usage.refused(&refusal);
    Metrics::tenant_subscribe_refused(tenants.metric_label(&tenant.id), refusal.reason())
        .increment(1);
    Err(refusal)
}

/// A fresh set of seats for a new subscriber connection.
pub(crate) fn seats(state: &AppState) -> Seats {
    Seats::new(state.usage.clone())
}
