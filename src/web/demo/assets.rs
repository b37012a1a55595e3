//! The demo's pages, styles and scripts: hand-written files in this folder, embedded in the
//! binary, no build step and nothing fetched from another origin.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::transport::ApiError;

/// Every embedded file: name, content type, text.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", HTML, include_str!("index.html")),
    ("kiosk.html", HTML, include_str!("kiosk.html")),
    ("waiting-room.html", HTML, include_str!("waiting-room.html")),
    ("ops.html", HTML, include_str!("ops.html")),
    ("demo.css", CSS, include_str!("demo.css")),
    ("status.js", JS, include_str!("status.js")),
    ("kiosk.js", JS, include_str!("kiosk.js")),
    ("waiting-room.js", JS, include_str!("waiting-room.js")),
    ("ops.js", JS, include_str!("ops.js")),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// A page by its file name.
pub(super) async fn page(name: &'static str) -> Response {
    serve(name)
}

/// A file of `/demo/assets/{file}`.
pub(super) async fn page_owned(name: String) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, text)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *text,
        )
            .into_response(),
        None => ApiError::NotFound(format!(
            "/demo/assets/{}",
            name.chars().take(100).collect::<String>()
        ))
        .into_response(),
    }
}
