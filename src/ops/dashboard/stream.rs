//! `GET /admin/stream`: the dashboard's live feed, Server-Sent Events authenticated like every
//! admin call (`Authorization: Bearer`; the page reads it with `fetch()`, since `EventSource`
//! cannot send headers, so the token never appears in a URL or an access log).
//!
//! Each message is `event: snapshot` with one JSON object: `at`, `viewer` (the token's name),
//! `status` (as `GET /admin/status`), `now` (live rates and levels) and, when a new point was
//! taken and on the first message, `series` (the last 15 minutes). A snapshot goes out every
//! second and at once when the route, the mode or a vendor's state changes. When the node
//! shuts down or drains, the feed goes on showing the drain while clients are still connected,
//! then ends with `event: goodbye` (the feed itself is not a tracked connection, so it never
//! holds a drain up).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::sampler::Figures;
use super::trends::Now;
use super::Dashboard;
use crate::failover::{ModeSetting, State as VendorState, Status};
use crate::ops::admin::Admin;
use crate::ops::status::status_json;
use crate::transport::ApiError;
use crate::transport::AppState;

pub(super) async fn stream(
    State(state): State<AppState>,
    Extension(dashboard): Extension<Arc<Dashboard>>,
    Admin(viewer): Admin,
) -> Result<Response, ApiError> {
    dashboard.start_sampler(&state);
    let mut status = state.failover.watch_status();
    let signature = Signature::of(&status.borrow_and_update(), &state);
    let feed = Feed {
        figures: dashboard.figures.subscribe(),
        status,
        status_open: true,
        signature,
        series_sent: None,
        leaving: Box::pin(state.lifecycle.goodbye_token().cancelled_owned()),
        left: false,
        gone: Box::pin(std::future::pending()),
        done: false,
        viewer,
        state,
    };
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next().await?;
        Some((Ok::<_, Infallible>(chunk), feed))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// One viewer's feed.
struct Feed {
    state: AppState,
    viewer: String,
    figures: watch::Receiver<Arc<Figures>>,
    status: watch::Receiver<Status>,
    status_open: bool,
    /// What the last snapshot showed of the route, mode and vendor states.
    signature: Signature,
    /// The series version last sent (`None`: not sent yet).
    series_sent: Option<u64>,
    /// Resolves when the node starts shutting down or draining.
    leaving: Pin<Box<dyn Future<Output = ()> + Send>>,
    left: bool,
    /// Once left: resolves when the node's connections are gone.
    gone: Pin<Box<dyn Future<Output = ()> + Send>>,
    done: bool,
}

impl Feed {
    /// The next chunk to write, or `None` when the feed is over.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if self.series_sent.is_none() {
            return Some(self.snapshot());
        }
        loop {
            tokio::select! {
                biased;
                () = &mut self.leaving, if !self.left => {
                    self.left = true;
                    let lifecycle = self.state.lifecycle.clone();
                    self.gone = Box::pin(async move { lifecycle.connections_closed().await });
                    return Some(self.snapshot());
                }
                () = &mut self.gone => return Some(self.goodbye()),
                changed = self.figures.changed() => {
                    if changed.is_err() {
                        return Some(self.goodbye());
                    }
                    return Some(self.snapshot());
                }
                changed = self.status.changed(), if self.status_open => {
                    if changed.is_err() {
                        // The failover driver stopped: the figures still tick.
                        self.status_open = false;
                        continue;
                    }
                    let signature = Signature::of(&self.status.borrow_and_update(), &self.state);
                    if signature != self.signature {
                        return Some(self.snapshot());
                    }
                }
            }
        }
    }

    /// The last snapshot, then `event: goodbye`; the feed ends.
    fn goodbye(&mut self) -> Bytes {
        self.done = true;
        let mut last = self.snapshot().to_vec();
        last.extend_from_slice(b"event: goodbye\ndata: {\"reason\":\"node shutting down\"}\n\n");
        last.into()
    }

    /// `event: snapshot` with everything the page shows now.
    fn snapshot(&mut self) -> Bytes {
        let status = self.status.borrow().clone();
        self.signature = Signature::of(&status, &self.state);
        let figures = self.figures.borrow_and_update().clone();
        let series = (self.series_sent != Some(figures.series_version)).then(|| {
            self.series_sent = Some(figures.series_version);
            &*figures.series
        });
        let message = Snapshot {
            at: figures.at_ms,
            viewer: &self.viewer,
            status: status_json(&self.state, &status),
            now: &figures.now,
            series,
        };
        let json = serde_json::to_string(&message).unwrap_or_else(|_| "{}".into());
        Bytes::from(format!("event: snapshot\ndata: {json}\n\n"))
    }
}

#[derive(Serialize)]
struct Snapshot<'a> {
    at: u64,
    viewer: &'a str,
    status: Value,
    now: &'a Now,
    #[serde(skip_serializing_if = "Option::is_none")]
    series: Option<&'a RawValue>,
}

/// The part of the status whose change is sent at once (the rest changes every tick and is sent
/// with the next second's snapshot).
#[derive(Debug, PartialEq)]
struct Signature {
    route_version: u64,
    mode: ModeSetting,
    vendors: Vec<(VendorState, Option<Instant>)>,
    draining: bool,
}

impl Signature {
    fn of(status: &Status, state: &AppState) -> Self {
        Self {
            route_version: status.route.version,
            mode: status.mode.clone(),
            vendors: status
                .vendors
                .iter()
                .map(|v| (v.health.state, v.transitions.back().map(|t| t.at)))
                .collect(),
            draining: state.lifecycle.is_draining(),
        }
    }
}
