//! The on-call dashboard on the admin listener.
//!
//! - `GET /admin/`: the page (`/admin` redirects there), with its stylesheet and script at
//!   `/admin/dashboard.css` and `/admin/dashboard.js`. Hand-written files in `dashboard/`,
//!   embedded in the binary; the page loads nothing from anywhere else (its
//!   `Content-Security-Policy` says so) and needs no token to load. It asks for the admin token
//!   once, keeps it in the tab's `sessionStorage`, and sends it as `Authorization: Bearer` with
//!   every data call.
//! - `GET /admin/stream`: the live feed ([`stream`]), admin token required.
//!
//! One background task ([`sampler`]) turns running totals into rates and a 15-minute series
//! ([`series`], [`trends`]), bounded whatever the traffic. It starts with the router, so the
//! history is there when someone opens the page, and stops when the router is dropped.

pub(crate) mod sampler;
pub(crate) mod series;
mod stream;
pub(crate) mod trends;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tokio::sync::watch;
use tracing::Instrument;

use crate::transport::AppState;
use sampler::Figures;

/// What the dashboard's routes share: the figures the sampler publishes.
#[derive(Debug)]
pub(crate) struct Dashboard {
    /// The sampler holds only a weak handle: dropping the dashboard stops it.
    figures: Arc<watch::Sender<Arc<Figures>>>,
    /// Whether the sampler was started (once).
    started: AtomicBool,
}

impl Dashboard {
    fn new() -> Self {
        Self {
            figures: Arc::new(watch::Sender::new(Arc::new(Figures::empty()))),
            started: AtomicBool::new(false),
        }
    }

    /// Starts the sampler unless it runs already. Must be called inside a Tokio runtime.
    fn start_sampler(&self, state: &AppState) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let span = tracing::info_span!("dashboard_sampler");
        tokio::spawn(sampler::run(state.clone(), Arc::downgrade(&self.figures)).instrument(span));
    }
}

/// The dashboard's routes, to merge into the admin router.
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let dashboard = Arc::new(Dashboard::new());
    // Outside a runtime (a router built for a test), the first stream starts it.
    if tokio::runtime::Handle::try_current().is_ok() {
        dashboard.start_sampler(state);
    }
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(|| async { asset(Asset::Page) }))
        .route(
            "/admin/dashboard.css",
            get(|| async { asset(Asset::Style) }),
        )
        .route(
            "/admin/dashboard.js",
            get(|| async { asset(Asset::Script) }),
        )
        .route("/admin/stream", get(stream::stream))
        .layer(Extension(dashboard))
}

#[derive(Clone, Copy)]
enum Asset {
    Page,
    Style,
    Script,
}

/// Nothing from another origin, no inline script or style, no framing (the mode buttons must not
/// be clickable through someone else's page).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(which: Asset) -> Response {
    let (content_type, text) = match which {
        Asset::Page => (
            "text/html; charset=utf-8",
            include_str!("dashboard/index.html"),
        ),
        Asset::Style => (
            "text/css; charset=utf-8",
            include_str!("dashboard/dashboard.css"),
        ),
        Asset::Script => (
            "text/javascript; charset=utf-8",
            include_str!("dashboard/dashboard.js"),
        ),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        text,
    )
        .into_response()
}
