//! The Ably REST ingress: `POST /channels/{channel}/messages` and
//! `POST /keys/{keyName}/requestToken`, as the Ably server SDKs call them, so a team already on
//! Ably publishes to understudy by pointing the SDK's REST host at it. docs/protocol.md, "Ably
//! REST ingress".
//!
//! Each message becomes an ordinary understudy event on the one channel space (seq, epoch,
//! history; its `id` is the idempotency key), through the same engine call, deadline and
//! metrics as `/v1/publish`; nothing here waits on a vendor. Bodies and answers are JSON or
//! msgpack (`Content-Type` and `Accept`), the SDKs' default being msgpack.
//!
//! # Layout
//! - `message`: messages as sent, checked whole and decoded into what is stored.
//! - `error`: [`AblyError`], mapped once to Ably's status, code and error body.

pub(crate) mod error;
pub(crate) mod message;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::time::Instant;

use self::error::AblyError;
use super::app_publish::publish_app_event;
use super::body::read_body;
use super::tenancy;
use crate::auth::ably::{authenticate, TokenRequestBody};
use crate::core::{ChannelName, EventDraft};
use crate::transport::AppState;

/// Largest request body read: one publish's 64 KiB of messages, with room for JSON escaping
/// and base64.
const MAX_BODY: usize = 512 * 1024;
/// Largest `requestToken` body.
const MAX_TOKEN_BODY: usize = 8 * 1024;

/// The wire format of a body or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Msgpack,
}

const MSGPACK: &str = "application/x-msgpack";

impl Format {
    /// The body's format, from its `Content-Type`; `missing` when it has none.
    fn of_body(headers: &HeaderMap, missing: Option<Format>) -> Result<Format, AblyError> {
        let unsupported = || {
            AblyError::BadRequest(
                "send the body as application/json or application/x-msgpack".into(),
            )
        };
        let kind = (headers.get(header::CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match kind.as_str() {
            "application/json" => Ok(Format::Json),
            MSGPACK => Ok(Format::Msgpack),
            "" => missing.ok_or_else(unsupported),
            _ => Err(unsupported()),
        }
    }

    /// The answer's format: msgpack when `Accept` names it (the SDKs' binary protocol), else JSON.
    fn of_answer(headers: &HeaderMap) -> Format {
        let accept = (headers.get(header::ACCEPT)).and_then(|v| v.to_str().ok());
        if accept.is_some_and(|a| a.to_ascii_lowercase().contains(MSGPACK)) {
            Format::Msgpack
        } else {
            Format::Json
        }
    }

    /// `value` as a response body in this format, with exactly the content type the SDKs match.
    fn answer<T: Serialize>(self, status: StatusCode, value: &T) -> Response {
        let (content_type, bytes) = match self {
            Format::Json => (
                "application/json",
                serde_json::to_vec(value).expect("answers serialise"),
            ),
            Format::Msgpack => (
                MSGPACK,
                rmp_serde::to_vec_named(value).expect("answers serialise"),
            ),
        };
        (
            status,
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response()
    }
}

/// `POST /channels/{channel}/messages`: one message or an array, all published or (refused
/// up front) none; answers 201 with one serial per message.
pub(crate) async fn publish(
    State(state): State<AppState>,
    channel: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AblyError> {
    let started = Instant::now();
    let outcome = publish_messages(&state, channel, &headers, body).await;
    if outcome.is_err() {
        state.metrics.publish_rejected.increment(1);
    }
    (state.metrics.publish_seconds).record(started.elapsed().as_secs_f64());
    outcome
}

async fn publish_messages(
    state: &AppState,
    channel: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, AblyError> {
    let authorization = (headers.get(header::AUTHORIZATION)).and_then(|v| v.to_str().ok());
    let credential = authenticate(
        &state.apps.load(),
        authorization,
        crate::core::event::now_ms(),
    )?;
    let Path(channel) = channel.map_err(|e| AblyError::BadRequest(e.body_text()))?;
    let channel = ChannelName::parse(&channel).map_err(|e| {
        AblyError::InvalidChannel(format!(
            "{e}; understudy refuses channel names it cannot hold rather than change them"
        ))
    })?;
    credential.check_publish(&channel)?;
    let format = Format::of_body(headers, None)?;
    let bytes = read_body(headers, body, MAX_BODY).await?;
    let max = state.config.load().publish.max_batch_events;
    let messages = message::prepare(message::decode(format, &bytes, max)?, &credential)?;
    // One deadline for the whole request, as for a /v1/publish batch. Messages are published
    // in order; if the engine fails part way, those before stay published and a retry with
    // the same ids (what the SDKs send) publishes only the rest.
    // The app's tenant admits the request whole: its own channel, one event per message.
    let tenant = tenancy::of_app(state, &credential.app.id);
    tenancy::admit_publish(
        state,
        &tenant,
        "app publishes",
        &vec![&channel; messages.len()],
    )?;
    let deadline = state.engine.batch_deadline();
    let channels = [channel];
    let mut serials = Vec::with_capacity(messages.len());
    let mut first_id = None;
    for m in messages {
        let draft = EventDraft::new(m.name, m.data, m.id);
        let published =
            publish_app_event(state, &credential.app, &channels, &draft, deadline).await?;
        let p = &published[0];
        first_id.get_or_insert_with(|| p.id.clone());
        serials.push(format!("{}:{}", p.epoch, p.seq));
    }
    let answer = serde_json::json!({
        "channel": channels[0].as_str(),
        "messageId": first_id,
        "serials": serials,
    });
    Ok(Format::of_answer(headers).answer(StatusCode::CREATED, &answer))
}

/// `POST /keys/{keyName}/requestToken`: a signed TokenRequest, or TokenParams with the key's
/// Basic auth, exchanged for an Ably JWT (TokenDetails).
pub(crate) async fn request_token(
    State(state): State<AppState>,
    key_name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AblyError> {
    let Path(key_name) = key_name.map_err(|e| AblyError::BadRequest(e.body_text()))?;
    let app = (state.apps.load().by_key(&key_name))
        .ok_or_else(|| AblyError::UnknownKey(key_name.chars().take(64).collect()))?;
    // Without a content type, JSON: what curl and hand-written clients send.
    let format = Format::of_body(&headers, Some(Format::Json))?;
    let bytes = read_body(&headers, body, MAX_TOKEN_BODY).await?;
    let request: TokenRequestBody = match format {
        Format::Json => serde_json::from_slice(&bytes)
            .map_err(|e| AblyError::BadRequest(format!("the body is not a TokenRequest: {e}")))?,
        Format::Msgpack => rmp_serde::from_slice(&bytes)
            .map_err(|e| AblyError::BadRequest(format!("the body is not a TokenRequest: {e}")))?,
    };
    let now = crate::core::event::now_ms();
    let grant = if request.is_signed() {
        request.check_signed(&app, &state.ably_nonces, now)?
    } else {
        // Unsigned parameters need the key itself: its Basic auth, for this very key.
        let authorization = (headers.get(header::AUTHORIZATION)).and_then(|v| v.to_str().ok());
        let credential = authenticate(&state.apps.load(), authorization, now)?;
        if credential.capability.is_some() || credential.app.key != app.key {
            return Err(crate::auth::ably::AblyAuthError::InvalidCredentials.into());
        }
        request.grant()?
    };
    let details = grant.issue(&app, now);
    Ok(Format::of_answer(&headers).answer(StatusCode::OK, &details))
}

/// Any other method on the Ably routes.
pub(crate) async fn method_not_allowed() -> AblyError {
    AblyError::MethodNotAllowed
}
