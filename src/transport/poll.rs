//! Polling: `GET /v1/channels/{channel}/events` for one channel and `POST /v1/poll` for several,
//! both with long-poll (`wait_ms`). A long poll joins the live feed in the same step as its read,
//! so an event published in between wakes it.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

use super::body::{parse_json, read_json_body};
use super::error::ApiPath;
use super::subscriber::{self, query_values};
use super::tenancy;
use super::wire::PollBody;
use super::ApiError;
use crate::auth::TokenScope;
use crate::core::{ChannelName, Epoch, Position, Read, ReadFrom};
use crate::ops::metrics::{Metrics, Transport};
use crate::transport::AppState;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
const MAX_POLL_CHANNELS: usize = 100;

pub(crate) async fn poll_one(
    State(state): State<AppState>,
    ApiPath(channel): ApiPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    subscriber::enabled(&state, Transport::Poll)?;
    let pairs = subscriber::query_pairs(query.as_deref());
    let scope = subscriber::authorize(&state, &pairs, &headers)?;
    let ch = allowed(&scope, &channel)?;
    let param = |k| query_values(&pairs, k).next();
    let number = |k: &'static str| -> Result<Option<u64>, ApiError> {
        param(k)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::InvalidQuery(format!("{k}={v:?} must be a whole number"))
                })
            })
            .transpose()
    };
    let from = read_from(param("epoch"), number("since")?);
    let limit = limit(number("limit")?.map(|n| n as usize))?;
    let wait = wait(&state, number("wait_ms")?)?;
    // A waiting poll holds a seat in the channel's tenant, as a stream does.
    let mut seats = tenancy::seats(&state);
    tenancy::join(&state, &mut seats, &ch)?;

    let mut reads = wait_for_any(&state, vec![(ch, from)], limit, wait).await?;
    let (ch, read) = reads.pop().expect("one channel in, one answer out");
    let etag = format!("\"{}:{}\"", read.epoch, read.head);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut response = if unchanged && read.events.is_empty() && read.reset.is_none() {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut out =
            Vec::with_capacity(256 + read.events.iter().map(|e| e.frame.len() + 1).sum::<usize>());
        write_answer(&mut out, &state, &ch, &read, true);
        json_response(out)
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

pub(crate) async fn poll_many(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    subscriber::enabled(&state, Transport::Poll)?;
    let pairs = subscriber::query_pairs(query.as_deref());
    let scope = subscriber::authorize(&state, &pairs, &headers)?;
    let max_body = state.config.load().publish.max_body_bytes;
    let bytes = read_json_body(&headers, body, max_body).await?;
    let req: PollBody = parse_json(&bytes)?;
    if req.channels.is_empty() || req.channels.len() > MAX_POLL_CHANNELS {
        return Err(ApiError::InvalidField(format!(
            "field channels must list 1 to {MAX_POLL_CHANNELS} channels"
        )));
    }
    let mut wanted = Vec::with_capacity(req.channels.len());
    for item in &req.channels {
        let ch = allowed(&scope, &item.channel)?;
        wanted.push((ch, read_from(item.epoch.as_deref(), item.since)));
    }
    let limit = limit(req.limit)?;
    let wait = wait(&state, req.wait_ms)?;
    let mut seats = tenancy::seats(&state);
    for (ch, _) in &wanted {
        tenancy::join(&state, &mut seats, ch)?;
    }
    let reads = wait_for_any(&state, wanted, limit, wait).await?;
    drop(seats);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"results\":[");
    for (i, (ch, read)) in reads.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_answer(&mut out, &state, ch, read, false);
    }
    out.extend_from_slice(b"],");
    write_tail(&mut out, &state);
    Ok(json_response(out))
}

fn allowed(scope: &TokenScope, channel: &str) -> Result<ChannelName, ApiError> {
    let ch = ChannelName::parse(channel)?;
    if scope.allows(&ch) {
        Ok(ch)
    } else {
        Err(ApiError::ChannelForbidden(channel.to_string()))
    }
}

/// Where a poll starts, from its optional epoch and since.
fn read_from(epoch: Option<&str>, since: Option<u64>) -> ReadFrom {
    match (epoch, since) {
        (_, None) => ReadFrom::Head,
        (None, Some(0)) => ReadFrom::Oldest,
        (None, Some(n)) => ReadFrom::AfterInCurrent(n),
        (Some(e), Some(n)) => ReadFrom::After(Position {
            epoch: Epoch::from_client(e),
            seq: n,
        }),
    }
}

fn limit(asked: Option<usize>) -> Result<usize, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::InvalidQuery(format!(
            "limit={n} must be between 1 and {MAX_LIMIT}"
        ))),
    }
}

fn wait(state: &AppState, asked: Option<u64>) -> Result<Duration, ApiError> {
    let max = state.config.load().subscribers.long_poll_max;
    match asked {
        None | Some(0) => Ok(Duration::ZERO),
        Some(ms) if Duration::from_millis(ms) <= max => Ok(Duration::from_millis(ms)),
        Some(ms) => Err(ApiError::InvalidQuery(format!(
            "wait_ms={ms} is over the maximum of {}",
            max.as_millis()
        ))),
    }
}

/// Reads every channel; when none has anything and `wait` > 0, waits for the first event on any
/// of them (or the deadline, or shutdown) and reads again from the positions of the first read.
async fn wait_for_any(
    state: &AppState,
    wanted: Vec<(ChannelName, ReadFrom)>,
    limit: usize,
    wait: Duration,
) -> Result<Vec<(ChannelName, Read)>, ApiError> {
    let watch = !wait.is_zero() && !state.lifecycle.is_draining();
    let mut reads = Vec::with_capacity(wanted.len());
    for (ch, from) in &wanted {
        reads.push((ch.clone(), state.engine.read(ch, from, limit, watch).await?));
    }
    let ready = reads
        .iter()
        .any(|(_, r)| !r.events.is_empty() || r.reset.is_some());
    if !watch || ready {
        return Ok(reads);
    }
    let mut woken: FuturesUnordered<_> = reads
        .iter_mut()
        .filter_map(|(_, r)| r.watch.take())
        .map(|mut rx| async move {
            let _ = rx.recv().await;
        })
        .collect();
    let _token = state.lifecycle.track();
    tokio::select! {
        _ = woken.next() => {}
        () = tokio::time::sleep(wait) => {}
        () = state.lifecycle.goodbye() => return Ok(reads),
    }
    drop(woken);
    let mut again = Vec::with_capacity(reads.len());
    for (ch, first) in reads {
        let from = ReadFrom::After(first.next);
        again.push((
            ch.clone(),
            state.engine.read(&ch, &from, limit, false).await?,
        ));
    }
    Ok(again)
}

/// One channel's answer as JSON, with the events' shared bytes spliced in.
fn write_answer(out: &mut Vec<u8>, state: &AppState, ch: &ChannelName, read: &Read, tail: bool) {
    // Channel names and server epochs are from a JSON-safe alphabet: no escaping needed.
    out.extend_from_slice(b"{\"channel\":\"");
    out.extend_from_slice(ch.as_str().as_bytes());
    out.extend_from_slice(b"\",\"epoch\":\"");
    out.extend_from_slice(read.epoch.as_str().as_bytes());
    out.extend_from_slice(b"\",\"events\":[");
    for (i, e) in read.events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.frame);
    }
    out.extend_from_slice(b"],\"next\":{\"epoch\":\"");
    out.extend_from_slice(read.next.epoch.as_str().as_bytes());
    out.extend_from_slice(format!("\",\"seq\":{}}},", read.next.seq).as_bytes());
    match read.reset {
        Some(reason) => {
            Metrics::reset(Transport::Poll, reason.as_str()).increment(1);
            out.extend_from_slice(b"\"reset\":true,\"reason\":\"");
            out.extend_from_slice(reason.as_str().as_bytes());
            out.extend_from_slice(b"\"");
        }
        None => out.extend_from_slice(b"\"reset\":false"),
    }
    Metrics::delivered(Transport::Poll).increment(read.events.len() as u64);
    if tail {
        out.push(b',');
        write_tail(out, state);
    } else {
        out.push(b'}');
    }
}

/// The fields every poll answer ends with, and the closing brace.
fn write_tail(out: &mut Vec<u8>, state: &AppState) {
    let interval = state.config.load().subscribers.poll_interval.as_millis();
    out.extend_from_slice(format!("\"poll_interval_ms\":{interval}").as_bytes());
    if state.lifecycle.is_draining() {
        let retry = state.lifecycle.retry_hint_ms();
        out.extend_from_slice(format!(",\"reconnect_ms\":{retry}").as_bytes());
    }
    out.push(b'}');
}

fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
