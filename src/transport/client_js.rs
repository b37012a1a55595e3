//! `GET /v1/client.js` and `/v1/client.mjs`: the browser client, embedded in the binary so pages
//! need no build step and no CDN.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;

const SCRIPT: &str = include_str!("../web/understudy.js");
const MODULE: &str = include_str!("../web/understudy.mjs");

pub(crate) async fn script() -> impl IntoResponse {
    respond(SCRIPT)
}

/// The ES module imports the classic script by its served name.
pub(crate) async fn module() -> impl IntoResponse {
    static SERVED: OnceLock<String> = OnceLock::new();
    respond(SERVED.get_or_init(|| MODULE.replace("./understudy.js", "./client.js")))
}

fn respond(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
}
