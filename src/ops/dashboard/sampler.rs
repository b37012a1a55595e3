//! The one background task behind the dashboard. Every second it reads the running totals
//! ([`crate::ops::metrics::totals`]), each vendor's lanes and passive window into [`Trends`] and
//! publishes the resulting [`Figures`] on a `watch` that every open dashboard stream reads. Canary
//! rounds are picked up from the status snapshots the failover driver already publishes. It holds
//! no lock across an await, and stops within a second of the dashboard being dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::trends::{Now, Reading, Trends, VendorReading};
use crate::core::event::now_ms;
use crate::failover::{CanaryResult, Status};
use crate::ops::metrics::totals;
use crate::transport::AppState;

/// How often the figures are refreshed (and every open stream sends a snapshot).
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// What the sampler publishes each tick.
#[derive(Clone, Debug)]
pub(crate) struct Figures {
    /// When it was read, in ms since the Unix epoch.
    pub at_ms: u64,
    pub now: Now,
    /// The 15-minute series as JSON, serialised once per point and shared by every stream.
    pub series: Arc<RawValue>,
    /// Goes up by one with every new point, so a stream sends the series only when it changed.
    pub series_version: u64,
}

impl Figures {
    pub(crate) fn empty() -> Self {
        Self {
            at_ms: now_ms(),
            now: Now::default(),
            series: series_json(&Trends::default()),
            series_version: 0,
        }
    }
}

fn series_json(trends: &Trends) -> Arc<RawValue> {
    let text = serde_json::to_string(trends.series()).unwrap_or_else(|_| "null".into());
    RawValue::from_string(text)
        .map(Arc::from)
        .unwrap_or_else(|_| Arc::from(RawValue::NULL.to_owned()))
}

/// Runs until `out` is dropped.
pub(crate) async fn run(state: AppState, out: Weak<watch::Sender<Arc<Figures>>>) {
    let mut status = state.failover.watch_status();
    let mut status_open = true;
    let mut trends = Trends::default();
    let mut canaries_seen: Vec<Option<Instant>> = Vec::new();
    take_canaries(&status.borrow_and_update(), &mut canaries_seen, None);
    let mut series = series_json(&trends);
    let mut series_version = 0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let reading = read(&state, &status.borrow());
                if trends.record(reading, Instant::now(), now_ms()) {
                    series = series_json(&trends);
                    series_version += 1;
                }
                let Some(out) = out.upgrade() else { return };
                out.send_replace(Arc::new(Figures {
                    at_ms: now_ms(),
                    now: trends.now(),
                    series: series.clone(),
                    series_version,
                }));
            }
            changed = status.changed(), if status_open => match changed {
                Ok(()) => take_canaries(&status.borrow_and_update(), &mut canaries_seen, Some(&mut trends)),
                // The failover driver stopped (shutdown): the figures still tick.
                Err(_) => status_open = false,
            },
        }
    }
}

/// Hands every canary round finished since the last look to `trends` (none on the first look:
/// it only notes where the rounds are).
fn take_canaries(
    status: &Status,
    seen: &mut Vec<Option<Instant>>,
    mut trends: Option<&mut Trends>,
) {
    for v in &status.vendors {
        if seen.len() <= v.index {
            seen.resize(v.index + 1, None);
        }
        let Some(canary) = &v.last_canary else {
            continue;
        };
        if seen[v.index] == Some(canary.at) {
            continue;
        }
        seen[v.index] = Some(canary.at);
        if let Some(trends) = trends.as_deref_mut() {
            let arrived = match canary.result {
                CanaryResult::Arrived { latency } => Some(latency.as_millis() as u64),
                CanaryResult::Lost { .. } => None,
            };
            trends.canary(&v.name, arrived);
        }
    }
}

/// The running totals, and each vendor's lanes and window, now.
fn read(state: &AppState, status: &Status) -> Reading {
    let lanes = state.failover.lanes();
    let vendors = status
        .vendors
        .iter()
        .map(|v| {
            let stats = lanes.get(v.index).map(|l| l.stats());
            let (queued, in_flight, delivered, dropped) = stats.map_or((0, 0, 0, 0), |s| {
                (
                    (s.realtime.queued + s.bulk.queued) as u64,
                    (s.realtime.in_flight + s.bulk.in_flight) as u64,
                    s.realtime.delivered + s.bulk.delivered,
                    s.realtime.dropped_total() + s.bulk.dropped_total(),
                )
            });
            let w = &v.window;
            VendorReading {
                name: v.name.clone(),
                queued,
                in_flight,
                delivered,
                dropped,
                error_rate: (w.requests > 0).then(|| w.failures as f64 / w.requests as f64),
            }
        })
        .collect();
    Reading {
        totals: totals::snapshot(),
        vendors,
    }
}
