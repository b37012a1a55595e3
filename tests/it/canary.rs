//! The canary and the whole failover pipeline against the real server over TLS: healthy
//! vendors, a SIGSTOPped vendor (behind its TLS terminator), a vendor that accepts but never
//! delivers, refused credentials.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use understudy::failover::{
    canary, CanaryConfig, CanaryFailure, CanaryResult, Failover, FailoverConfig, Observation, Path,
    Route, Thresholds,
};
use understudy::upstream::{OutboundEvent, Priority, Vendor, VendorConfig};

use crate::support::fault_proxy::{Fault, FaultProxy};
use crate::support::sockudo::Sockudo;
use crate::vendor_ably::ably;
use crate::vendor_pusher::pusher;

fn config() -> CanaryConfig {
    CanaryConfig {
        jitter: 0.0,
        ..CanaryConfig::default()
    }
}

fn start(vendor: Arc<dyn Vendor>) -> (mpsc::Receiver<Observation>, CancellationToken) {
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move { canary::run(0, vendor.as_ref(), &config(), tx, stop).await });
    (rx, cancel)
}

async fn next(rx: &mut mpsc::Receiver<Observation>) -> (CanaryResult, Instant) {
    match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
        Ok(Some(Observation::Canary(c))) => (c.result, c.at),
        other => panic!("expected a canary observation, got {other:?}"),
    }
}

async fn healthy_rounds(rx: &mut mpsc::Receiver<Observation>, n: usize) {
    for _ in 0..n {
        let (result, _) = next(rx).await;
        let CanaryResult::Arrived { latency } = result else {
            panic!("expected an arrival, got {result:?}")
        };
        assert!(latency < Duration::from_millis(500), "{latency:?}");
    }
}

/// Waits for a lost round after the vendor was hung at `hung_at`; returns the failure.
async fn lost_within(
    rx: &mut mpsc::Receiver<Observation>,
    hung_at: Instant,
    bound: Duration,
) -> CanaryFailure {
    loop {
        let (result, at) = next(rx).await;
        if let CanaryResult::Lost { failure } = result {
            assert!(at - hung_at <= bound, "detected after {:?}", at - hung_at);
            return failure;
        }
        assert!(
            at - hung_at <= bound,
            "still arriving {:?} after the hang",
            at - hung_at
        );
    }
}

async fn arrives_again(rx: &mut mpsc::Receiver<Observation>, within: Duration) {
    let started = Instant::now();
    loop {
        if let (CanaryResult::Arrived { .. }, _) = next(rx).await {
            return;
        }
        assert!(
            started.elapsed() < within,
            "no arrival within {within:?} after SIGCONT"
        );
    }
}

#[tokio::test]
async fn the_pusher_canary_sees_a_healthy_vendor_and_detects_a_stopped_one() {
    let mut sockudo = Sockudo::start().await;
    let (mut rx, cancel) = start(pusher(&sockudo.pusher_url()));
    healthy_rounds(&mut rx, 3).await;
    sockudo.pause();
    let failure = lost_within(&mut rx, Instant::now(), Duration::from_millis(3500)).await;
    assert!(
        matches!(
            failure,
            CanaryFailure::PublishFailed { .. } | CanaryFailure::NotDelivered
        ),
        "{failure:?}"
    );
    sockudo.resume();
    arrives_again(&mut rx, Duration::from_secs(15)).await;
    cancel.cancel();
}

#[tokio::test]
async fn the_ably_canary_sees_a_healthy_vendor_and_detects_a_stopped_one() {
    let mut sockudo = Sockudo::start().await;
    let (mut rx, cancel) = start(ably(&sockudo.ably_url()));
    healthy_rounds(&mut rx, 3).await;
    sockudo.pause();
    lost_within(&mut rx, Instant::now(), Duration::from_millis(3500)).await;
    sockudo.resume();
    arrives_again(&mut rx, Duration::from_secs(15)).await;
    cancel.cancel();
}

#[tokio::test]
async fn accepted_but_never_delivered_is_caught_by_the_canary() {
    let sockudo = Sockudo::start().await;
    let proxy = FaultProxy::start(sockudo.port).await;
    let url = crate::vendor_faults::through(&proxy, &sockudo);
    let (mut rx, cancel) = start(pusher(&url));
    healthy_rounds(&mut rx, 2).await;
    proxy.set(Fault::Accept(200, "{}"));
    let failure = lost_within(&mut rx, Instant::now(), Duration::from_millis(3500)).await;
    assert_eq!(failure, CanaryFailure::NotDelivered);
    proxy.set(Fault::Pass);
    arrives_again(&mut rx, Duration::from_secs(5)).await;
    cancel.cancel();
}

#[tokio::test]
async fn refused_ably_credentials_are_a_fatal_canary_failure() {
    let sockudo = Sockudo::start().await;
    let url = sockudo
        .ably_url()
        .replace(&format!(":{}@", sockudo.secret), ":not-the-secret@");
    let (mut rx, cancel) = start(ably(&url));
    let (result, _) = next(&mut rx).await;
    let CanaryResult::Lost { failure } = result else {
        panic!("{result:?}")
    };
    assert!(failure.is_fatal(), "{failure:?}");
    cancel.cancel();
}

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

#[tokio::test]
async fn the_route_leaves_a_stopped_vendor_and_returns_after_the_hysteresis() {
    let mut sockudo = Sockudo::start().await;
    let config = FailoverConfig {
        canary: Some(config()),
        thresholds: Thresholds {
            recover_after: 3,
            min_dwell: Duration::from_secs(3),
            ..Thresholds::default()
        },
        http: crate::support::tls::http_config(),
        ..FailoverConfig::default()
    };
    let vendors = [VendorConfig::from_url(&sockudo.pusher_url()).unwrap()];
    let cancel = CancellationToken::new();
    let failover =
        Failover::build(&vendors, config, &TaskTracker::new(), cancel.clone()).expect("failover");
    let mut rx = failover.watch_route();
    // A publisher at 100 events/s for the whole test; it records its slowest enqueue.
    let slowest = Arc::new(parking_lot::Mutex::new(Duration::ZERO));
    let publisher = {
        let (failover, slowest, cancel) = (failover.clone(), slowest.clone(), cancel.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(10));
            for seq in 0u64.. {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let frame = bytes::Bytes::from(format!(r#"{{"type":"event","seq":{seq}}}"#));
                let event =
                    OutboundEvent::new("room", "e", seq.to_string(), frame, Priority::Realtime);
                let started = Instant::now();
                failover.enqueue(event);
                let took = started.elapsed();
                let mut slowest = slowest.lock();
                *slowest = (*slowest).max(took);
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(failover.route().path, Path::Vendor(0));

    sockudo.pause();
    let hung_at = Instant::now();
    let route = route_until(&mut rx, Duration::from_secs(10), |r| {
        r.path == Path::SelfHosted
    })
    .await;
    let detected = route.since - hung_at;
    eprintln!("hang behind the TLS terminator detected after {detected:?}");
    assert!(
        detected <= Duration::from_millis(3500),
        "detected after {detected:?}"
    );

    sockudo.resume();
    let resumed_at = Instant::now();
    let route = route_until(&mut rx, Duration::from_secs(30), |r| {
        r.path == Path::Vendor(0)
    })
    .await;
    assert!(
        route.since - resumed_at >= Duration::from_secs(3),
        "hysteresis: back after {:?}",
        route.since - resumed_at
    );
    let status = failover.watch_status().borrow().clone();
    assert!(!status.vendors[0].transitions.is_empty());
    cancel.cancel();
    publisher.await.expect("publisher");
    let slowest = *slowest.lock();
    // Waiting on the hung vendor would take a connect or request deadline (500 ms, 2 s); the
    // bound sits far below those and far above a busy machine's scheduling delays.
    assert!(
        slowest < Duration::from_millis(250),
        "slowest enqueue {slowest:?}: the publish path waited on the vendor"
    );
    let stats = failover.lanes()[0].stats();
    assert!(
        stats.realtime.in_flight <= 8 && stats.realtime.queued <= 1024,
        "{stats:?}"
    );
}
