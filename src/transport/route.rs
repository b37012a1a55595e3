//! `GET /v1/route`: which path clients should use now, also pushed as a `route` message to every
//! WebSocket and SSE connection when it changes. Routes are per tenant (its own vendors, its
//! own mode): `?channel=NAME` answers the route of the channel's owner, `?tenant=ID` that
//! tenant's; without either, the default tenant's.

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use bytes::Bytes;
use serde_json::json;

use super::ApiError;
use crate::core::ChannelName;
use crate::failover::Route;
use crate::tenant::TenantId;
use crate::transport::AppState;

/// The route message of `tenant`, the same bytes for the endpoint and the pushes.
pub(crate) fn message(state: &AppState, tenant: &TenantId, route: &Route) -> Bytes {
    let cfg = state.config.load();
    let vendor_heartbeat_ms = cfg
        .vendors
        .failover
        .heartbeat
        .map_or(0, |d| d.as_millis() as u64);
    let body = json!({
        "type": "route",
        "tenant": tenant.as_str(),
        "route": route.path.as_str(),
        "mode": route.mode.as_str(),
        "reason": route.reason.to_string(),
        "vendor": route.vendor,
        "ws_url": "/v1/ws",
        "sse_url": "/v1/sse",
        "poll_url": "/v1/poll",
        "poll_interval_ms": cfg.subscribers.poll_interval.as_millis() as u64,
        "heartbeat_ms": cfg.subscribers.heartbeat.as_millis() as u64,
        "vendor_heartbeat_ms": vendor_heartbeat_ms,
        "changed_at": route.changed_at_ms,
        "jitter_ms": route.jitter.as_millis() as u64,
        "version": route.version,
        // Planned windows, announced ahead so clients can spread their switch.
        "maintenance": state.maintenance.schedule.lock().list().iter().map(|w| json!({
            "start": w.start, "end": w.end, "route": w.mode.as_str(),
        })).collect::<Vec<_>>(),
    });
    Bytes::from(body.to_string())
}

/// Public and cheap: clients on the vendor or poll path ask about once a minute, and it may be
/// cached for a second.
pub(crate) async fn get(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = tenant_asked(&state, query.as_deref())?;
    let route = state.failover.route_for(&tenant);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=1"),
        ],
        message(&state, &tenant, &route),
    ))
}

/// The tenant a route request names: by `channel` (its owner), by `tenant`, else the default.
fn tenant_asked(state: &AppState, query: Option<&str>) -> Result<TenantId, ApiError> {
    let tenants = state.tenants.load();
    let mut asked = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let tenant = match &*k {
            "channel" => tenants
                .of_channel(ChannelName::parse(&v)?.as_str())
                .id
                .clone(),
            "tenant" => match tenants.get(&v) {
                Some(t) => t.id.clone(),
                None => return Err(ApiError::UnknownTenant(v.chars().take(64).collect())),
            },
            _ => continue,
        };
        // Two names of different tenants cannot both be answered.
        if asked.as_ref().is_some_and(|a| *a != tenant) {
            return Err(ApiError::InvalidQuery(
                "channel and tenant name different tenants; ask for one".into(),
            ));
        }
        asked = Some(tenant);
    }
    Ok(asked.unwrap_or_default())
}
