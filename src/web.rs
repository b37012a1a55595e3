//! What the binary serves to browsers besides the API: the clinic demo (`/demo`, off unless
//! `demo.enabled`). The browser client itself (`understudy.js`, this folder) is served by
//! `transport::client_js` at `/v1/client.js`.

mod demo;

use axum::Router;

use crate::transport::AppState;

/// The clinic demo's pages and its small backend, or no routes when `demo.enabled` is off.
pub(crate) fn demo_router(state: AppState) -> Router {
    demo::router(state)
}
