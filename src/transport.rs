//! The public API's edges: publish, WebSocket, SSE and polling. Each handler decodes, makes one
//! call into the core, and encodes; JSON shapes live in `wire`, errors map once in `error`.

mod body;
pub mod error;
pub mod health;
mod poll;
mod publish;
mod sse;
mod subscriber;
pub mod wire;
pub mod ws;

use axum::http::Uri;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;

use crate::app::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/publish", post(publish::publish))
        .route("/v1/publish/batch", post(publish::batch))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/sse", get(sse::stream))
        .route("/v1/channels/{channel}/events", get(poll::poll_one))
        .route("/v1/poll", post(poll::poll_many))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().chars().take(200).collect())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
