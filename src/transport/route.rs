//! `GET /v1/route`: which path clients should use now, also pushed as a `route` message to every
//! WebSocket and SSE connection when it changes.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use bytes::Bytes;
use serde_json::json;

use crate::app::AppState;
use crate::failover::Route;

/// The route message, the same bytes for the endpoint and the pushes.
pub(crate) fn message(state: &AppState, route: &Route) -> Bytes {
    let cfg = state.config.load();
    let vendor_heartbeat_ms = cfg
        .vendors
        .failover
        .heartbeat
        .map_or(0, |d| d.as_millis() as u64);
    let body = json!({
        "type": "route",
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
pub(crate) async fn get(State(state): State<AppState>) -> impl IntoResponse {
    let route = state.failover.route();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=1"),
        ],
        message(&state, &route),
    )
}
