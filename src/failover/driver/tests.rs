//! The whole failover pipeline (lanes, canaries, driver, heartbeat) against in-memory fake
//! vendors on a paused clock: detection bounds, recovery hysteresis, the ladder, operator
//! modes with expiry, and the self-path switch.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::failover::{CanaryConfig, CanaryFailure, Failover, FailoverConfig};
use crate::upstream::fake::{Behaviour, FakeVendor, Realtime};
use crate::upstream::{ErrorClass, OutboundEvent, Priority, Vendor, HEARTBEAT_CHANNEL};

const SEC: Duration = Duration::from_secs(1);

fn config() -> FailoverConfig {
    FailoverConfig {
        canary: Some(CanaryConfig {
            jitter: 0.0,
            ..CanaryConfig::default()
        }),
        ..FailoverConfig::default()
    }
}

fn start(vendors: &[Arc<FakeVendor>]) -> (Failover, CancellationToken) {
    let cancel = CancellationToken::new();
    let vendors: Vec<Arc<dyn Vendor>> = vendors
        .iter()
        .map(|v| v.clone() as Arc<dyn Vendor>)
        .collect();
    let failover = Failover::start(vendors, config(), &TaskTracker::new(), cancel.clone());
    (failover, cancel)
}

/// Waits (on the paused clock) until the route satisfies `pred`; fails after `within`.
async fn route_until(
    rx: &mut watch::Receiver<Route>,
    within: Duration,
    pred: impl Fn(&Route) -> bool,
) -> Route {
    let wait = async {
        loop {
            {
                let route = rx.borrow_and_update();
                if pred(&route) {
                    return route.clone();
                }
            }
            rx.changed().await.expect("driver stopped");
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .expect("the route did not change in time")
}

/// Publishes `rate` events per second to the failover until cancelled.
fn publisher(failover: Failover, rate: u32, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SEC / rate);
        let mut n = 0u64;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            n += 1;
            let frame = Bytes::from(format!(r#"{{"type":"event","seq":{n}}}"#));
            failover.enqueue(OutboundEvent::new(
                format!("ch-{}", n % 7),
                "e",
                n.to_string(),
                frame,
                Priority::Realtime,
            ));
        }
    });
}

#[tokio::test(start_paused = true)]
async fn a_hung_vendor_is_left_within_three_seconds_and_rejoined_after_the_hysteresis() {
    let vendor = FakeVendor::new("primary", 10, Realtime::Working);
    let (failover, cancel) = start(std::slice::from_ref(&vendor));
    publisher(failover.clone(), 100, cancel.clone());
    let mut rx = failover.watch_route();
    tokio::time::sleep(5 * SEC).await;
    assert_eq!(failover.route().path, Path::Vendor(0));

    vendor.set(Behaviour::Hang);
    let hung_at = Instant::now();
    let route = route_until(&mut rx, 10 * SEC, |r| r.path == Path::SelfHosted).await;
    assert!(
        route.since - hung_at <= 3 * SEC,
        "detected after {:?}",
        route.since - hung_at
    );
    assert_eq!(route.reason, RouteReason::NoHealthyVendor);
    assert_eq!(
        route.forward_to,
        Some(0),
        "events keep going to the vendor clients may still be on"
    );
    assert_eq!(route.jitter, SEC);
    // The hung vendor never holds more than its lanes' slots (plus the canary's one request).
    assert!(vendor.in_flight() <= 8 + 2 + 1);
    let stats = failover.lanes()[0].stats();
    assert!(stats.realtime.queued <= 1024);

    vendor.set(Behaviour::Deliver);
    let healed_at = Instant::now();
    let route = route_until(&mut rx, 30 * SEC, |r| r.path == Path::Vendor(0)).await;
    let back_after = route.since - healed_at;
    assert!(
        back_after >= 10 * SEC && back_after <= 15 * SEC,
        "back after {back_after:?}"
    );
    assert_eq!(
        route.jitter,
        30 * SEC,
        "clients move back over the jittered window"
    );
    let status = failover.watch_status().borrow().clone();
    let states: Vec<State> = status.vendors[0].transitions.iter().map(|t| t.to).collect();
    assert_eq!(states.first(), Some(&State::Degraded));
    assert_eq!(states.last(), Some(&State::Healthy));
    assert!(states.contains(&State::Recovering));
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_vendor_answering_500s_is_left_within_two_seconds() {
    let vendor = FakeVendor::new("primary", 10, Realtime::Working);
    let (failover, cancel) = start(std::slice::from_ref(&vendor));
    publisher(failover.clone(), 100, cancel.clone());
    let mut rx = failover.watch_route();
    tokio::time::sleep(3 * SEC).await;
    vendor.set(Behaviour::Fail(ErrorClass::Unavailable));
    let failing_at = Instant::now();
    let route = route_until(&mut rx, 10 * SEC, |r| r.path == Path::SelfHosted).await;
    assert!(
        route.since - failing_at <= 2 * SEC,
        "detected after {:?}",
        route.since - failing_at
    );
    let status = failover.watch_status().borrow().clone();
    let first = status.vendors[0]
        .transitions
        .front()
        .copied()
        .expect("a transition");
    assert_eq!((first.from, first.to), (State::Healthy, State::Degraded));
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn dropped_deliveries_are_caught_by_the_canary_alone() {
    let vendor = FakeVendor::new("primary", 10, Realtime::Working);
    let (failover, cancel) = start(std::slice::from_ref(&vendor));
    publisher(failover.clone(), 50, cancel.clone());
    let mut rx = failover.watch_route();
    tokio::time::sleep(3 * SEC).await;
    vendor.set(Behaviour::Swallow);
    route_until(&mut rx, 5 * SEC, |r| r.path == Path::SelfHosted).await;
    let status = failover.watch_status().borrow().clone();
    let v = &status.vendors[0];
    assert_eq!(v.window.failures, 0, "every REST request succeeded");
    let first = v.transitions.front().copied().expect("a transition");
    assert_eq!(
        first.reason,
        TransitionReason::LostCanaries {
            count: 1,
            last: CanaryFailure::NotDelivered
        }
    );
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_untrusted_certificate_takes_the_vendor_down_at_once_with_its_cause_in_status() {
    let vendor = FakeVendor::new("primary", 10, Realtime::Untrusted);
    let (failover, cancel) = start(std::slice::from_ref(&vendor));
    let mut rx = failover.watch_route();
    route_until(&mut rx, SEC, |r| r.path == Path::SelfHosted).await;
    let status = failover.watch_status().borrow().clone();
    let v = &status.vendors[0];
    assert_eq!(v.health.state, State::Down);
    let failure = CanaryFailure::Tls {
        problem: crate::upstream::tls::TlsProblem::UnknownIssuer,
    };
    assert_eq!(
        v.transitions.front().map(|t| t.reason),
        Some(TransitionReason::Fatal {
            signal: crate::failover::machine::FatalSignal::Canary { failure }
        })
    );
    let last = v.last_error.as_ref().expect("the cause is kept");
    assert_eq!(
        (last.source, last.kind, last.fatal),
        ("canary", "tls", true)
    );
    assert!(
        last.message
            .starts_with("TLS certificate not trusted (UnknownIssuer): set vendors.ca_file"),
        "{}",
        last.message
    );
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn the_secondary_vendor_takes_over_and_hands_back() {
    let primary = FakeVendor::new("primary", 10, Realtime::Working);
    let secondary = FakeVendor::new("secondary", 10, Realtime::Working);
    let (failover, cancel) = start(&[primary.clone(), secondary.clone()]);
    let mut rx = failover.watch_route();
    tokio::time::sleep(2 * SEC).await;
    primary.set(Behaviour::Hang);
    let route = route_until(&mut rx, 5 * SEC, |r| r.path == Path::Vendor(1)).await;
    assert_eq!(route.reason, RouteReason::VendorHealthy { index: 1 });
    assert_eq!(route.forward_to, Some(1));
    assert_eq!(route.vendor.as_ref().map(|v| v.host.as_str()), Some("fake"));
    let before = secondary
        .channels
        .lock()
        .iter()
        .filter(|c| c.starts_with("ch"))
        .count();
    failover.enqueue(OutboundEvent::new(
        "ch",
        "e",
        "x",
        Bytes::from_static(b"{}"),
        Priority::Realtime,
    ));
    tokio::time::sleep(SEC / 10).await;
    assert_eq!(
        secondary
            .channels
            .lock()
            .iter()
            .filter(|c| c.starts_with("ch"))
            .count(),
        before + 1
    );
    primary.set(Behaviour::Deliver);
    let route = route_until(&mut rx, 30 * SEC, |r| r.path == Path::Vendor(0)).await;
    assert_eq!(route.jitter, 30 * SEC);
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_forced_mode_expires_back_to_auto() {
    let vendor = FakeVendor::new("primary", 10, Realtime::Working);
    let (failover, cancel) = start(&[vendor]);
    let mut rx = failover.watch_route();
    let expires = Instant::now() + Duration::from_secs(2 * 3600);
    failover.set_mode(ModeSetting::forced(
        Mode::SelfHosted,
        "vendor maintenance",
        "ops",
        Some(expires),
    ));
    let route = route_until(&mut rx, SEC, |r| r.path == Path::SelfHosted).await;
    assert_eq!(
        (route.mode, route.reason),
        (
            Mode::SelfHosted,
            RouteReason::Forced {
                mode: Mode::SelfHosted
            }
        )
    );
    let route = route_until(&mut rx, Duration::from_secs(3 * 3600), |r| {
        r.mode == Mode::Auto
    })
    .await;
    assert_eq!(route.path, Path::Vendor(0));
    assert_eq!(route.since, expires);
    let status = failover.watch_status().borrow().clone();
    assert_eq!(
        (status.mode.mode, status.mode.set_by.as_str()),
        (Mode::Auto, "expiry")
    );
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn poll_when_no_vendor_and_no_self_path() {
    let vendor = FakeVendor::new("primary", 10, Realtime::Working);
    let (failover, cancel) = start(std::slice::from_ref(&vendor));
    let mut rx = failover.watch_route();
    failover.set_self_path(SelfPath::Unavailable);
    tokio::time::sleep(2 * SEC).await;
    assert_eq!(
        failover.route().path,
        Path::Vendor(0),
        "a healthy vendor needs no self path"
    );
    vendor.set(Behaviour::Hang);
    let route = route_until(&mut rx, 5 * SEC, |r| r.path == Path::Poll).await;
    assert_eq!(route.reason, RouteReason::SelfUnavailable);
    failover.set_self_path(SelfPath::Available);
    route_until(&mut rx, SEC, |r| r.path == Path::SelfHosted).await;
    failover.set_mode(ModeSetting::forced(Mode::Poll, "drill", "ops", None));
    route_until(&mut rx, SEC, |r| {
        r.path == Path::Poll && r.mode == Mode::Poll
    })
    .await;
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn the_heartbeat_goes_out_only_while_the_route_is_the_vendor() {
    let vendor = FakeVendor::new("primary", 10, Realtime::Working);
    let (failover, cancel) = start(std::slice::from_ref(&vendor));
    let heartbeats = || {
        vendor
            .channels
            .lock()
            .iter()
            .filter(|c| *c == HEARTBEAT_CHANNEL)
            .count()
    };
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    assert_eq!(heartbeats(), 3, "at 0 s, 5 s and 10 s");
    failover.set_mode(ModeSetting::forced(Mode::SelfHosted, "test", "ops", None));
    tokio::time::sleep(20 * SEC).await;
    assert_eq!(heartbeats(), 3);
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn without_vendors_the_route_is_self_and_enqueue_is_a_no_op() {
    let (failover, cancel) = start(&[]);
    assert_eq!(failover.route().path, Path::SelfHosted);
    assert_eq!(failover.route().reason, RouteReason::NoVendor);
    assert!(failover.enqueue(OutboundEvent::heartbeat(1, "h")).is_none());
    cancel.cancel();
}
