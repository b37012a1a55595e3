//! The admin listener: metrics and health for machines, and the authenticated `/admin` API for
//! operators (status, mode, drain, reload). It listens apart from the public API.

use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::json;
use tokio::time::Instant;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::audit::{AuditAction, AuditEntry, MAX_READ_LIMIT};
use super::mode::{ModeChange, ModeRequest};
use super::status;
use crate::transport::AppState;
use crate::transport::{health, ApiError};

pub(crate) fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/admin/status", get(get_status))
        .route("/admin/mode", put(put_mode))
        .route("/admin/audit", get(get_audit))
        .merge(super::dashboard::router(&state))
        .route("/admin/drain", post(post_drain))
        .route("/admin/reload", post(post_reload))
        .route("/admin/tenants", get(super::tenants::list))
        .route(
            "/admin/maintenance",
            get(super::maintenance_api::list).put(super::maintenance_api::schedule),
        )
        .route(
            "/admin/maintenance/{id}",
            delete(super::maintenance_api::cancel),
        )
        .fallback(crate::transport::not_found);
    let origins = state.config.load().server.admin_cors_allow_origins.clone();
    let router = if origins.is_empty() {
        router
    } else {
        router.layer(cors(&origins))
    };
    router.with_state(state)
}

/// An operations page on another origin (the demo's, or a team's own) calls the admin API with
/// the admin token as a bearer, never cookies: only the listed origins, and no credentials.
fn cors(origins: &[String]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(
            origins.iter().filter_map(|o| o.parse().ok()),
        ))
        .allow_methods([Method::GET, Method::PUT, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let audit = state.audit.stats();
    for (outcome, n) in [
        ("recorded", audit.recorded),
        ("dropped", audit.dropped),
        ("written", audit.written),
        ("lost", audit.lost),
    ] {
        metrics::counter!("understudy_audit_entries_total", "outcome" => outcome).absolute(n);
    }
    metrics::counter!("understudy_audit_write_errors_total").absolute(audit.write_errors);
    super::tenants::sample_gauges(&state);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.engine.registry().stats()),
    )
}

/// An authenticated operator: the name of the admin token presented.
pub(crate) struct Admin(pub String);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let name =
            bearer(&parts.headers).and_then(|t| state.admins.load().identify(t).map(str::to_owned));
        match name {
            Some(name) => Ok(Admin(name)),
            None => {
                // Sampled: a flood of refused calls must not rotate the trail (or the log) away.
                let (method, path) = (parts.method.as_str(), parts.uri.path());
                let written = state.audit.record_refusal(|refusals| {
                    AuditEntry::new("unknown", AuditAction::AdminRejected)
                        .with_details(json!({"method": method, "path": path, "status": 401, "refusals": refusals}))
                        .with_reason("missing or unknown admin token")
                });
                if written {
                    tracing::warn!(%path, "admin call refused: missing or unknown token (further refusals within 10 s are counted, not logged)");
                }
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

/// `GET /admin/audit?since=<ms>&limit=<n>`: entries oldest first; without `since`, the newest.
async fn get_audit(
    State(state): State<AppState>,
    _admin: Admin,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let mut since = None;
    let mut limit = 100;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let n = v
            .parse::<u64>()
            .map_err(|_| ApiError::InvalidQuery(format!("{k}={v:?} must be a whole number")))?;
        match &*k {
            "since" => since = Some(n),
            "limit" if (1..=MAX_READ_LIMIT as u64).contains(&n) => limit = n as usize,
            "limit" => {
                return Err(ApiError::InvalidQuery(format!(
                    "limit must be between 1 and {MAX_READ_LIMIT}"
                )))
            }
            _ => {}
        }
    }
    let entries = match since {
        Some(ms) => state.audit.read(Some(ms), limit).await,
        None => state.audit.tail(limit).await,
    };
    let entries = entries.map_err(|e| {
        tracing::error!(error = %e, "reading the audit trail failed");
        ApiError::AuditUnreadable
    })?;
    Ok(Json(
        json!({"entries": entries, "stats": state.audit.stats()}),
    ))
}

/// `POST /admin/drain`: the node leaves. Readiness goes 503 at once, open connections are told to
/// reconnect elsewhere over the drain window, and the process exits when they are gone or at the
/// shutdown limit (the same path as SIGTERM).
async fn post_drain(State(state): State<AppState>, Admin(name): Admin) -> impl IntoResponse {
    let open = state.lifecycle.open_connections();
    let server = state.config.load().server.clone();
    if !state.lifecycle.is_draining() {
        tracing::warn!(by = %name, open, "drain requested");
        state.audit.record(
            AuditEntry::new(name, AuditAction::Drain)
                .with_details(json!({"open_connections": open}))
                .with_reason("POST /admin/drain"),
        );
        state.lifecycle.begin_shutdown();
    }
    (
        axum::http::StatusCode::ACCEPTED,
        Json(json!({
            "draining": true,
            "open_connections": open,
            "drain_window_ms": server.drain_window.as_millis() as u64,
            "shutdown_timeout_ms": server.shutdown_timeout.as_millis() as u64,
        })),
    )
}

/// `POST /admin/reload`: reads the configuration file and environment again and applies them
/// whole, or refuses them whole with every problem listed (422 `config_invalid`); the same as
/// SIGHUP. Recorded in the audit trail with the token's name.
async fn post_reload(
    State(state): State<AppState>,
    Admin(name): Admin,
) -> Result<impl IntoResponse, ApiError> {
    let done = state.reload(&name).await?;
    Ok(Json(json!({
        "reloaded": true,
        "changed": done.changed,
        "restart_required": done.restart_required,
        "vendors_rebuilt": done.vendors_rebuilt,
        "vendor_queue_dropped": done.vendor_queue_dropped,
    })))
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
    let change = request
        .into_change(&name, now)
        .map_err(|e| ApiError::InvalidField(e.to_string()))?;
    let setting = match change {
        ModeChange::Node(setting) => setting,
        ModeChange::Tenant { tenant, setting } => {
            let answer = super::tenant_routes::put(&state, &name, &tenant, setting, now).await?;
            return Ok(Json(answer));
        }
    };
    tracing::warn!(mode = setting.mode.as_str(), by = %name, reason = %setting.reason, "operator mode changed");
    let from = state.failover.route().mode;
    state.audit.record(
        AuditEntry::new(name.clone(), AuditAction::ModeChanged)
            .with_details(json!({
                "from": from.as_str(),
                "to": setting.mode.as_str(),
                "expires_at": setting.expires_at.map(|at| status::unix_ms(at, now)),
            }))
            .with_reason(setting.reason.clone()),
    );
    let mut route = state.failover.watch_route();
    route.borrow_and_update();
    state.failover.set_mode(setting.clone());
    // With a shared engine every node takes the mode; if Redis cannot be reached this node still
    // does, and the answer says so.
    let shared = match super::cluster::share_mode(&state, &setting).await {
        Ok(shared) => json!(shared),
        Err(e) => {
            tracing::warn!("mode applied on this node only: {e}");
            json!(false)
        }
    };
    // The driver applies the mode at once (the route carries the mode, so it changes); answer
    // with the route it decided.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), route.changed()).await;
    let route = state.failover.route();
    Ok(Json(json!({
        "mode": status::mode_json(&setting, now),
        "route": status::route_json(&route, now),
        "shared": shared,
    })))
}
