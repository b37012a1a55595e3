//! The clinic demo: a kiosk where patients check in by ticket number, a waiting-room board that
//! updates live through the browser client, and an operator page. The "backend" of the demo lives
//! here too: it keeps the list of checked-in tickets ([`board`]) and publishes each check-in
//! through the same publish path as `POST /v1/publish` (sequencing, then the vendor lanes), as a
//! real backend would over HTTP with a publisher key.
//!
//! Routes (all under `/demo`, only when `demo.enabled`):
//! - `GET /demo`, `/demo/kiosk`, `/demo/waiting-room`, `/demo/ops`, `/demo/assets/{file}`: pages.
//! - `GET /demo/vendor/pusher.min.js`: pusher-js from `demo.pusher_js`, when that file exists.
//! - `POST /demo/api/check-in` `{"ticket":"A-17"}`: adds the ticket and publishes
//!   `patient.checked_in` on `clinic-42.waiting-room`.
//! - `GET /demo/api/waiting-room`: the list and the channel position it is current at.
//! - `GET /demo/api/token`: a short-lived subscriber token for `clinic-42.*` (demo only).

mod assets;
mod board;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use tracing::{info, warn};

use self::board::{Board, Entry};
use crate::config::SubscribeAuth;
use crate::core::event::now_ms;
use crate::core::{ChannelName, ReadFrom};
use crate::transport::wire::PublishBody;
use crate::transport::AppState;
use crate::transport::{publish_item, ApiError};

/// The clinic's channel: every page of the demo is about this one waiting room.
const CHANNEL: &str = "clinic-42.waiting-room";
/// What the demo's subscriber tokens cover.
const TOKEN_SCOPE: &str = "clinic-42.*";
/// The event a check-in publishes.
const EVENT: &str = "patient.checked_in";
/// How long a demo subscriber token lives; the client asks for a fresh one on every connection.
const TOKEN_TTL_SECS: u64 = 600;

/// The demo backend's state.
struct Demo {
    app: AppState,
    channel: ChannelName,
    /// The checked-in tickets. Check-ins add and publish under this lock, and the list is read
    /// with the channel position under it, so a list and its position always agree.
    /// An async lock: a check-in publishes while holding it, so the list and the channel's
    /// position never disagree, and with a shared engine the publish awaits Redis.
    board: tokio::sync::Mutex<Board>,
    /// Where the list is saved; the async lock orders the writes, each of which writes the
    /// latest list.
    state_file: Option<(PathBuf, tokio::sync::Mutex<()>)>,
    pusher_js: Option<Bytes>,
}

/// The demo's routes, or no routes at all when `demo.enabled` is off.
pub(super) fn router(app: AppState) -> Router {
    let config = app.config.load().demo.clone();
    if !config.enabled {
        return Router::new();
    }
    warn!("the clinic demo is on (/demo): /demo/api/token hands subscriber tokens for {TOKEN_SCOPE} to anyone; never enable it on an exposed server");
    let board = match &config.state_file {
        Some(path) => Board::load(path).unwrap_or_else(|e| {
            warn!("demo waiting-room list not loaded, starting empty: {e}");
            Board::default()
        }),
        None => Board::default(),
    };
    let pusher_js = config.pusher_js.as_ref().and_then(|path| {
        std::fs::read(path).map(Bytes::from).map_err(|e| {
            info!(path = %path.display(), "pusher-js not served at /demo/vendor/pusher.min.js ({e}); the demo pages use understudy's own transports only");
        }).ok()
    });
    let demo = Demo {
        channel: ChannelName::parse(CHANNEL).expect("the demo channel name is valid"),
        board: tokio::sync::Mutex::new(board),
        state_file: config
            .state_file
            .clone()
            .map(|p| (p, tokio::sync::Mutex::new(()))),
        pusher_js,
        app,
    };
    Router::new()
        .route("/demo", get(|| assets::page("index.html")))
        .route("/demo/kiosk", get(|| assets::page("kiosk.html")))
        .route(
            "/demo/waiting-room",
            get(|| assets::page("waiting-room.html")),
        )
        .route("/demo/ops", get(|| assets::page("ops.html")))
        .route(
            "/demo/assets/{file}",
            get(|Path(file): Path<String>| assets::page_owned(file)),
        )
        .route("/demo/vendor/pusher.min.js", get(serve_pusher_js))
        .route("/demo/api/check-in", post(check_in))
        .route("/demo/api/waiting-room", get(waiting_room))
        .route("/demo/api/token", get(token))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(Arc::new(demo))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckIn {
    ticket: String,
}

async fn check_in(State(demo): State<Arc<Demo>>, body: Bytes) -> Result<Response, ApiError> {
    let req: CheckIn = serde_json::from_slice(&body).map_err(|e| {
        if e.is_data() {
            ApiError::InvalidField(format!("{e}: send {{\"ticket\":\"A-17\"}}"))
        } else {
            ApiError::InvalidJson(e.to_string())
        }
    })?;
    let ticket = board::ticket(&req.ticket).ok_or_else(|| {
        ApiError::InvalidField(
            "field ticket must be a ticket number (1 to 12 letters, digits or -, with a digit, e.g. A-17), never a name".into(),
        )
    })?;
    let answer = demo.check_in(ticket).await?;
    demo.save().await;
    Ok(no_store(Json(answer)))
}

async fn waiting_room(State(demo): State<Arc<Demo>>) -> Result<Response, ApiError> {
    let board = demo.board.lock().await;
    let head = demo
        .app
        .engine
        .read(&demo.channel, &ReadFrom::Head, 1, false)
        .await?;
    let tickets: Vec<&Entry> = board.entries().collect();
    let body = json!({
        "channel": CHANNEL,
        "tickets": tickets,
        "position": {"epoch": head.epoch.to_string(), "seq": head.head},
    });
    drop(board);
    Ok(no_store(Json(body)))
}

/// What the board page needs to connect: a token (or `null` when subscriber auth is off) and
/// the poll interval it shows in its status badge.
async fn token(State(demo): State<Arc<Demo>>) -> Response {
    let config = demo.app.config.load();
    let expires_at = now_ms() / 1000 + TOKEN_TTL_SECS;
    let token = (config.auth.subscribe == SubscribeAuth::Jwt).then(|| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"exp": expires_at, "channels": [TOKEN_SCOPE]}),
            &jsonwebtoken::EncodingKey::from_secret(
                config.auth.subscriber_secret.expose().as_bytes(),
            ),
        )
        .expect("HS256 signing of plain JSON claims cannot fail")
    });
    no_store(Json(json!({
        "token": token,
        "expires_at": expires_at,
        "channels": [TOKEN_SCOPE],
        "poll_interval_ms": config.subscribers.poll_interval.as_millis() as u64,
    })))
}

async fn serve_pusher_js(State(demo): State<Arc<Demo>>) -> Result<Response, ApiError> {
    let body = demo.pusher_js.clone().ok_or_else(|| {
        ApiError::NotFound(
            "/demo/vendor/pusher.min.js (pusher-js: run npm ci, see demo.pusher_js)".into(),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response())
}

impl Demo {
    /// Adds the ticket to the list, then publishes it, both under the board lock. A ticket
    /// already waiting publishes nothing.
    async fn check_in(&self, ticket: String) -> Result<Value, ApiError> {
        let mut board = self.board.lock().await;
        if board.contains(&ticket) {
            return Ok(json!({"ticket": ticket, "already_checked_in": true}));
        }
        let checked_in_at = now_ms();
        let data = json!({"ticket": ticket, "checked_in_at": checked_in_at}).to_string();
        let item = PublishBody {
            channel: Some(CHANNEL.into()),
            channels: None,
            name: EVENT.into(),
            data: Some(RawValue::from_string(data).expect("serde_json output is JSON")),
            id: None,
            priority: None,
        };
        board.add(Entry {
            ticket: ticket.clone(),
            checked_in_at,
        });
        match publish_item(&self.app, item).await {
            Ok(mut answer) => {
                answer["ticket"] = json!(ticket);
                Ok(answer)
            }
            Err(e) => {
                board.remove(&ticket);
                Err(e)
            }
        }
    }

    /// Writes the latest list to the state file, if there is one. A failed write is logged: the
    /// check-in itself has happened.
    async fn save(&self) {
        let Some((path, order)) = &self.state_file else {
            return;
        };
        let _turn = order.lock().await;
        let json = self.board.lock().await.to_json();
        let tmp = path.with_extension("tmp");
        let written = async {
            tokio::fs::write(&tmp, json).await?;
            tokio::fs::rename(&tmp, path).await
        }
        .await;
        if let Err(e) = written {
            warn!(path = %path.display(), "demo waiting-room list not saved: {e}");
        }
    }
}

/// Demo API answers change with every check-in: never cached.
fn no_store(body: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], body).into_response()
}
