//! Rebuilding the vendor side on a paused clock with fake vendors: receivers taken before keep
//! receiving, the operator's mode and unchanged vendors' health carry over, queued events of the
//! old side are dropped and counted, events go to the new side.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::failover::{
    CanaryConfig, Failover, FailoverConfig, Mode, ModeSetting, Path, PreparedSide, Route, State,
};
use crate::upstream::fake::{Behaviour, FakeVendor, Realtime};
use crate::upstream::{OutboundEvent, Priority, Vendor, VendorConfig};

const SEC: Duration = Duration::from_secs(1);

/// Failover settings for tests: a canary without jitter, no heartbeat.
pub(in crate::failover) fn config() -> FailoverConfig {
    FailoverConfig {
        canary: Some(CanaryConfig {
            jitter: 0.0,
            ..CanaryConfig::default()
        }),
        heartbeat: None,
        ..FailoverConfig::default()
    }
}

fn webhook(n: u16) -> VendorConfig {
    VendorConfig::from_url(&format!(
        "webhook+http://127.0.0.1:{n}/hook?secret=a-webhook-secret"
    ))
    .unwrap()
}

fn prepared(vendors: &[(&Arc<FakeVendor>, u16)], config: FailoverConfig) -> PreparedSide {
    PreparedSide::from_adapters_for(
        vendors
            .iter()
            .map(|(v, _)| (*v).clone() as Arc<dyn Vendor>)
            .collect(),
        vendors.iter().map(|(_, n)| webhook(*n)).collect(),
        config,
    )
}

fn launch(side: PreparedSide) -> (Failover, CancellationToken) {
    let cancel = CancellationToken::new();
    let node = crate::failover::NodeInputs::new(ModeSetting::default());
    let failover = Failover::launch(side, &TaskTracker::new(), cancel.clone(), node, None);
    (failover, cancel)
}

fn event(n: u64) -> OutboundEvent {
    OutboundEvent::new(
        "room",
        "e",
        n.to_string(),
        Bytes::from(format!(r#"{{"seq":{n}}}"#)),
        Priority::Realtime,
    )
}

async fn route_until(rx: &mut watch::Receiver<Route>, pred: impl Fn(&Route) -> bool) -> Route {
    let wait = async {
        loop {
            {
                let route = rx.borrow_and_update();
                if pred(&route) {
                    return route.clone();
                }
            }
            rx.changed().await.expect("receivers outlive a rebuild");
        }
    };
    tokio::time::timeout(30 * SEC, wait)
        .await
        .expect("the route did not change in time")
}

#[tokio::test(start_paused = true)]
async fn the_mode_carries_over_and_receivers_taken_before_keep_receiving() {
    let old = FakeVendor::new("old", 10, Realtime::Working);
    let (failover, cancel) = launch(prepared(&[(&old, 1)], config()));
    let mut route = failover.watch_route();
    let status = failover.watch_status();
    let expires = Instant::now() + 3600 * SEC;
    failover.set_mode(ModeSetting::forced(
        Mode::SelfHosted,
        "vendor incident",
        "oncall",
        Some(expires),
    ));
    let forced = route_until(&mut route, |r| r.path == Path::SelfHosted).await;

    let new = FakeVendor::new("new", 10, Realtime::Working);
    let rebuilt = failover
        .rebuild(prepared(
            &[(&new, 2)],
            FailoverConfig {
                initial_mode: ModeSetting::auto("config", "config"),
                ..config()
            },
        ))
        .await
        .unwrap();
    assert_eq!((rebuilt.vendors, rebuilt.kept), (1, 0));
    let mode = status.borrow().mode.clone();
    assert_eq!(
        (mode.mode, mode.reason.as_str(), mode.set_by.as_str()),
        (Mode::SelfHosted, "vendor incident", "oncall")
    );
    assert_eq!(mode.expires_at, Some(expires));
    assert_eq!(status.borrow().vendors[0].name, "new");
    let now = failover.route();
    assert_eq!(
        (now.path, now.version, now.since),
        (forced.path, forced.version, forced.since),
        "nothing to tell clients: same route, same version"
    );
    assert_eq!(now.forward_to, None, "the vendor events went to is gone");

    failover.set_mode(ModeSetting::auto("incident over", "oncall"));
    let back = route_until(&mut route, |r| r.path == Path::Vendor(0)).await;
    assert_eq!(back.version, forced.version + 1);
    let before = old.publishes();
    failover.enqueue(event(1));
    tokio::time::sleep(SEC).await;
    assert!(new.calls.lock().iter().flatten().any(|id| id == "1"));
    assert_eq!(old.publishes(), before, "the old side is stopped");
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_expired_mode_stays_expired() {
    let vendor = FakeVendor::new("v", 10, Realtime::Working);
    let (failover, cancel) = launch(prepared(&[(&vendor, 1)], config()));
    let mut route = failover.watch_route();
    failover.set_mode(ModeSetting::forced(
        Mode::Poll,
        "drill",
        "oncall",
        Some(Instant::now() + 10 * SEC),
    ));
    route_until(&mut route, |r| r.path == Path::Poll).await;
    route_until(&mut route, |r| r.mode == Mode::Auto).await;
    failover
        .rebuild(prepared(&[(&vendor, 1)], config()))
        .await
        .unwrap();
    let status = failover.watch_status().borrow().clone();
    assert_eq!(
        (status.mode.mode, status.mode.set_by.as_str()),
        (Mode::Auto, "expiry")
    );
    assert_eq!(failover.route().path, Path::Vendor(0));
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_vendor_keeps_its_health_and_a_changed_one_starts_afresh() {
    let down = FakeVendor::new("down", 10, Realtime::Working);
    let (failover, cancel) = launch(prepared(&[(&down, 1)], config()));
    let mut route = failover.watch_route();
    down.set(Behaviour::Hang);
    let away = route_until(&mut route, |r| r.path == Path::SelfHosted).await;

    // Same vendor configuration, another threshold: the vendor stays unhealthy, the route stays.
    let rebuilt = failover
        .rebuild(prepared(
            &[(&down, 1)],
            FailoverConfig {
                tick: Duration::from_millis(200),
                ..config()
            },
        ))
        .await
        .unwrap();
    assert_eq!(rebuilt.kept, 1);
    let status = failover.watch_status().borrow().clone();
    assert_ne!(status.vendors[0].health.state, State::Healthy);
    assert!(!status.vendors[0].transitions.is_empty());
    assert_eq!(failover.route().version, away.version);
    assert_eq!(failover.route().path, Path::SelfHosted);

    // Another vendor configuration (say, new credentials): it starts healthy and takes the route.
    let fixed = FakeVendor::new("fixed", 10, Realtime::Working);
    failover
        .rebuild(prepared(&[(&fixed, 2)], config()))
        .await
        .unwrap();
    let back = route_until(&mut route, |r| r.path == Path::Vendor(0)).await;
    assert_eq!(back.version, away.version + 1);
    assert_eq!(back.vendor.as_ref().map(|v| v.host.as_str()), Some("fake"));
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn queued_events_of_the_old_side_are_dropped_and_counted() {
    let hung = FakeVendor::new("hung", 1, Realtime::None);
    let (failover, cancel) = launch(prepared(&[(&hung, 1)], config()));
    hung.set(Behaviour::Hang);
    for n in 0..50 {
        failover.enqueue(event(n));
    }
    let old_lanes = failover.lanes();
    let queued = old_lanes[0].stats().realtime.queued;
    assert!(queued > 0);
    let rebuilt = failover
        .rebuild(prepared(&[(&hung, 1)], config()))
        .await
        .unwrap();
    assert_eq!(rebuilt.queued_dropped, queued);
    tokio::time::sleep(SEC).await;
    let stats = old_lanes[0].stats();
    assert_eq!(stats.realtime.queued, 0);
    assert!(stats.realtime.dropped_total() >= queued as u64, "{stats:?}");
    assert_eq!(failover.lanes()[0].stats().realtime.queued, 0);
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_removed_vendor_is_left_at_once() {
    let primary = FakeVendor::new("primary", 10, Realtime::Working);
    let secondary = FakeVendor::new("secondary", 10, Realtime::Working);
    let (failover, cancel) = launch(prepared(&[(&primary, 1), (&secondary, 2)], config()));
    let before = failover.route();
    assert_eq!(before.path, Path::Vendor(0));
    let rebuilt = failover
        .rebuild(prepared(&[(&secondary, 2)], config()))
        .await
        .unwrap();
    assert_eq!(rebuilt.kept, 1);
    let after = failover.route();
    assert_eq!(after.path, Path::Vendor(0));
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.jitter, config().route.move_away_jitter);
    assert_eq!(after.forward_to, Some(0));
    let status = failover.watch_status().borrow().clone();
    assert_eq!(status.vendors.len(), 1);
    assert_eq!(status.vendors[0].name, "secondary");
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn receivers_see_the_end_when_the_node_stops_not_when_the_side_is_rebuilt() {
    let vendor = FakeVendor::new("v", 10, Realtime::Working);
    let (failover, cancel) = launch(prepared(&[(&vendor, 1)], config()));
    let mut route = failover.watch_route();
    failover
        .rebuild(prepared(&[(&vendor, 1)], config()))
        .await
        .unwrap();
    failover.set_mode(ModeSetting::forced(Mode::Poll, "drill", "oncall", None));
    route_until(&mut route, |r| r.path == Path::Poll).await;

    cancel.cancel();
    let closed = async { while route.changed().await.is_ok() {} };
    tokio::time::timeout(SEC, closed)
        .await
        .expect("the route receiver sees the driver stop");
    assert!(failover
        .rebuild(prepared(&[(&vendor, 1)], config()))
        .await
        .is_err());
}
