//! Tenants on the admin side: `PUT /admin/mode` with a `tenant` (one tenant's own mode, audited
//! with the tenant), and each tenant's route, mode and vendors in `/admin/status` and on the
//! dashboard, for at most [`TENANTS_SHOWN`] tenants.

use serde_json::{json, Value};
use tokio::time::Instant;

use super::audit::{AuditAction, AuditEntry};
use super::status::{mode_json, route_json, unix_ms};
use crate::failover::ModeSetting;
use crate::tenant::TenantId;
use crate::transport::ApiError;
use crate::transport::AppState;

/// Tenants listed in status: the default one and the first configured ones, in file order.
pub(crate) const TENANTS_SHOWN: usize = crate::tenant::LABELLED_TENANTS;

/// Holds `tenant` to `setting` (`None`: back to the node-wide mode) and answers with the mode
/// and the route the tenant has then.
pub(super) async fn put(
    state: &AppState,
    by: &str,
    tenant: &str,
    setting: Option<ModeSetting>,
    now: Instant,
) -> Result<Value, ApiError> {
    let id = match state.tenants.load().get(tenant) {
        Some(t) => t.id.clone(),
        None => return Err(ApiError::UnknownTenant(tenant.chars().take(64).collect())),
    };
    let from = state.failover.route_for(&id).mode;
    let to = setting.as_ref().map_or("inherit", |s| s.mode.as_str());
    let reason = setting
        .as_ref()
        .map_or("back to the node-wide mode", |s| &s.reason);
    tracing::warn!(tenant = %id, mode = to, by, %reason, "tenant mode changed");
    state.audit.record(
        AuditEntry::new(by, AuditAction::ModeChanged)
            .with_details(json!({
                "tenant": id.as_str(),
                "from": from.as_str(),
                "to": to,
                "expires_at": setting.as_ref().and_then(|s| s.expires_at).map(|at| unix_ms(at, now)),
            }))
            .with_reason(reason.to_owned()),
    );
    let before = state.failover.route_for(&id).version;
    let mut routes = state.failover.watch_routes();
    routes.borrow_and_update();
    state.failover.set_tenant_mode(&id, setting.clone());
    // The drivers apply it at once; answer with the route they decided (a mode that changes
    // nothing leaves the route as it is).
    let wait = async {
        while state.failover.route_for(&id).version == before {
            if routes.changed().await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), wait).await;
    let route = state.failover.route_for(&id);
    Ok(json!({
        "tenant": id.as_str(),
        "mode": setting.as_ref().map(|s| mode_json(s, now)),
        "route": route_json(&route, now),
        "shared": false,
    }))
}

/// Each tenant's route, own mode (`null`: the node-wide one) and vendors (`shared`, or its own
/// with their states), the first [`TENANTS_SHOWN`]; `more` counts the rest.
pub(crate) fn tenants_json(state: &AppState, now: Instant) -> Value {
    let tenants = state.tenants.load();
    let modes = state.failover.tenant_modes();
    let all = tenants.all();
    let shown: Vec<Value> = (all.iter().take(TENANTS_SHOWN))
        .map(|t| tenant_json(state, &t.id, modes.get(&t.id), now))
        .collect();
    json!({"tenants": shown, "more": all.len().saturating_sub(TENANTS_SHOWN)})
}

fn tenant_json(state: &AppState, id: &TenantId, mode: Option<&ModeSetting>, now: Instant) -> Value {
    let route = state.failover.route_for(id);
    let mode = mode.filter(|m| !m.expired(now)).map(|m| mode_json(m, now));
    let vendors = match state.failover.own_status(id) {
        None => json!("shared"),
        Some(status) => {
            let lanes = state.failover.lanes_for(id);
            let vendors: Vec<Value> = (status.vendors.iter())
                .map(|v| super::status::vendor_json(v, &lanes, now))
                .collect();
            json!(vendors)
        }
    };
    json!({
        "id": id.as_str(),
        "route": route_json(&route, now),
        "mode": mode,
        "vendors": vendors,
    })
}
