//! `/admin/maintenance`: schedule, list and cancel planned maintenance windows.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::Admin;
use super::audit::{AuditAction, AuditEntry};
use super::maintenance::{Asked, MaintenanceError};
use crate::core::event::now_ms;
use crate::failover::{Mode, ModeSetting};
use crate::transport::AppState;
use crate::transport::{parse_json, read_json_body, ApiError, ApiPath};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowRequest {
    start: Value,
    end: Value,
    mode: String,
    reason: String,
}

/// A time as milliseconds since the Unix epoch, or an RFC 3339 string.
fn parse_time(field: &str, v: &Value) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::InvalidField(format!(
            "field {field} must be an RFC 3339 time (\"2026-11-24T02:00:00Z\") or milliseconds since the Unix epoch"
        ))
    };
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(s) => humantime::parse_rfc3339_weak(s)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn invalid(e: MaintenanceError) -> ApiError {
    match e {
        MaintenanceError::NotFound(_) => ApiError::NotFound(e.to_string()),
        other => ApiError::InvalidField(other.to_string()),
    }
}

pub(crate) async fn list(State(state): State<AppState>, _admin: Admin) -> impl IntoResponse {
    Json(json!({"windows": state.maintenance.schedule.lock().list()}))
}

pub(crate) async fn schedule(
    State(state): State<AppState>,
    Admin(name): Admin,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = read_json_body(&headers, body, 16 * 1024).await?;
    let req: WindowRequest = parse_json(&bytes)?;
    let start = parse_time("start", &req.start)?;
    let end = parse_time("end", &req.end)?;
    let mode: Mode = req.mode.parse().map_err(|_| {
        ApiError::InvalidField(format!(
            "mode {:?} is not one of vendor, self, poll",
            req.mode
        ))
    })?;
    let max_len = state.config.load().max_maintenance_window;
    let window = super::cluster::change_schedule(&state, |schedule| {
        schedule.add(
            Asked {
                start,
                end,
                mode,
                reason: &req.reason,
                set_by: &name,
            },
            now_ms(),
            max_len,
        )
    })
    .await?
    .map_err(invalid)?;
    state.maintenance.changed.notify_one();
    state.audit.record(
        AuditEntry::new(name, AuditAction::MaintenanceScheduled)
            .with_details(
                json!({"id": window.id, "start": start, "end": end, "mode": mode.as_str()}),
            )
            .with_reason(window.reason.clone()),
    );
    Ok((StatusCode::CREATED, Json(json!({"window": window}))))
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    Admin(name): Admin,
    ApiPath(id): ApiPath<u64>,
) -> Result<impl IntoResponse, ApiError> {
    let window = super::cluster::change_schedule(&state, |schedule| schedule.cancel(id))
        .await?
        .map_err(invalid)?;
    state.maintenance.changed.notify_one();
    if window.started || window.start <= now_ms() {
        // A window in progress gives control back to automatic failover, on every node.
        let auto = ModeSetting::auto(&format!("maintenance {id} cancelled"), &name);
        state.failover.set_mode(auto.clone());
        if let Err(e) = super::cluster::share_mode(&state, &auto).await {
            tracing::warn!("automatic mode applied on this node only: {e}");
        }
    }
    state.audit.record(
        AuditEntry::new(name, AuditAction::MaintenanceCancelled)
            .with_details(json!({"id": id, "was_in_progress": window.started}))
            .with_reason(window.reason.clone()),
    );
    Ok(Json(json!({"cancelled": window})))
}
