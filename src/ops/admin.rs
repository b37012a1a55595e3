//! The admin listener: metrics and health for machines, and the authenticated `/admin` API for
//! operators (status, mode). It listens apart from the public API.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use tokio::time::Instant;

use super::mode::ModeRequest;
use super::status;
use crate::app::AppState;
use crate::transport::{health, ApiError};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/admin/status", get(get_status))
        .route("/admin/mode", put(put_mode))
        .fallback(crate::transport::not_found)
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.registry.stats()),
    )
}

/// An authenticated operator: the name of the admin token presented.
pub struct Admin(pub String);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = bearer(&parts.headers).ok_or(ApiError::AdminUnauthorized)?;
        match state.admins.identify(presented) {
            Some(name) => Ok(Admin(name.to_string())),
            None => {
                tracing::warn!("admin call refused: unknown token");
                Err(ApiError::AdminUnauthorized)
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn get_status(State(state): State<AppState>, _admin: Admin) -> impl IntoResponse {
    let snapshot = state.failover.watch_status().borrow().clone();
    Json(status::status_json(&state, &snapshot))
}

async fn put_mode(
    State(state): State<AppState>,
    Admin(name): Admin,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = crate::transport::read_json_body(&headers, body, 16 * 1024).await?;
    let request: ModeRequest = crate::transport::parse_json(&bytes)?;
    let now = Instant::now();
    let setting = request
        .into_setting(&name, now)
        .map_err(|e| ApiError::InvalidField(e.to_string()))?;
    tracing::warn!(mode = setting.mode.as_str(), by = %name, reason = %setting.reason, "operator mode changed");
    let mut route = state.failover.watch_route();
    route.borrow_and_update();
    state.failover.set_mode(setting.clone());
    // The driver applies the mode at once (the route carries the mode, so it changes); answer
    // with the route it decided.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), route.changed()).await;
    let route = state.failover.route();
    Ok(Json(serde_json::json!({
        "mode": status::mode_json(&setting, now),
        "route": status::route_json(&route, now),
    })))
}
