//! Lane tests against the in-memory fake vendor, on a paused clock: bounds under a hung
//! vendor, isolation of the priorities, deadlines, one retry under the budget, batching,
//! per-channel order, expiry, shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::upstream::fake::{Behaviour, FakeVendor, Realtime};
use crate::upstream::observation::{Observation, RequestObservation};
use crate::upstream::{ErrorClass, OutboundEvent, Priority};

fn ev(channel: &str, id: &str, priority: Priority) -> OutboundEvent {
    OutboundEvent::new(channel, "n", id, Bytes::from_static(b"{}"), priority)
}

fn start(
    vendor: Arc<FakeVendor>,
    config: LaneConfig,
    budget: RetryBudgetConfig,
) -> (Lanes, mpsc::Receiver<Observation>, CancellationToken) {
    let (tx, rx) = mpsc::channel(1024);
    let cancel = CancellationToken::new();
    let lanes = Lanes::start(
        0,
        vendor,
        config,
        Arc::new(RetryBudget::new(budget)),
        tx,
        &TaskTracker::new(),
        cancel.clone(),
    );
    (lanes, rx, cancel)
}

/// Lets every task run until it waits on time or I/O (the clock is paused: nothing advances).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

async fn request(rx: &mut mpsc::Receiver<Observation>) -> RequestObservation {
    match rx.recv().await {
        Some(Observation::Request(r)) => r,
        other => panic!("expected a request observation, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_vendor_holds_only_its_lanes_slots_and_the_queue_stays_bounded() {
    let fake = FakeVendor::new("v", 1, Realtime::None);
    fake.hang_channels_starting_with("hang");
    let config = LaneConfig {
        realtime_queue: 4,
        bulk_queue: 4,
        realtime_in_flight: 2,
        bulk_in_flight: 1,
        ..LaneConfig::default()
    };
    let (lanes, _obs, _cancel) = start(fake.clone(), config, RetryBudgetConfig::default());

    let started = Instant::now();
    for i in 0..100 {
        assert!(matches!(
            lanes.enqueue(ev(&format!("hang-{i}"), &i.to_string(), Priority::Realtime)),
            Enqueued::Queued { .. }
        ));
        settle().await;
    }
    assert_eq!(Instant::now(), started, "enqueue never waits");
    assert_eq!(fake.in_flight(), 2);
    let stats = lanes.stats();
    assert_eq!(
        (
            stats.realtime.in_flight,
            stats.realtime.queued,
            stats.realtime.enqueued
        ),
        (2, 4, 100)
    );
    assert_eq!(
        stats.realtime.dropped.get(&DropReason::QueueFull),
        Some(&94)
    );

    // The bulk lane has its own slot: its events go through while realtime is stuck.
    for i in 0..3 {
        lanes.enqueue(ev(&format!("ok-{i}"), &format!("b{i}"), Priority::Bulk));
    }
    settle().await;
    let stats = lanes.stats();
    assert_eq!(stats.bulk.delivered, 3);
    assert_eq!(stats.realtime.in_flight, 2);
    assert_eq!(
        fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn a_time_out_is_reported_and_retried_once() {
    let fake = FakeVendor::new("v", 1, Realtime::None);
    fake.set(Behaviour::Hang);
    let (lanes, mut obs, _cancel) = start(
        fake.clone(),
        LaneConfig::default(),
        RetryBudgetConfig::default(),
    );
    let started = Instant::now();
    lanes.enqueue(ev("a", "1", Priority::Realtime));

    let first = request(&mut obs).await;
    assert_eq!(
        (first.attempt, first.result, first.latency),
        (0, Err(ErrorClass::Timeout), Duration::from_secs(2))
    );
    assert_eq!(first.at - started, Duration::from_secs(2));
    let second = request(&mut obs).await;
    assert_eq!(
        (second.attempt, second.result),
        (1, Err(ErrorClass::Timeout))
    );
    assert_eq!(second.at - started, Duration::from_millis(4050));
    settle().await;
    let stats = lanes.stats();
    assert_eq!(
        (fake.publishes(), stats.retries, stats.realtime.failed),
        (2, 1, 1)
    );
    assert_eq!(stats.failed_by_class.get(&ErrorClass::Timeout), Some(&1));
    assert_eq!(stats.realtime.in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_when_the_budget_is_spent() {
    let fake = FakeVendor::new("v", 1, Realtime::None);
    fake.set(Behaviour::Fail(ErrorClass::Unavailable));
    // One slot, so the order of deposits and withdrawals is fixed.
    let config = LaneConfig {
        realtime_in_flight: 1,
        ..LaneConfig::default()
    };
    let (lanes, _obs, _cancel) = start(
        fake.clone(),
        config,
        RetryBudgetConfig {
            ratio: 0.1,
            burst: 1,
        },
    );
    for i in 0..20 {
        lanes.enqueue(ev(&format!("c{i}"), &i.to_string(), Priority::Realtime));
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    // The burst pays for the first retry; the next one needs ten more first attempts.
    let stats = lanes.stats();
    assert_eq!(
        (fake.publishes(), stats.retries, stats.retries_denied),
        (22, 2, 18)
    );
    assert_eq!(stats.realtime.failed, 20);
    assert!(stats.retries as f64 <= 1.0 + 0.1 * 20.0);
}

#[tokio::test(start_paused = true)]
async fn errors_that_forbid_a_retry_are_not_retried() {
    for class in [
        ErrorClass::Config,
        ErrorClass::Request,
        ErrorClass::Protocol,
    ] {
        let fake = FakeVendor::new("v", 1, Realtime::None);
        fake.set(Behaviour::Fail(class));
        let (lanes, mut obs, _cancel) = start(
            fake.clone(),
            LaneConfig::default(),
            RetryBudgetConfig::default(),
        );
        lanes.enqueue(ev("a", "1", Priority::Realtime));
        assert_eq!(request(&mut obs).await.result, Err(class));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let stats = lanes.stats();
        assert_eq!(
            (fake.publishes(), stats.retries, stats.retries_denied),
            (1, 0, 0),
            "{class}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn batches_follow_the_vendor_limit() {
    let fake = FakeVendor::new("v", 10, Realtime::None);
    let config = LaneConfig {
        realtime_in_flight: 1,
        ..LaneConfig::default()
    };
    let (lanes, _obs, _cancel) = start(fake.clone(), config, RetryBudgetConfig::default());
    for i in 0..25 {
        lanes.enqueue(ev(&format!("c{i}"), &i.to_string(), Priority::Realtime));
    }
    settle().await;
    let sizes: Vec<usize> = fake.calls.lock().iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(lanes.stats().realtime.delivered, 25);
}

#[tokio::test(start_paused = true)]
async fn one_channel_is_delivered_in_order_one_request_at_a_time() {
    let fake = FakeVendor::new("v", 1, Realtime::None);
    fake.set(Behaviour::Slow(Duration::from_millis(10)));
    let (lanes, _obs, _cancel) = start(
        fake.clone(),
        LaneConfig::default(),
        RetryBudgetConfig::default(),
    );
    for i in 1..=5 {
        lanes.enqueue(ev("a", &i.to_string(), Priority::Realtime));
    }
    lanes.enqueue(ev("b", "b1", Priority::Realtime));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls = fake.calls.lock().clone();
    let a: Vec<&str> = calls
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|id| !id.starts_with('b'))
        .collect();
    assert_eq!(a, ["1", "2", "3", "4", "5"]);
    // `b` did not wait for `a`: it went out with the first request.
    assert_eq!(calls[1], ["b1"]);
    assert_eq!(
        fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn events_that_waited_too_long_expire() {
    let fake = FakeVendor::new("v", 1, Realtime::None);
    fake.hang_channels_starting_with("hang");
    let config = LaneConfig {
        realtime_in_flight: 1,
        max_age: Duration::from_secs(1),
        ..LaneConfig::default()
    };
    let (lanes, _obs, _cancel) = start(fake.clone(), config, RetryBudgetConfig::default());
    lanes.enqueue(ev("hang", "h", Priority::Realtime));
    settle().await;
    for i in 0..3 {
        lanes.enqueue(ev("x", &i.to_string(), Priority::Realtime));
    }
    // The slot frees after the time-out, the retry and its time-out (about 4 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = lanes.stats();
    assert_eq!(stats.realtime.dropped.get(&DropReason::Expired), Some(&3));
    assert_eq!((stats.realtime.queued, stats.queued_bytes), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn after_shutdown_events_are_refused_and_queues_emptied() {
    let fake = FakeVendor::new("v", 1, Realtime::None);
    fake.set(Behaviour::Hang);
    let config = LaneConfig {
        realtime_in_flight: 1,
        ..LaneConfig::default()
    };
    let (lanes, _obs, cancel) = start(fake.clone(), config, RetryBudgetConfig::default());
    for i in 0..3 {
        lanes.enqueue(ev(&format!("c{i}"), &i.to_string(), Priority::Realtime));
    }
    settle().await;
    cancel.cancel();
    settle().await;
    assert_eq!(
        lanes.enqueue(ev("c", "late", Priority::Realtime)),
        Enqueued::Dropped(DropReason::Closed)
    );
    let stats = lanes.stats();
    assert_eq!(stats.realtime.queued, 0);
    assert_eq!(stats.realtime.dropped.get(&DropReason::Closed), Some(&3));
}

#[tokio::test(start_paused = true)]
async fn one_tenants_flood_sheds_its_own_events_and_is_counted_by_tenant() {
    let fake = FakeVendor::new("v", 1, Realtime::None);
    fake.hang_channels_starting_with("hang");
    let config = LaneConfig {
        realtime_queue: 4,
        realtime_in_flight: 1,
        ..LaneConfig::default()
    };
    let (lanes, _obs, _cancel) = start(fake.clone(), config, RetryBudgetConfig::default());
    let of = |tenant: &str, channel: String, id: String| {
        ev(&channel, &id, Priority::Realtime).for_tenant(crate::tenant::id::TenantId::new(tenant))
    };
    // A's first event holds the only slot (the vendor hangs); four more fill the queue.
    for i in 0..5 {
        lanes.enqueue(of("a", format!("hang-a{i}"), format!("a{i}")));
        settle().await;
    }
    assert_eq!(
        lanes.enqueue(of("b", "b".into(), "b0".into())),
        Enqueued::Queued { shed: 1 }
    );
    for i in 5..105 {
        lanes.enqueue(of("a", format!("hang-a{i}"), format!("a{i}")));
    }
    let stats = lanes.stats();
    assert_eq!((stats.realtime.queued, stats.realtime.in_flight), (4, 1));
    let tenant = |queued, enqueued, dropped| TenantLaneStats {
        queued,
        enqueued,
        delivered: 0,
        dropped,
    };
    assert_eq!(
        stats.tenants,
        [
            ("a".to_owned(), tenant(3, 105, 101)),
            ("b".to_owned(), tenant(1, 1, 0))
        ]
        .into()
    );
    assert_eq!(
        stats.realtime.dropped.get(&DropReason::QueueFull),
        Some(&101)
    );
}

#[tokio::test(start_paused = true)]
async fn a_steady_tenant_waits_only_for_its_own_previous_request_behind_a_flood() {
    let fake = FakeVendor::new("v", 10, Realtime::None);
    fake.set(Behaviour::Slow(Duration::from_millis(100)));
    let config = LaneConfig {
        realtime_in_flight: 4,
        ..LaneConfig::default()
    };
    let (lanes, _obs, _cancel) = start(fake.clone(), config, RetryBudgetConfig::default());
    let of = |tenant: &str, channel: String, id: String| {
        ev(&channel, &id, Priority::Realtime).for_tenant(crate::tenant::id::TenantId::new(tenant))
    };
    for i in 0..1000 {
        lanes.enqueue(of("a", format!("a.{}", i % 64), format!("a{i}")));
    }
    // When each of B's events went out, from the vendor's call log, sampled every millisecond.
    let sent: Arc<parking_lot::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let watcher = {
        let (fake, sent) = (fake.clone(), sent.clone());
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let calls = fake.calls.lock().clone();
                for call in &calls[seen..] {
                    for id in call.iter().filter(|id| id.starts_with('b')) {
                        sent.lock().insert(id.clone(), Instant::now());
                    }
                }
                seen = calls.len();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut queued_at = Vec::new();
    let mut n = 1000;
    for i in 0..50 {
        for _ in 0..100 {
            n += 1;
            lanes.enqueue(of("a", format!("a.{}", n % 64), format!("a{n}")));
        }
        lanes.enqueue(of("b", "b".into(), format!("b{i}")));
        queued_at.push((format!("b{i}"), Instant::now()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    watcher.abort();
    let sent = sent.lock();
    let waits: Vec<Duration> = queued_at.iter().map(|(id, at)| sent[id] - *at).collect();
    let worst = waits.iter().max().copied().unwrap_or_default();
    assert!(worst <= Duration::from_millis(102), "{waits:?}");
}
