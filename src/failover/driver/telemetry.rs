//! The driver's logs and metrics: vendor state gauges and transition counters, canary
//! outcomes and latency, the route gauge. ERROR when an operator must act (credentials refused,
//! clients told to poll), WARN for every failover.
//!
//! Metrics: `understudy_vendor_state{vendor,state}` (1 for the current state),
//! `understudy_vendor_transitions_total{vendor,from,to}`, `understudy_canary_total{vendor,outcome}`,
//! `understudy_canary_seconds{vendor}`, `understudy_route{route}` (1 for the current route).

use super::{Path, Route, Transition, TransitionReason};
use crate::failover::machine::State;
use crate::upstream::observation::CanaryResult;

pub(super) fn record_canary(vendor: &str, result: &CanaryResult) {
    let outcome = match result {
        CanaryResult::Arrived { latency } => {
            metrics::histogram!("understudy_canary_seconds", "vendor" => vendor.to_owned())
                .record(latency.as_secs_f64());
            "arrived"
        }
        CanaryResult::Lost { failure } => failure.as_str(),
    };
    metrics::counter!("understudy_canary_total", "vendor" => vendor.to_owned(), "outcome" => outcome).increment(1);
}

pub(super) fn log_transition(vendor: &str, t: &Transition) {
    metrics::counter!(
        "understudy_vendor_transitions_total",
        "vendor" => vendor.to_owned(), "from" => t.from.as_str(), "to" => t.to.as_str()
    )
    .increment(1);
    for state in [
        State::Healthy,
        State::Degraded,
        State::Down,
        State::Recovering,
    ] {
        let value = if state == t.to { 1.0 } else { 0.0 };
        metrics::gauge!("understudy_vendor_state", "vendor" => vendor.to_owned(), "state" => state.as_str()).set(value);
    }
    let reason = serde_json::to_string(&t.reason).unwrap_or_default();
    match t.reason {
        TransitionReason::Fatal { .. } => {
            tracing::error!(vendor, from = t.from.as_str(), to = t.to.as_str(), %reason, "vendor refuses understudy's configuration")
        }
        _ => {
            tracing::warn!(vendor, from = t.from.as_str(), to = t.to.as_str(), %reason, "vendor health changed")
        }
    }
}

/// A tenant's own route changed (its own mode, or its own vendors): logged with the tenant; the
/// `understudy_route` gauge stays the node-wide route's.
pub(super) fn log_tenant_route(tenant: &crate::tenant::id::TenantId, old: &Route, new: &Route) {
    let vendor = new.path.vendor();
    tracing::warn!(%tenant, from = old.path.as_str(), to = new.path.as_str(), ?vendor, reason = %new.reason, "tenant route changed");
}

/// The route of a set of vendors changed; `owner` is the tenant whose own vendors they are.
pub(super) fn log_route(old: &Route, new: &Route, owner: Option<&crate::tenant::id::TenantId>) {
    if let Some(tenant) = owner {
        return log_tenant_route(tenant, old, new);
    }
    for path in ["vendor", "self", "poll"] {
        let value = if path == new.path.as_str() { 1.0 } else { 0.0 };
        metrics::gauge!("understudy_route", "route" => path).set(value);
    }
    let vendor = new.path.vendor();
    if new.path == Path::Poll {
        tracing::error!(from = old.path.as_str(), to = "poll", reason = %new.reason, "route changed: clients told to poll");
    } else {
        tracing::warn!(from = old.path.as_str(), to = new.path.as_str(), ?vendor, reason = %new.reason, "route changed");
    }
}
