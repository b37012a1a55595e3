//! The Pusher HTTP API ingress: `POST /apps/{app_id}/events` and `/apps/{app_id}/batch_events`,
//! so a backend that publishes with a Pusher server SDK only changes its host. Each request is
//! signed as Pusher requires and checked in full (`signature`); each event is checked against
//! Pusher's limits (`trigger`) and published like `/v1/publish` (same engine, deadlines,
//! metrics and 503s) through [`super::app_publish`], which also forwards it to the vendor as
//! the app's `forward` says, once the app's tenant admits it (its channels only, within its
//! quotas; a request is admitted or refused whole). Nothing here waits on a vendor.
//!
//! # Layout
//! - `signature`: the pure check of `auth_key`, `auth_timestamp`, `auth_version`, `body_md5`
//!   and `auth_signature`.
//! - `trigger`: Pusher's limits and channel names, into understudy drafts.

mod signature;
mod trigger;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

pub(crate) use signature::SignatureError;

use super::publish::record;
use super::publish_app_event;
use super::tenancy;
use super::wire::pusher_http::{PusherBatch, PusherTrigger};
use super::{read_json_body, ApiError, ApiPath};
use crate::config::AppConfig;
use crate::core::ChannelName;
use crate::transport::AppState;
use trigger::{Trigger, MAX_BATCH, MAX_BODY_BYTES, MAX_DATA_BYTES};

/// Why a Pusher HTTP API request is refused, with the statuses the Pusher SDKs expect.
#[derive(Debug, thiserror::Error)]
pub enum PusherError {
    #[error("no app has id {0:?}; the path names an [[apps]] id")]
    UnknownApp(String),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the request body is over {0} bytes; send at most {MAX_BATCH} events of at most {MAX_DATA_BYTES} bytes of data")]
    BodyTooLarge(usize),
    #[error("{at}data is {size} bytes, over Pusher's {MAX_DATA_BYTES} byte limit")]
    DataTooLarge { at: String, size: usize },
    #[error("{0}")]
    BadRequest(String),
}

impl PusherError {
    pub fn status(&self) -> StatusCode {
        match self {
            PusherError::UnknownApp(_) => StatusCode::NOT_FOUND,
            PusherError::Signature(_) => StatusCode::UNAUTHORIZED,
            PusherError::BodyTooLarge(_) | PusherError::DataTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            PusherError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            PusherError::UnknownApp(_) => "unknown_app",
            PusherError::Signature(SignatureError::Expired { .. }) => "timestamp_expired",
            PusherError::Signature(_) => "invalid_signature",
            PusherError::BodyTooLarge(_) => "payload_too_large",
            PusherError::DataTooLarge { .. } => "data_too_large",
            PusherError::BadRequest(_) => "invalid_request",
        }
    }
}

/// `POST /apps/{app_id}/events`: one event to 1 to 100 channels. Answers `{}`, or
/// `{"channels":{..}}` when `info` asks for counts.
pub(crate) async fn events(
    State(state): State<AppState>,
    ApiPath(app_id): ApiPath<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let outcome = async {
        let (app, bytes) = authenticate(&state, &app_id, &uri, &headers, body).await?;
        let trigger = trigger::validate(trigger::parse::<PusherTrigger>(&bytes)?, None)?;
        let channels: Vec<&ChannelName> = trigger.channels.iter().collect();
        let tenant = tenancy::of_app(&state, &app.id);
        tenancy::admit_publish(&state, &tenant, "app publishes", &channels)?;
        publish_app_event(&state, &app, &trigger.channels, &trigger.draft, None).await?;
        let mut answer = json!({});
        if trigger.subscription_count {
            answer["channels"] = counts(&state, &trigger);
        }
        Ok(Json(answer).into_response())
    }
    .await;
    record(&state, &outcome, started);
    outcome
}

/// `POST /apps/{app_id}/batch_events`: 1 to 10 events, each to one channel, published in order
/// under one deadline. Every event is checked before the first is published, so a bad item
/// publishes nothing. Answers `{}`, or `{"batch":[..]}` when an item asks for `info`.
pub(crate) async fn batch_events(
    State(state): State<AppState>,
    ApiPath(app_id): ApiPath<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let checked = async {
        let (app, bytes) = authenticate(&state, &app_id, &uri, &headers, body).await?;
        let batch = trigger::parse::<PusherBatch>(&bytes)?;
        if batch.batch.is_empty() || batch.batch.len() > MAX_BATCH {
            return Err(PusherError::BadRequest(format!(
                "a batch holds 1 to {MAX_BATCH} events, got {}",
                batch.batch.len()
            ))
            .into());
        }
        let triggers = (batch.batch.into_iter().enumerate())
            .map(|(i, t)| trigger::validate(t, Some(i)))
            .collect::<Result<Vec<_>, _>>()?;
        // The app's tenant's scope and quotas hold for the batch whole.
        let channels: Vec<&ChannelName> = triggers.iter().flat_map(|t| &t.channels).collect();
        let tenant = tenancy::of_app(&state, &app.id);
        tenancy::admit_publish(&state, &tenant, "app publishes", &channels)?;
        Ok::<_, ApiError>((app, triggers))
    }
    .await;
    let (app, triggers) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            let refused = Err(e);
            record(&state, &refused, started);
            return refused;
        }
    };
    // One deadline for the whole batch, as /v1/publish/batch: a stuck engine costs one
    // publish's deadline, then the rest is answered at once.
    let deadline = state.engine.batch_deadline();
    for trigger in &triggers {
        let started = Instant::now();
        let outcome =
            publish_app_event(&state, &app, &trigger.channels, &trigger.draft, deadline).await;
        record(&state, &outcome, started);
        // The items before this one are published; a retry of the request publishes them again
        // (docs/protocol.md, "Pusher HTTP API").
        outcome?;
    }
    if !triggers.iter().any(|t| t.subscription_count) {
        return Ok(Json(json!({})).into_response());
    }
    // A batch item has one channel.
    let items: Vec<Value> = (triggers.iter())
        .map(|t| match t.subscription_count {
            true => subscription_count(&state, &t.channels[0]),
            false => json!({}),
        })
        .collect();
    Ok(Json(json!({ "batch": items })).into_response())
}

/// The app the path names, and the body, once its signature is checked.
async fn authenticate(
    state: &AppState,
    app_id: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Arc<AppConfig>, Bytes), ApiError> {
    let app = state
        .apps
        .load()
        .by_id(app_id)
        .ok_or_else(|| PusherError::UnknownApp(app_id.chars().take(64).collect::<String>()))?;
    let bytes = read_json_body(headers, body, MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            ApiError::PayloadTooLarge(limit) => PusherError::BodyTooLarge(limit).into(),
            other => other,
        })?;
    let request = signature::SignedRequest {
        method: "POST",
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        body: &bytes,
    };
    let now = crate::core::event::now_ms() / 1000;
    signature::check(request, &app.key, app.secret.expose().as_bytes(), now)
        .map_err(PusherError::from)?;
    Ok((app, bytes))
}

/// `{"<channel>":{"subscription_count":n},..}` for an event's channels.
fn counts(state: &AppState, trigger: &Trigger) -> Value {
    let channels: Map<String, Value> = (trigger.channels.iter())
        .map(|c| (c.as_str().to_owned(), subscription_count(state, c)))
        .collect();
    Value::Object(channels)
}

/// `{"subscription_count":n}`: understudy subscribers of the channel on this node (with the
/// Redis engine, other nodes' subscribers are not counted).
fn subscription_count(state: &AppState, channel: &ChannelName) -> Value {
    let n = state
        .engine
        .registry()
        .subscriber_count_of(channel.as_str());
    json!({ "subscription_count": n })
}
