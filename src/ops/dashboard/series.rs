//! The dashboard's last 15 minutes: one ring per charted figure, one point per [`STEP`], at most
//! [`POINTS`] points each and at most [`MAX_VENDORS`] vendors. Keys are fixed names (transports,
//! configured vendors), never channel names. Plain data: [`super::trends`] fills it.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// One point every 5 s...
pub(crate) const STEP: Duration = Duration::from_secs(5);
/// ...for 15 minutes.
pub(crate) const POINTS: usize = 180;
/// Vendors charted (configured vendors beyond this are listed in status, not charted).
pub(crate) const MAX_VENDORS: usize = 8;

/// The newest [`POINTS`] values, oldest first. Serialised as a JSON array.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ring<T>(VecDeque<T>);

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Self(VecDeque::with_capacity(POINTS))
    }
}

impl<T: Clone> Ring<T> {
    /// A ring of `len` copies of `value` (a vendor first seen after others were charted).
    fn filled(value: T, len: usize) -> Self {
        let mut ring = Self::default();
        for _ in 0..len.min(POINTS) {
            ring.push(value.clone());
        }
        ring
    }
}

impl<T> Ring<T> {
    pub(crate) fn push(&mut self, value: T) {
        if self.0.len() == POINTS {
            self.0.pop_front();
        }
        self.0.push_back(value);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}

impl<T: Serialize> Serialize for Ring<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

/// A rate or ratio rounded to two decimals, so the JSON stays small.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Events per second delivered, by path.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct DeliveredSeries {
    pub ws: Ring<f64>,
    pub sse: Ring<f64>,
    pub poll: Ring<f64>,
    /// Accepted by the vendors' APIs (all vendors).
    pub vendor: Ring<f64>,
}

/// Open connections at each point.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct ConnectionSeries {
    pub ws: Ring<i64>,
    pub sse: Ring<i64>,
}

/// One vendor's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct VendorSeries {
    pub name: String,
    /// Slowest canary that arrived during the step, in ms (`null`: none arrived).
    pub canary_ms: Ring<Option<u64>>,
    /// Canary rounds lost during the step.
    pub canary_lost: Ring<u32>,
    /// Failed share of the passive window's requests at the point (`null`: no requests).
    pub error_rate: Ring<Option<f64>>,
    /// Events queued in its lanes at the point.
    pub queued: Ring<u64>,
    /// Events its lanes dropped during the step.
    pub dropped: Ring<u64>,
}

impl VendorSeries {
    fn new(name: &str, len: usize) -> Self {
        Self {
            name: name.to_string(),
            canary_ms: Ring::filled(None, len),
            canary_lost: Ring::filled(0, len),
            error_rate: Ring::filled(None, len),
            queued: Ring::filled(0, len),
            dropped: Ring::filled(0, len),
        }
    }
}

/// What one vendor contributes to a point.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct VendorPoint {
    pub canary_ms: Option<u64>,
    pub canary_lost: u32,
    pub error_rate: Option<f64>,
    pub queued: u64,
    pub dropped: u64,
}

/// One point of every series.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Point {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub published: f64,
    /// ws, sse, poll, vendor.
    pub delivered: [f64; 4],
    /// ws, sse.
    pub connections: [i64; 2],
    pub slow_consumer_closes: u64,
    pub resets: u64,
    /// By vendor name, in configuration order.
    pub vendors: Vec<(String, VendorPoint)>,
}

/// Every series, sharing one time axis.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Series {
    pub step_ms: u64,
    /// When each point was taken, in ms since the Unix epoch.
    pub t: Ring<u64>,
    /// Publishes accepted per second.
    pub published: Ring<f64>,
    pub delivered: DeliveredSeries,
    pub connections: ConnectionSeries,
    /// Slow subscribers closed during each step (all transports).
    pub slow_consumer_closes: Ring<u64>,
    /// Resets sent during each step (all transports).
    pub resets: Ring<u64>,
    pub vendors: Vec<VendorSeries>,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            step_ms: STEP.as_millis() as u64,
            t: Ring::default(),
            published: Ring::default(),
            delivered: DeliveredSeries::default(),
            connections: ConnectionSeries::default(),
            slow_consumer_closes: Ring::default(),
            resets: Ring::default(),
            vendors: Vec::new(),
        }
    }
}

impl Series {
    pub(crate) fn push(&mut self, p: Point) {
        let before = self.t.len();
        self.t.push(p.at_ms);
        self.published.push(round2(p.published));
        let [ws, sse, poll, vendor] = p.delivered.map(round2);
        self.delivered.ws.push(ws);
        self.delivered.sse.push(sse);
        self.delivered.poll.push(poll);
        self.delivered.vendor.push(vendor);
        self.connections.ws.push(p.connections[0]);
        self.connections.sse.push(p.connections[1]);
        self.slow_consumer_closes.push(p.slow_consumer_closes);
        self.resets.push(p.resets);
        for (name, _) in &p.vendors {
            if self.vendors.len() < MAX_VENDORS && !self.vendors.iter().any(|v| &v.name == name) {
                self.vendors.push(VendorSeries::new(name, before));
            }
        }
        for v in &mut self.vendors {
            let point = p
                .vendors
                .iter()
                .find(|(name, _)| *name == v.name)
                .map(|(_, point)| point.clone())
                .unwrap_or_default();
            v.canary_ms.push(point.canary_ms);
            v.canary_lost.push(point.canary_lost);
            v.error_rate.push(point.error_rate.map(round2));
            v.queued.push(point.queued);
            v.dropped.push(point.dropped);
        }
    }

    /// Slow-consumer closes and resets over the whole ring (the last 15 minutes).
    pub(crate) fn recent_counts(&self) -> (u64, u64) {
        (
            self.slow_consumer_closes.iter().sum(),
            self.resets.iter().sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: u64, vendors: &[&str]) -> Point {
        Point {
            at_ms,
            published: 1.0 / 3.0,
            vendors: vendors
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        VendorPoint {
                            canary_ms: Some(40),
                            ..VendorPoint::default()
                        },
                    )
                })
                .collect(),
            ..Point::default()
        }
    }

    #[test]
    fn rings_keep_the_last_15_minutes() {
        let mut s = Series::default();
        for i in 0..(POINTS as u64 + 20) {
            s.push(point(i * 5000, &["pusher"]));
        }
        assert_eq!(s.t.len(), POINTS);
        assert_eq!(s.t.iter().next(), Some(&(20 * 5000)));
        assert_eq!(s.vendors[0].canary_ms.len(), POINTS);
        assert_eq!(s.published.iter().next(), Some(&0.33));
    }

    #[test]
    fn a_vendor_seen_late_is_padded_and_vendors_are_bounded() {
        let mut s = Series::default();
        s.push(point(0, &["a"]));
        s.push(point(5000, &["a", "b"]));
        assert_eq!(
            s.vendors[1].canary_ms.iter().collect::<Vec<_>>(),
            [&None, &Some(40)]
        );
        // A vendor absent from a point gets an empty value, so every ring keeps the same length.
        s.push(point(10_000, &["b"]));
        assert_eq!(s.vendors[0].canary_ms.len(), 3);
        assert_eq!(s.vendors[0].canary_ms.iter().last(), Some(&None));
        let many: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        s.push(point(15_000, &names));
        assert_eq!(s.vendors.len(), MAX_VENDORS);
    }

    #[test]
    fn serialises_as_arrays_with_nulls() {
        let mut s = Series::default();
        s.push(point(0, &["a"]));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["step_ms"], 5000);
        assert_eq!(v["t"], serde_json::json!([0]));
        assert_eq!(v["vendors"][0]["error_rate"], serde_json::json!([null]));
        assert_eq!(v["delivered"]["ws"], serde_json::json!([0.0]));
    }
}
