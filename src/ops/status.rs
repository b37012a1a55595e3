//! `GET /admin/status`: mode, route and every vendor's health with the observations behind it,
//! lanes and connections, as JSON for people and the dashboard.

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::core::event::now_ms;
use crate::failover::{ModeSetting, Route, Status, VendorStatus};
use crate::transport::AppState;
use crate::upstream::lanes::Lanes;

/// Milliseconds since the Unix epoch of a tokio instant.
pub(crate) fn unix_ms(at: Instant, now: Instant) -> u64 {
    let now_unix = now_ms();
    match now.checked_duration_since(at) {
        Some(ago) => now_unix.saturating_sub(ago.as_millis() as u64),
        None => now_unix + at.duration_since(now).as_millis() as u64,
    }
}

pub(crate) fn mode_json(mode: &ModeSetting, now: Instant) -> Value {
    json!({
        "mode": mode.mode.as_str(),
        "reason": mode.reason,
        "set_by": mode.set_by,
        "expires_at": mode.expires_at.map(|at| unix_ms(at, now)),
    })
}

pub(crate) fn route_json(route: &Route, now: Instant) -> Value {
    json!({
        "route": route.path.as_str(),
        "mode": route.mode.as_str(),
        "reason": route.reason.to_string(),
        "vendor": route.vendor,
        "since": unix_ms(route.since, now),
        "jitter_ms": route.jitter.as_millis() as u64,
        "version": route.version,
    })
}

/// One vendor's health, canary, last error, transitions and lanes (`lanes`: its set's lanes, by
/// the vendor's index), for the node's vendors and for a tenant's own.
pub(super) fn vendor_json(v: &VendorStatus, lanes: &[Lanes], now: Instant) -> Value {
    let transitions: Vec<Value> = v
        .transitions
        .iter()
        .map(|t| {
            json!({
                "from": t.from.as_str(),
                "to": t.to.as_str(),
                "reason": format!("{:?}", t.reason),
                "at": unix_ms(t.at, now),
            })
        })
        .collect();
    let lanes = lanes.get(v.index).map(|l| l.stats());
    json!({
        "name": v.name,
        "kind": v.kind.as_str(),
        "state": v.health.state.as_str(),
        "since": unix_ms(v.health.since, now),
        "verdict": format!("{:?}", v.verdict),
        "window": v.window,
        "last_canary": v.last_canary.as_ref().map(|c| json!({"at": unix_ms(c.at, now), "result": c.result})),
        "last_error": v.last_error.as_ref().map(|e| json!({
            "at": unix_ms(e.at, now),
            "source": e.source,
            "kind": e.kind,
            "fatal": e.fatal,
            "message": e.message,
        })),
        "transitions": transitions,
        "lanes": lanes,
    })
}

fn engine_json(state: &AppState, now: Instant) -> Value {
    match state.engine.redis() {
        None => json!({"kind": "memory", "up": true}),
        Some(r) => {
            let b = r.breaker();
            json!({
                "kind": "redis",
                "up": r.is_up(),
                "url": r.display(),
                "node": r.node(),
                "canary_lease": state.failover.canary_active(),
                "breaker": {
                    "state": b.state.as_str(),
                    "since": unix_ms(b.since, now),
                    "reason": b.reason.map(|r| r.as_str()),
                    "refused": b.refused,
                },
            })
        }
    }
}

/// The public listener's caps, with the rate of new subscriber connections beside them.
fn public_listener_json(state: &AppState) -> Value {
    let limit = state.config.load().server.connections.new_subscribers;
    let mut v = json!(state.admission.public.status());
    v["new_subscribers"] = json!(state.admission.new_subscribers.status(&limit));
    v
}

pub(crate) fn status_json(state: &AppState, status: &Status) -> Value {
    let now = Instant::now();
    let stats = state.engine.registry().stats();
    let lanes = state.failover.lanes();
    json!({
        "mode": mode_json(&status.mode, now),
        "route": route_json(&status.route, now),
        "self_path": format!("{:?}", status.self_path),
        "vendors": status.vendors.iter().map(|v| vendor_json(v, &lanes, now)).collect::<Vec<_>>(),
        "engine": engine_json(state, now),
        "channels": stats.channels,
        "history_events": stats.history_events,
        "history_bytes": stats.history_bytes,
        "maintenance": state.maintenance.schedule.lock().list(),
        "draining": state.lifecycle.is_draining(),
        "open_connections": state.lifecycle.open_connections(),
        "listeners": [public_listener_json(state), state.admission.admin.status()],
        "tenants": super::tenant_routes::tenants_json(state, now),
    })
}
