//! Vendor sets and modes per tenant, on a paused clock with fake vendors: a tenant held to a
//! mode of its own moves alone and comes back when it expires; a tenant whose own vendor hangs
//! moves alone, its events go to its own vendor, the others' to the shared one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::failover::{Failover, Mode, ModeSetting, Path, PreparedSide, Route, RouteReason};
use crate::tenant::id::TenantId;
use crate::upstream::fake::{Behaviour, FakeVendor, Realtime};
use crate::upstream::{OutboundEvent, Priority, Vendor};

const SEC: Duration = Duration::from_secs(1);

use super::super::side::tests::config;

fn side(vendor: &Arc<FakeVendor>) -> PreparedSide {
    PreparedSide::from_adapters(vec![vendor.clone() as Arc<dyn Vendor>], config())
}

fn start(shared: &Arc<FakeVendor>) -> (Failover, CancellationToken) {
    let cancel = CancellationToken::new();
    let vendors = vec![shared.clone() as Arc<dyn Vendor>];
    let failover = Failover::start(vendors, config(), &TaskTracker::new(), cancel.clone());
    (failover, cancel)
}

fn event(tenant: &TenantId, n: u64) -> OutboundEvent {
    OutboundEvent::new(
        format!("{tenant}.room"),
        "e",
        format!("{tenant}-{n}"),
        Bytes::from(format!(r#"{{"seq":{n}}}"#)),
        Priority::Realtime,
    )
    .for_tenant(tenant.clone())
}

/// Waits (paused clock) until `tenant`'s route satisfies `pred`.
async fn route_until(
    failover: &Failover,
    tenant: &TenantId,
    within: Duration,
    pred: impl Fn(&Route) -> bool,
) -> Arc<Route> {
    let mut changed = failover.watch_routes();
    let wait = async {
        loop {
            let route = failover.route_for(tenant);
            if pred(&route) {
                return route;
            }
            changed.changed().await.expect("drivers running");
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .expect("the route did not change in time")
}

/// Publishes an event of each tenant every 10 ms until cancelled.
fn publisher(failover: Failover, tenants: Vec<TenantId>, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SEC / 100);
        for n in 0u64.. {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            for t in &tenants {
                failover.enqueue(event(t, n));
            }
        }
    });
}

#[tokio::test(start_paused = true)]
async fn a_tenant_held_to_poll_moves_alone_and_returns_when_its_mode_expires() {
    let vendor = FakeVendor::new("shared", 10, Realtime::Working);
    let (failover, cancel) = start(&vendor);
    let (a, b) = (TenantId::new("a"), TenantId::new("b"));
    tokio::time::sleep(SEC).await;
    let before = failover.route_for(&b);
    assert_eq!(before.path, Path::Vendor(0));

    let expires = Instant::now() + 60 * SEC;
    let mode = ModeSetting::forced(Mode::Poll, "clinic a incident", "oncall", Some(expires));
    failover.set_tenant_mode(&a, Some(mode));
    let polled = route_until(&failover, &a, SEC, |r| r.path == Path::Poll).await;
    assert_eq!(polled.reason, RouteReason::Forced { mode: Mode::Poll });
    assert_eq!(polled.mode, Mode::Poll);
    assert!(polled.version > before.version);
    assert_eq!(
        polled.forward_to,
        Some(0),
        "a's events keep going to the vendor its clients may still be on"
    );
    assert_eq!(*failover.route_for(&b), *before, "b is untouched");
    assert_eq!(
        *failover.route(),
        *before,
        "the node-wide route is untouched"
    );
    failover.enqueue(event(&a, 1));
    tokio::time::sleep(SEC).await;
    assert!(vendor.calls.lock().iter().flatten().any(|id| id == "a-1"));

    let back = route_until(&failover, &a, 61 * SEC, |r| r.path == Path::Vendor(0)).await;
    assert!(Instant::now() >= expires);
    assert_eq!(
        back.version, before.version,
        "a follows the node-wide route again"
    );
    assert!(
        failover.route_for(&a).mode == Mode::Auto
            && failover.route_for(&b).version == before.version
    );
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn inherit_lifts_a_tenant_mode_and_the_node_wide_mode_reaches_every_vendor_set() {
    let shared = FakeVendor::new("shared", 10, Realtime::Working);
    let own = FakeVendor::new("own", 10, Realtime::Working);
    let (failover, cancel) = start(&shared);
    let (a, b) = (TenantId::new("a"), TenantId::new("b"));
    failover.start_own(&a, side(&own));
    tokio::time::sleep(SEC).await;
    let hour = Some(Instant::now() + 3600 * SEC);
    failover.set_mode(ModeSetting::forced(Mode::SelfHosted, "x", "ops", hour));
    for t in [&a, &b] {
        route_until(&failover, t, SEC, |r| r.path == Path::SelfHosted).await;
    }
    // a is held to auto: it follows its own vendor's health whatever the node-wide mode.
    failover.set_tenant_mode(&a, Some(ModeSetting::forced(Mode::Auto, "y", "ops", hour)));
    route_until(&failover, &a, SEC, |r| r.path == Path::Vendor(0)).await;
    assert_eq!(failover.route_for(&b).path, Path::SelfHosted);
    failover.set_tenant_mode(&a, None);
    route_until(&failover, &a, SEC, |r| r.path == Path::SelfHosted).await;
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_tenant_whose_own_vendor_hangs_moves_alone() {
    let shared = FakeVendor::new("shared", 10, Realtime::Working);
    let own = FakeVendor::new("own", 10, Realtime::Working);
    let (failover, cancel) = start(&shared);
    let (a, b) = (TenantId::new("a"), TenantId::new("b"));
    failover.start_own(&a, side(&own));
    assert!(failover.has_own_vendors(&a) && !failover.has_own_vendors(&b));
    publisher(failover.clone(), vec![a.clone(), b.clone()], cancel.clone());
    tokio::time::sleep(5 * SEC).await;
    assert_eq!(failover.route_for(&a).path, Path::Vendor(0));
    let calls = |v: &FakeVendor, prefix: &str| {
        (v.calls.lock().iter().flatten())
            .filter(|id| id.starts_with(prefix))
            .count()
    };
    assert!(
        calls(&own, "a-") > 0 && calls(&own, "b-") == 0,
        "a's events go to a's vendor"
    );
    assert!(
        calls(&shared, "b-") > 0 && calls(&shared, "a-") == 0,
        "b's to the shared one"
    );

    let b_before = failover.route_for(&b);
    own.set(Behaviour::Hang);
    let hung_at = Instant::now();
    let moved = route_until(&failover, &a, 10 * SEC, |r| r.path == Path::SelfHosted).await;
    assert!(
        moved.since - hung_at <= 3 * SEC,
        "after {:?}",
        moved.since - hung_at
    );
    assert_eq!(moved.reason, RouteReason::NoHealthyVendor);
    assert_eq!(
        *failover.route_for(&b),
        *b_before,
        "b stays on the shared vendor"
    );
    assert_eq!(failover.own_status(&a).unwrap().vendors[0].name, "own");

    own.set(Behaviour::Deliver);
    route_until(&failover, &a, 30 * SEC, |r| r.path == Path::Vendor(0)).await;
    assert_eq!(*failover.route_for(&b), *b_before);
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_reload_starts_keeps_rebuilds_and_stops_tenants_own_vendor_sets() {
    let shared = FakeVendor::new("shared", 10, Realtime::Working);
    let (failover, cancel) = start(&shared);
    let a = TenantId::new("a");
    let webhook = |n: u16| {
        crate::upstream::VendorConfig::from_url(&format!(
            "webhook+http://127.0.0.1:{n}/hook?secret=a-webhook-secret"
        ))
        .unwrap()
    };
    let own = |n: u16| {
        vec![super::TenantVendors {
            tenant: a.clone(),
            vendors: vec![webhook(n)],
        }]
    };
    let apply = |wanted| {
        let plan = failover.plan_tenants(wanted, &config()).unwrap();
        failover.apply_tenants(plan)
    };
    assert_eq!(apply(own(1)).await.unwrap(), 1, "started");
    assert!(failover.has_own_vendors(&a));
    let names = failover.vendor_names_for(&a);
    assert_ne!(
        names,
        failover.vendor_names(),
        "a's own vendor, not the shared one"
    );
    tokio::time::sleep(SEC).await;
    let route = failover.route_for(&a);
    assert_eq!(route.path, Path::Vendor(0));
    assert_eq!(apply(own(1)).await.unwrap(), 0, "unchanged: kept");
    assert_eq!(failover.route_for(&a).since, route.since);
    assert_eq!(apply(own(2)).await.unwrap(), 1, "changed: rebuilt");
    assert!(failover.has_own_vendors(&a));
    assert_eq!(apply(Vec::new()).await.unwrap(), 1, "gone: stopped");
    assert!(!failover.has_own_vendors(&a));
    assert_eq!(
        *failover.route_for(&a),
        *failover.route(),
        "a shares [vendors] again"
    );
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_tenant_mode_and_its_route_survive_a_rebuild_of_the_vendors() {
    let vendor = FakeVendor::new("v", 10, Realtime::Working);
    let (failover, cancel) = start(&vendor);
    let a = TenantId::new("a");
    tokio::time::sleep(SEC).await;
    let hour = Some(Instant::now() + 3600 * SEC);
    failover.set_tenant_mode(&a, Some(ModeSetting::forced(Mode::Poll, "x", "ops", hour)));
    let polled = route_until(&failover, &a, SEC, |r| r.path == Path::Poll).await;
    let next = FakeVendor::new("next", 10, Realtime::Working);
    failover.rebuild(side(&next)).await.unwrap();
    let after = failover.route_for(&a);
    assert_eq!(
        (after.path, after.version),
        (Path::Poll, polled.version),
        "nothing to tell a's clients"
    );
    let node = failover.route();
    assert_eq!(node.path, Path::Vendor(0));
    assert!(node.version > polled.version, "versions stay unique");
    cancel.cancel();
}
