//! `POST /v1/publish` and `POST /v1/publish/batch`: authenticate, validate, sequence, answer.
//! Nothing here waits on a subscriber.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, value::RawValue};
use tokio::time::Instant;

use super::body::{header_text, is_json, parse_json, read_json_body};
use super::wire::{BatchBody, PublishAnswer, PublishBody, PublishResult};
use super::{tenancy, ApiError};
use crate::core::{ChannelName, Event, EventDraft};
use crate::tenant::{TenantConfig, TenantId};
use crate::transport::AppState;
use crate::upstream::{OutboundEvent, Priority};

const MAX_NAME_LEN: usize = 200;
const MAX_ID_LEN: usize = 200;
/// Batch items parsed and checked between two yields of the worker.
const CHECKS_PER_TURN: usize = 8;

pub(crate) async fn publish(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    // The headers are read where they are: the `HeaderMap` extractor would clone them.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let outcome = async {
        let tenant = authorize(&state, authorization_of(headers))?;
        tenancy::refuse_when_empty(&state, &tenant)?;
        let max_body = state.config.load().publish.max_body_bytes;
        let bytes = read_json_body(headers, body, max_body).await?;
        publish_body(&state, &tenant, &bytes).await
    }
    .await;
    record(&state, &outcome, started);
    outcome.map(PublishAnswer::into_response)
}

/// `POST /v1/publish` whose request was read whole without hyper (`app::serve::publish_socket`):
/// the same checks in the same order as [`publish`], on the head's two headers it reads.
pub(crate) async fn publish_read(
    state: &AppState,
    authorization: Option<&[u8]>,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Result<PublishAnswer, ApiError> {
    let started = Instant::now();
    let outcome = async {
        let tenant = authorize(state, authorization)?;
        tenancy::refuse_when_empty(state, &tenant)?;
        if !is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let max_body = state.config.load().publish.max_body_bytes;
        if body.len() > max_body {
            return Err(ApiError::PayloadTooLarge(max_body));
        }
        publish_body(state, &tenant, body).await
    }
    .await;
    record(state, &outcome, started);
    outcome
}

/// Parses, checks, admits and publishes one publish body of `tenant`'s.
async fn publish_body(
    state: &AppState,
    tenant: &TenantConfig,
    bytes: &[u8],
) -> Result<PublishAnswer, ApiError> {
    let item = check(state, parse_json::<PublishBody>(bytes)?)?;
    // One channel (nearly every publish) is held to the quotas without a list built for it.
    let (one, several): ([&ChannelName; 1], Vec<&ChannelName>);
    let channels: &[&ChannelName] = match item.channels.as_slice() {
        [only] => {
            one = [only];
            &one
        }
        all => {
            several = all.iter().collect();
            &several
        }
    };
    tenancy::admit_publish(state, tenant, "key publishes", channels)?;
    publish_checked(state, item, None, Some(&tenant.id)).await
}

pub(crate) async fn batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tenant = authorize(&state, authorization_of(&headers))?;
    if let Err(refused) = tenancy::refuse_when_empty(&state, &tenant) {
        let refused = Err(ApiError::from(refused));
        record(&state, &refused, Instant::now());
        return refused;
    }
    let publish = state.config.load().publish.clone();
    let bytes = read_json_body(&headers, body, publish.max_body_bytes).await?;
    let batch = parse_json::<BatchBody>(&bytes)?;
    let max = publish.max_batch_events;
    if batch.events.is_empty() || batch.events.len() > max {
        return Err(ApiError::TooManyEvents(max));
    }
    let mut items: Vec<Result<Checked, ApiError>> = Vec::with_capacity(batch.events.len());
    for (i, raw) in batch.events.iter().enumerate() {
        items.push(
            parse_json::<PublishBody>(raw.get().as_bytes())
                .map_err(|e| locate(e, i))
                .and_then(|item| check(&state, item).map_err(|e| locate(e, i))),
        );
        // Parsing and checking a large batch is a run of work of its own, and a flooding
        // tenant's batches are mostly parsed only to be refused for its quota: give the worker
        // back every few items, as publishing does after each, so another tenant's request
        // does not wait behind the whole batch.
        if i % CHECKS_PER_TURN == CHECKS_PER_TURN - 1 {
            tokio::task::yield_now().await;
        }
    }
    // The tenant's scope and quotas hold for the batch whole: one foreign channel, or one event
    // over the rate, and nothing is published.
    let channels: Vec<&ChannelName> = (items.iter().flatten())
        .flat_map(|item| &item.channels)
        .collect();
    if let Err(refused) = tenancy::admit_publish(&state, &tenant, "key publishes", &channels) {
        let refused = Err(ApiError::from(refused));
        record(&state, &refused, Instant::now());
        return refused;
    }
    let (mut published, mut failed) = (0, 0);
    // One deadline for the whole batch, not one per item: a stuck engine costs the caller one
    // publish's deadline, after which the remaining items are answered at once.
    let deadline = state.engine.batch_deadline();
    let mut retry_later = false;
    // In order, one after another: events of a batch on one channel keep the batch's order.
    let mut results: Vec<serde_json::Value> = Vec::with_capacity(items.len());
    for item in items {
        let started = Instant::now();
        let outcome = match item {
            Ok(item) => publish_checked(&state, item, deadline, Some(&tenant.id))
                .await
                .map(PublishAnswer::into_value),
            Err(e) => Err(e),
        };
        record(&state, &outcome, started);
        // A batch is up to max_batch_events publishes in one task: give the worker back between
        // them, so one tenant's large batch does not hold another's request behind it.
        tokio::task::yield_now().await;
        retry_later |= matches!(outcome, Err(ApiError::EngineUnavailable(_)));
        results.push(match outcome {
            Ok(mut v) => {
                published += 1;
                v["status"] = json!(202);
                v
            }
            Err(e) => {
                failed += 1;
                let mut v = e.body();
                v["status"] = json!(e.status().as_u16());
                v
            }
        });
    }
    let mut response =
        Json(json!({"published": published, "failed": failed, "results": results})).into_response();
    if retry_later {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, crate::engine::RETRY_AFTER_SECS.into());
    }
    Ok(response)
}

/// Prefixes a batch item's error with where it is.
fn locate(e: ApiError, index: usize) -> ApiError {
    match e {
        ApiError::InvalidField(m) => ApiError::InvalidField(format!("events[{index}]: {m}")),
        ApiError::InvalidJson(m) => ApiError::InvalidJson(format!("events[{index}]: {m}")),
        other => other,
    }
}

pub(crate) fn record<T>(state: &AppState, outcome: &Result<T, ApiError>, started: Instant) {
    if outcome.is_err() {
        state.metrics.publish_rejected.increment(1);
    }
    state
        .metrics
        .publish_seconds
        .record(started.elapsed().as_secs_f64());
}

/// The `authorization` header's value.
fn authorization_of(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get(header::AUTHORIZATION).map(|v| v.as_bytes())
}

/// The tenant whose publisher key the bearer is, from the `authorization` header's value.
fn authorize(
    state: &AppState,
    authorization: Option<&[u8]>,
) -> Result<Arc<TenantConfig>, ApiError> {
    let key = authorization
        .and_then(header_text)
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    tenancy::of_key(state, key.trim()).ok_or(ApiError::Unauthorized)
}

/// Validates one publish item whole, then publishes it to each of its channels and hands each
/// new event to the vendor lanes: the clinic demo's backend, which publishes as the operator
/// (no tenant's key, so no tenant's quota).
pub(crate) async fn publish_item(
    state: &AppState,
    item: PublishBody<'_>,
) -> Result<serde_json::Value, ApiError> {
    let item = check(state, item)?;
    Ok(publish_checked(state, item, None, None).await?.into_value())
}

/// A publish item checked whole, not yet published.
struct Checked {
    channels: Vec<ChannelName>,
    /// Sent as `channels` (answered with a result per channel).
    multi: bool,
    draft: EventDraft,
    priority: Option<Priority>,
}

/// Checks one publish item whole: nothing about it is refused once publishing starts.
fn check(state: &AppState, item: PublishBody<'_>) -> Result<Checked, ApiError> {
    let (channels, multi) = match (&item.channel, &item.channels) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidField(
                "give either channel or channels, not both".into(),
            ))
        }
        (Some(c), None) => (std::slice::from_ref(c), false),
        (None, Some(cs)) => (cs.as_slice(), true),
        (None, None) => {
            return Err(ApiError::InvalidField(
                "missing field `channel` (or `channels` for several)".into(),
            ))
        }
    };
    let max = state.config.load().publish.max_channels_per_publish;
    if channels.is_empty() || channels.len() > max {
        return Err(ApiError::TooManyChannels(max));
    }
    let channels = channels
        .iter()
        .map(|c| ChannelName::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    // A channel listed twice would be published twice under one id (two seqs); say so instead.
    // One channel (nearly every publish) cannot be listed twice: no set to build and hash.
    let mut seen = std::collections::HashSet::new();
    let several = channels.len() > 1;
    if let Some(twice) = (channels.iter()).find(|c| several && !seen.insert(c.as_str())) {
        return Err(ApiError::InvalidField(format!(
            "field channels lists {:?} more than once; list each channel once",
            twice.as_str()
        )));
    }
    if item.name.is_empty() || item.name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::InvalidField(format!(
            "field name must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    if let Some(id) = &item.id {
        if id.is_empty() || id.chars().count() > MAX_ID_LEN || id.chars().any(char::is_control) {
            return Err(ApiError::InvalidField(format!(
                "field id must be 1 to {MAX_ID_LEN} printable characters"
            )));
        }
    }
    let data =
        (item.data).unwrap_or_else(|| RawValue::from_string("null".into()).expect("null is JSON"));
    let priority = match item.priority.as_deref() {
        None => None,
        Some("realtime") => Some(Priority::Realtime),
        Some("bulk") => Some(Priority::Bulk),
        Some(other) => {
            return Err(ApiError::InvalidField(format!(
                "field priority = {other:?}: use \"realtime\" or \"bulk\""
            )))
        }
    };
    let draft = EventDraft::new(Arc::from(&*item.name), data, item.id.map(Arc::from));
    Ok(Checked {
        channels,
        multi,
        draft,
        priority,
    })
}

/// Publishes a checked item to each of its channels, under a deadline shared with other items
/// (a batch's), and hands each new event to the vendor lanes. `owner`: the tenant admission
/// found owns every channel, when there was one.
async fn publish_checked(
    state: &AppState,
    item: Checked,
    deadline: Option<Instant>,
    owner: Option<&TenantId>,
) -> Result<PublishAnswer, ApiError> {
    let Checked {
        channels,
        multi,
        draft,
        priority,
    } = item;
    let published = state
        .engine
        .publish_all(&channels, &draft, deadline)
        .await?;
    // A list of results only for an answer that lists them (`channels`).
    let mut results = Vec::with_capacity(if multi { published.len() } else { 0 });
    let mut only = None;
    for (ch, p) in channels.iter().zip(&published) {
        if let Some(event) = &p.event {
            forward(state, event, priority, None, owner);
        }
        if p.duplicate {
            state.metrics.publish_duplicate.increment(1);
        } else {
            state.metrics.publish_accepted.increment(1);
        }
        let result = PublishResult::new(ch, p);
        if multi {
            results.push(result);
        } else {
            only = Some(result);
        }
    }
    Ok(match only {
        Some(result) => PublishAnswer::One(result),
        None => PublishAnswer::Many {
            id: published[0].id.clone(),
            results,
        },
    })
}

/// Hands a new event to the vendor lanes. Synchronous: the lanes never make a publisher wait,
/// and what they shed is still in history and on the own broadcast. `as_published` is an app
/// event's data as sent ([`OutboundEvent::as_published`]); a `vendors.signal_only` channel
/// still sends only the signal, whoever published. `owner`: the channel's tenant when the
/// caller knows it already (admission checked it), else it is looked up.
pub(crate) fn forward(
    state: &AppState,
    event: &Event,
    priority: Option<Priority>,
    as_published: Option<&Bytes>,
    owner: Option<&TenantId>,
) {
    if !state.failover.has_any_vendors() {
        return;
    }
    let config = state.config.load();
    let priority = priority.unwrap_or_else(|| {
        let bulk = (config.vendors.bulk_channels.iter()).any(|p| event.channel.matches(p));
        if bulk {
            Priority::Bulk
        } else {
            Priority::Realtime
        }
    });
    let signal = (config.vendors.signal_only.iter()).any(|p| event.channel.matches(p));
    let outbound = if signal {
        // The body stays home: the vendor learns only that the channel moved on.
        OutboundEvent::signal(
            event.channel.as_str(),
            event.epoch.as_str(),
            event.seq,
            &*event.id,
            priority,
        )
    } else if let Some(data) = as_published {
        OutboundEvent::as_published(
            event.channel.as_str(),
            &*event.name,
            &*event.id,
            event.frame.clone(),
            data.clone(),
            event.exclude_socket.as_deref().map(str::to_owned),
            priority,
        )
    } else {
        OutboundEvent::new(
            event.channel.as_str(),
            &*event.name,
            &*event.id,
            event.frame.clone(),
            priority,
        )
    };
    let tenant = match owner {
        Some(id) => id.clone(),
        None => (state.tenants.load().of_channel(event.channel.as_str()).id).clone(),
    };
    // To the tenant's own vendors when it has some, else the shared ones.
    let _ = state.failover.enqueue(outbound.for_tenant(tenant));
}
