use super::*;
use crate::ops::dashboard::series::Ring;

const WS: usize = Transport::Ws.index();
const SSE: usize = Transport::Sse.index();
const POLL: usize = Transport::Poll.index();

/// A reading after `s` seconds of steady traffic: 10 publishes/s, 20 WebSocket deliveries/s,
/// 4 SSE deliveries/s, 1 poll delivery/s, 8 vendor deliveries/s; one slow close and one reset
/// every 5 s; the vendor drops 2 events every 5 s.
fn reading(s: u64) -> Reading {
    let mut totals = TotalsSnapshot {
        published: 10 * s,
        ..TotalsSnapshot::default()
    };
    totals.delivered[WS] = 20 * s;
    totals.delivered[SSE] = 4 * s;
    totals.delivered[POLL] = s;
    totals.connections[WS] = 7;
    totals.connections[SSE] = 3;
    totals.slow_consumer[SSE] = s / 5;
    totals.resets[POLL] = s / 5;
    Reading {
        totals,
        vendors: vec![VendorReading {
            name: "pusher".into(),
            queued: 12,
            in_flight: 2,
            delivered: 8 * s,
            dropped: 2 * (s / 5),
            error_rate: Some(0.25),
        }],
    }
}

fn values<T: Copy>(ring: &Ring<T>) -> Vec<T> {
    ring.iter().copied().collect()
}

fn at(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

#[test]
fn live_rates_are_averaged_over_the_last_seconds() {
    let t0 = Instant::now();
    let mut trends = Trends::default();
    assert_eq!(trends.now(), Now::default());
    for s in 0..=12 {
        trends.record(reading(s), at(t0, s), s * 1000);
    }
    let now = trends.now();
    assert_eq!(now.window_ms, 5000);
    assert_eq!(now.published_per_s, 10.0);
    assert_eq!(
        now.delivered_per_s,
        ByPath {
            ws: 20.0,
            sse: 4.0,
            poll: 1.0,
            vendor: Some(8.0)
        }
    );
    assert_eq!((now.connections.ws, now.connections.sse), (7, 3));
    assert_eq!(now.slow_consumer_closes.total, 2);
    assert_eq!(now.resets.total, 2);
    assert_eq!(now.vendors[0].queued, 12);
    assert_eq!(now.vendors[0].delivered_per_s, 8.0);
    assert_eq!(now.vendors[0].error_rate, Some(0.25));
}

#[test]
fn a_point_every_step_with_the_differences_since_the_last() {
    let t0 = Instant::now();
    let mut trends = Trends::default();
    let mut added = Vec::new();
    for s in 0..=15 {
        if s == 7 {
            trends.canary("pusher", Some(40));
            trends.canary("pusher", Some(95));
            trends.canary("pusher", None);
        }
        if trends.record(reading(s), at(t0, s), s * 1000) {
            added.push(s);
        }
    }
    // The first reading is the baseline; then one point per 5 s.
    assert_eq!(added, [5, 10, 15]);
    let series = trends.series();
    assert_eq!(values(&series.t), [5000, 10_000, 15_000]);
    assert_eq!(values(&series.published), [10.0; 3]);
    assert_eq!(values(&series.delivered.ws), [20.0; 3]);
    assert_eq!(values(&series.delivered.vendor), [8.0; 3]);
    assert_eq!(values(&series.slow_consumer_closes), [1; 3]);
    assert_eq!(values(&series.resets), [1; 3]);
    let v = &series.vendors[0];
    assert_eq!(v.name, "pusher");
    // The canaries of the second step land in the second point, and only there.
    assert_eq!(values(&v.canary_ms), [None, Some(95), None]);
    assert_eq!(values(&v.canary_lost), [0, 1, 0]);
    assert_eq!(values(&v.dropped), [2; 3]);
    assert_eq!(values(&v.error_rate), [Some(0.25); 3]);
    assert_eq!(trends.now().slow_consumer_closes.last_15m, 3);
}

#[test]
fn a_stalled_sampler_averages_over_the_time_that_really_passed() {
    let t0 = Instant::now();
    let mut trends = Trends::default();
    trends.record(reading(0), t0, 0);
    assert!(!trends.record(reading(3), at(t0, 3), 3000));
    assert!(trends.record(reading(20), at(t0, 20), 20_000));
    assert_eq!(values(&trends.series().published), [10.0]);
    assert_eq!(values(&trends.series().slow_consumer_closes), [4]);
}

#[test]
fn a_vendor_that_appears_or_goes_away_counts_from_zero() {
    let t0 = Instant::now();
    let mut trends = Trends::default();
    let mut bare = reading(0);
    bare.vendors.clear();
    trends.record(bare, t0, 0);
    assert!(trends.record(reading(5), at(t0, 5), 5000));
    assert_eq!(values(&trends.series().vendors[0].dropped), [2]);
    let mut gone = reading(10);
    gone.vendors.clear();
    assert!(trends.record(gone, at(t0, 10), 10_000));
    assert_eq!(values(&trends.series().vendors[0].queued), [12, 0]);
}
