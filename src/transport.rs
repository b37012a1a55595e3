//! The public API's edges: publish, WebSocket (understudy's own and Pusher protocol 7), SSE and
//! polling, and for `[[apps]]` the Pusher HTTP API (`pusher_http`) and the Ably REST ingress
//! (`ably_rest`), which publish through `app_publish`. Each handler decodes, makes one call into
//! the core, and encodes; JSON shapes live in `wire` (Pusher's WebSocket frames in `pusher_ws`),
//! errors map once in `error` (the Ably ingress's in `ably_rest::error`, in Ably's terms).
//! `tenancy` holds every publish and subscribe to its tenant's channels and quotas.

pub(crate) mod ably_rest;
pub(crate) mod admission;
pub(crate) mod app_publish;
pub(crate) mod body;
mod client_js;
pub(crate) mod control;
pub(crate) mod deadline;
pub(crate) mod direct;
pub(crate) mod error;
pub(crate) mod health;
pub(crate) mod later;
mod poll;
pub(crate) mod publish;
pub(crate) mod pusher_http;
mod pusher_ws;
mod route;
pub(crate) mod shared_tcp;
mod sse;
pub(crate) mod state;
mod subscriber;
pub(crate) mod tenancy;
pub(crate) mod vendor_auth;
pub(crate) mod wake;
pub(crate) mod wire;
pub(crate) mod ws;

use axum::http::{header, HeaderName, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub(crate) use app_publish::publish_app_event;
pub(crate) use body::{parse_json, read_body, read_json_body};
pub use error::ApiError;
pub(crate) use error::ApiPath;
pub(crate) use publish::{publish_item, publish_read};
#[cfg(test)]
pub(crate) use sse::event_both_ways as sse_event_both_ways;
pub(crate) use sse::SseSocket;
pub use state::{Admissions, AppState};

pub fn router(state: AppState) -> Router {
    // Publishing is server to server: it carries a publisher key or an app secret's signature,
    // which no page holds, so these routes do without the CORS layer and the headers it builds
    // for every answer (a tenth of a publish's instructions).
    Router::new()
        .route("/v1/publish", post(publish::publish))
        .route("/v1/publish/batch", post(publish::batch))
        .route("/apps/{app_id}/events", post(pusher_http::events))
        .route(
            "/apps/{app_id}/batch_events",
            post(pusher_http::batch_events),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .merge(browser_routes(&state))
        .with_state(state.clone())
        .merge(crate::web::demo_router(state))
}

/// `POST /v1/publish` as the router answers it, called without the router by a publisher's
/// connection that serves its own requests (`app::serve::publish_socket`).
pub(crate) async fn publish_direct(state: AppState, request: axum::extract::Request) -> Response {
    publish::publish(axum::extract::State(state), request)
        .await
        .into_response()
}

/// What pages call, on this origin or another: subscribing, history, the route, vendor auth,
/// the client script and Ably's REST publish from ably-js. Misses answer here too, under CORS.
fn browser_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/ws", get(ws::upgrade))
        .route("/app/{key}", get(pusher_ws::upgrade))
        .route("/v1/sse", get(sse::stream))
        .route("/v1/channels/{channel}/events", get(poll::poll_one))
        .route("/v1/poll", post(poll::poll_many))
        .route("/v1/route", get(route::get))
        .route(
            "/v1/vendor/auth",
            get(vendor_auth::authorize).post(vendor_auth::authorize),
        )
        .route(
            "/channels/{channel}/messages",
            post(ably_rest::publish).fallback(ably_rest::method_not_allowed),
        )
        .route(
            "/keys/{key_name}/requestToken",
            post(ably_rest::request_token).fallback(ably_rest::method_not_allowed),
        )
        .route("/v1/client.js", get(client_js::script))
        .route("/v1/client.mjs", get(client_js::module))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors(state))
}

/// Pages on other origins call the API with a token (never cookies), so origins are matched
/// against `server.cors_allow_origins` and credentials are not allowed.
fn cors(state: &AppState) -> CorsLayer {
    let origins = &state.config.load().server.cors_allow_origins;
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("last-event-id"),
            // What ably-js sends with a REST publish from a page.
            HeaderName::from_static("x-ably-version"),
            HeaderName::from_static("ably-agent"),
        ])
        .expose_headers([
            header::ETAG,
            HeaderName::from_static("x-ably-errorcode"),
            HeaderName::from_static("x-ably-errormessage"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().chars().take(200).collect())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
