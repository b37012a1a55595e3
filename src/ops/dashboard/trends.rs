//! Rates from readings: the sampler hands over a [`Reading`] of running totals every second and
//! the canary rounds it saw finish; this turns them into the live figures ([`Now`], rates over the
//! last few seconds) and, every [`STEP`], a point of the 15-minute [`Series`]. Plain data, tested
//! with made-up instants.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::series::{round2, Point, Series, VendorPoint, MAX_VENDORS, STEP};
use crate::ops::metrics::totals::TotalsSnapshot;
use crate::ops::metrics::Transport;

/// Live rates are averaged over this long.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(5);
/// A point is taken when a step has nearly passed (ticks may wake a little early or late).
const STEP_SLACK: Duration = Duration::from_millis(250);

/// What the sampler reads each second.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Reading {
    pub totals: TotalsSnapshot,
    /// In configuration order.
    pub vendors: Vec<VendorReading>,
}

/// One vendor's lanes and passive window, read now.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct VendorReading {
    pub name: String,
    /// Realtime and bulk.
    pub queued: u64,
    pub in_flight: u64,
    /// Events the vendor's API accepted, since start.
    pub delivered: u64,
    /// Events the lanes dropped, since start.
    pub dropped: u64,
    /// Failed share of the passive window's requests (`None`: no requests in the window).
    pub error_rate: Option<f64>,
}

/// Canary rounds of one vendor seen during the current step.
#[derive(Clone, Debug, Default)]
struct CanaryBucket {
    slowest_ms: Option<u64>,
    lost: u32,
}

/// The live figures, as the dashboard shows them next to the charts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Now {
    /// The rates below are averaged over this many milliseconds.
    pub window_ms: u64,
    pub published_per_s: f64,
    pub delivered_per_s: ByPath<f64>,
    pub connections: ByPath<i64>,
    pub slow_consumer_closes: Count,
    pub resets: Count,
    pub vendors: Vec<VendorNow>,
}

/// A figure by delivery path. `vendor` is absent for connections (the vendor holds those).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct ByPath<T> {
    pub ws: T,
    pub sse: T,
    pub poll: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<T>,
}

/// A counter: since start, and over the last 15 minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Count {
    pub total: u64,
    pub last_15m: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct VendorNow {
    pub name: String,
    pub queued: u64,
    pub in_flight: u64,
    pub dropped: u64,
    pub delivered_per_s: f64,
    pub error_rate: Option<f64>,
}

/// Readings of the last [`RATE_WINDOW`], the canary buckets of the current step, and the series.
#[derive(Debug, Default)]
pub(crate) struct Trends {
    recent: VecDeque<(Instant, Reading)>,
    /// The reading the last point was computed from (its deltas start there).
    last_point: Option<(Instant, Reading)>,
    canaries: Vec<(String, CanaryBucket)>,
    series: Series,
}

impl Trends {
    /// A canary round of `vendor` finished: `Some(ms)` arrived after that long, `None` was lost.
    pub(crate) fn canary(&mut self, vendor: &str, arrived_ms: Option<u64>) {
        let index = match self.canaries.iter().position(|(n, _)| n == vendor) {
            Some(i) => i,
            None if self.canaries.len() < MAX_VENDORS => {
                self.canaries
                    .push((vendor.to_string(), CanaryBucket::default()));
                self.canaries.len() - 1
            }
            None => return,
        };
        let bucket = &mut self.canaries[index].1;
        match arrived_ms {
            Some(ms) => bucket.slowest_ms = Some(bucket.slowest_ms.map_or(ms, |s| s.max(ms))),
            None => bucket.lost += 1,
        }
    }

    /// Takes the reading of `now` (`at_ms`: the same moment on the wall clock). Returns whether a
    /// point was added to the series.
    pub(crate) fn record(&mut self, reading: Reading, now: Instant, at_ms: u64) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
        self.recent.push_back((now, reading.clone()));
        let Some((since, _)) = &self.last_point else {
            self.last_point = Some((now, reading));
            return false;
        };
        let elapsed = now.saturating_duration_since(*since);
        if elapsed + STEP_SLACK < STEP {
            return false;
        }
        let base = self.last_point.take().map(|(_, r)| r).unwrap_or_default();
        let point = self.point(&base, &reading, elapsed, at_ms);
        self.series.push(point);
        self.last_point = Some((now, reading));
        true
    }

    fn point(&mut self, base: &Reading, now: &Reading, elapsed: Duration, at_ms: u64) -> Point {
        let d = Delta::new(base, now, elapsed);
        let vendors = now
            .vendors
            .iter()
            .map(|v| {
                let bucket = self
                    .canaries
                    .iter_mut()
                    .find(|(n, _)| *n == v.name)
                    .map(|(_, b)| std::mem::take(b))
                    .unwrap_or_default();
                let point = VendorPoint {
                    canary_ms: bucket.slowest_ms,
                    canary_lost: bucket.lost,
                    error_rate: v.error_rate,
                    queued: v.queued,
                    dropped: d.vendor(v, |r| r.dropped),
                };
                (v.name.clone(), point)
            })
            .collect();
        let t = &now.totals;
        Point {
            at_ms,
            published: d.rate(d.count(|r| r.totals.published)),
            delivered: [
                d.rate(d.transport(|t| &t.delivered, Transport::Ws)),
                d.rate(d.transport(|t| &t.delivered, Transport::Sse)),
                d.rate(d.transport(|t| &t.delivered, Transport::Poll)),
                d.rate(d.vendors(|r| r.delivered)),
            ],
            connections: [
                t.connections[Transport::Ws.index()],
                t.connections[Transport::Sse.index()],
            ],
            slow_consumer_closes: Transport::ALL
                .iter()
                .map(|tr| d.transport(|t| &t.slow_consumer, *tr))
                .sum(),
            resets: Transport::ALL
                .iter()
                .map(|tr| d.transport(|t| &t.resets, *tr))
                .sum(),
            vendors,
        }
    }

    /// The live figures: rates over the readings of the last [`RATE_WINDOW`].
    pub(crate) fn now(&self) -> Now {
        let (Some((first_at, first)), Some((last_at, last))) =
            (self.recent.front(), self.recent.back())
        else {
            return Now::default();
        };
        let elapsed = last_at.saturating_duration_since(*first_at);
        let d = Delta::new(first, last, elapsed);
        let by_transport = |f: fn(&TotalsSnapshot) -> &[u64; 3]| ByPath {
            ws: round2(d.rate(d.transport(f, Transport::Ws))),
            sse: round2(d.rate(d.transport(f, Transport::Sse))),
            poll: round2(d.rate(d.transport(f, Transport::Poll))),
            vendor: None,
        };
        let t = &last.totals;
        let (slow_15m, resets_15m) = self.series.recent_counts();
        Now {
            window_ms: elapsed.as_millis() as u64,
            published_per_s: round2(d.rate(d.count(|r| r.totals.published))),
            delivered_per_s: ByPath {
                vendor: Some(round2(d.rate(d.vendors(|r| r.delivered)))),
                ..by_transport(|t| &t.delivered)
            },
            connections: ByPath {
                ws: t.connections[Transport::Ws.index()],
                sse: t.connections[Transport::Sse.index()],
                poll: 0,
                vendor: None,
            },
            slow_consumer_closes: Count {
                total: t.slow_consumer.iter().sum(),
                last_15m: slow_15m,
            },
            resets: Count {
                total: t.resets.iter().sum(),
                last_15m: resets_15m,
            },
            vendors: last
                .vendors
                .iter()
                .map(|v| VendorNow {
                    name: v.name.clone(),
                    queued: v.queued,
                    in_flight: v.in_flight,
                    dropped: v.dropped,
                    delivered_per_s: round2(d.rate(d.vendor(v, |r| r.delivered))),
                    error_rate: v.error_rate.map(round2),
                })
                .collect(),
        }
    }

    pub(crate) fn series(&self) -> &Series {
        &self.series
    }
}

/// Differences between two readings `elapsed` apart. Totals never shrink, but a vendor may
/// appear or go away with a config reload: missing is zero and differences saturate.
struct Delta<'a> {
    base: &'a Reading,
    now: &'a Reading,
    secs: f64,
}

impl<'a> Delta<'a> {
    fn new(base: &'a Reading, now: &'a Reading, elapsed: Duration) -> Self {
        Self {
            base,
            now,
            secs: elapsed.as_secs_f64(),
        }
    }

    fn rate(&self, n: u64) -> f64 {
        if self.secs > 0.0 {
            n as f64 / self.secs
        } else {
            0.0
        }
    }

    fn count(&self, f: impl Fn(&Reading) -> u64) -> u64 {
        f(self.now).saturating_sub(f(self.base))
    }

    fn transport(&self, f: impl Fn(&TotalsSnapshot) -> &[u64; 3], t: Transport) -> u64 {
        f(&self.now.totals)[t.index()].saturating_sub(f(&self.base.totals)[t.index()])
    }

    fn vendor(&self, v: &VendorReading, f: impl Fn(&VendorReading) -> u64) -> u64 {
        let before = self.base.vendors.iter().find(|b| b.name == v.name);
        f(v).saturating_sub(before.map_or(0, &f))
    }

    fn vendors(&self, f: impl Fn(&VendorReading) -> u64 + Copy) -> u64 {
        self.now.vendors.iter().map(|v| self.vendor(v, f)).sum()
    }
}

#[cfg(test)]
mod tests;
