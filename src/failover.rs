//! Vendor health and failover: observations from the lanes and the canaries feed a pure state
//! machine per vendor; the operator's mode is kept apart; a pure route function picks primary
//! vendor → secondary vendor → own broadcast → poll; one driver task publishes the [`Route`].
//!
//! [`Failover`] assembles it all for the core: the lanes of every vendor, a canary per vendor
//! that has a realtime side, the driver, the vendor heartbeat.
//!
//! # Layout
//! - `observation`: [`Observation`], what the lanes and canaries report.
//! - `health`: the rolling window of request outcomes and its [`Verdict`] (pure).
//! - `machine`: `Healthy / Degraded / Down / Recovering`, `step`, transition reasons (pure).
//! - `mode`: the operator's [`Mode`] with reason and expiry (pure).
//! - `route`: `route(mode, states, self path, now)` (pure).
//! - `driver`: the task that steps the machines and publishes [`Route`] and [`Status`].
//! - `canary`: publish-to-arrival probes over the vendor's REST API and realtime socket.
//! - `heartbeat`: the `understudy.heartbeat` event while the route is a vendor.
//! - `side`: one configuration's adapters and everything running for them, replaced whole when
//!   a reload changes the vendors or their knobs.
//! - `tenants`: a vendor set per tenant with vendors of its own, beside the shared one; modes
//!   and routes per tenant.

pub mod canary;
pub(crate) mod driver;
pub(crate) mod health;
pub(crate) mod heartbeat;
pub(crate) mod machine;
pub(crate) mod mode;
pub(crate) mod route;
mod side;
mod tenants;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::upstream::observation::{
    CanaryFailure, CanaryObservation, CanaryResult, Observation, RequestObservation,
};
pub use canary::CanaryConfig;
pub use driver::{Route, RouteConfig, Status, TenantRoute, VendorStatus};
pub use health::{Verdict, WindowConfig};
pub use machine::{State, Thresholds, TransitionReason};
pub use mode::{Mode, ModeSetting, TenantModes};
pub use route::{Path, RouteReason, SelfPath};
pub use side::PreparedSide;
pub use tenants::{OwnVendorsPlan, TenantVendors};

use crate::upstream::http::HttpConfig;
use crate::upstream::lanes::{Enqueued, LaneConfig, Lanes, RetryBudgetConfig};
use crate::upstream::realtime::RealtimeConfig;
use crate::upstream::{BuildError, OutboundEvent, Vendor, VendorConfig};
use driver::DriverOutputs;
use side::Side;

/// Every knob of vendor delivery and failover, with the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct FailoverConfig {
    /// HTTP client settings. [`Failover::build`] uses `lanes.request_timeout` as the client's
    /// request time-out, so there is one deadline.
    pub http: HttpConfig,
    pub realtime: RealtimeConfig,
    pub lanes: LaneConfig,
    pub retry_budget: RetryBudgetConfig,
    pub window: WindowConfig,
    pub thresholds: Thresholds,
    /// `None` disables the canary (then recovery comes from good windows).
    pub canary: Option<CanaryConfig>,
    pub route: RouteConfig,
    /// How often the passive windows are evaluated. Default 250 ms.
    pub tick: Duration,
    /// Vendor heartbeat interval (`vendor_heartbeat_ms`); `None` disables it. Default 5 s.
    pub heartbeat: Option<Duration>,
    /// Capacity of the driver's inbox; a full inbox loses observations (counted). Default 4096.
    pub observation_buffer: usize,
    /// The mode at start-up. Default `auto`.
    pub initial_mode: ModeSetting,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            http: HttpConfig::default(),
            realtime: RealtimeConfig::default(),
            lanes: LaneConfig::default(),
            retry_budget: RetryBudgetConfig::default(),
            window: WindowConfig::default(),
            thresholds: Thresholds::default(),
            canary: Some(CanaryConfig::default()),
            route: RouteConfig::default(),
            tick: Duration::from_millis(250),
            heartbeat: Some(Duration::from_secs(5)),
            observation_buffer: 4096,
            initial_mode: ModeSetting::default(),
        }
    }
}

/// Vendor delivery and failover, running. Cheap to clone; share it in the app state.
///
/// The handle lives as long as the node. [`Failover::rebuild`] replaces the vendor side behind
/// it (a configuration reload); route and status receivers taken before keep receiving, and the
/// operator's mode carries over.
#[derive(Clone)]
pub struct Failover {
    inner: Arc<Inner>,
}

struct Inner {
    /// The vendor side in force, read without a lock by the publish path; replaced whole by a
    /// rebuild.
    side: ArcSwap<Side>,
    route: watch::Receiver<Route>,
    status: watch::Receiver<Status>,
    /// The node's operator inputs, shared by the shared vendor set and every tenant's own.
    node: NodeInputs,
    /// The tenant whose own vendors these are; `None`: the shared `[vendors]`.
    owner: Option<crate::tenant::id::TenantId>,
    /// The vendor sets of tenants with vendors of their own (on the node's failover only;
    /// empty on theirs). Read lock-free by the publish path; replaced whole by a reload.
    own: ArcSwap<tenants::OwnSets>,
    /// Whether this node's canaries probe (it holds the canary lease, or runs alone).
    canary_active: watch::Sender<bool>,
    /// The gate every side's canaries follow, and where their results are also told.
    canary_gate: canary::Gate,
    /// The running side's driver task; it hands back its outputs when a rebuild stops it (not
    /// when the node stops). A rebuild holds this lock throughout, so rebuilds run one at a time.
    driver: tokio::sync::Mutex<Option<JoinHandle<Option<DriverOutputs>>>>,
    /// Where vendor sides run, and the node's cancellation their own tokens descend from.
    tasks: TaskTracker,
    cancel: CancellationToken,
}

/// What the node's operator sets, seen by every vendor set's driver.
#[derive(Clone)]
struct NodeInputs {
    mode: watch::Sender<ModeSetting>,
    tenant_modes: watch::Sender<TenantModes>,
    self_path: watch::Sender<SelfPath>,
    /// Bumped by every driver on every route change.
    changed: watch::Sender<u64>,
}

impl NodeInputs {
    fn new(mode: ModeSetting) -> Self {
        NodeInputs {
            mode: watch::channel(mode).0,
            tenant_modes: watch::channel(TenantModes::new()).0,
            self_path: watch::channel(SelfPath::Available).0,
            changed: watch::channel(0).0,
        }
    }
}

/// What a rebuild did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    /// Vendors configured now.
    pub vendors: usize,
    /// Vendors whose configuration did not change: they kept their health.
    pub kept: usize,
    /// Events that were waiting in the old side's queues: dropped, counted under
    /// `understudy_vendor_dropped_total{reason="closed"}`. They are in history and on the own
    /// broadcast.
    pub queued_dropped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The node is shutting down (or the driver failed).
    #[error("the failover driver is not running")]
    DriverGone,
}

impl Failover {
    /// Builds the adapters for `vendors` (priority order: primary first) and starts everything.
    pub fn build(
        vendors: &[VendorConfig],
        config: FailoverConfig,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Failover, BuildError> {
        let prepared = PreparedSide::build(vendors, config)?;
        let node = NodeInputs::new(prepared.config().initial_mode.clone());
        Ok(Failover::launch(prepared, tasks, cancel, node, None))
    }

    /// Starts lanes, canaries, the driver and the heartbeat for already-built vendors.
    /// Must be called inside a Tokio runtime.
    pub fn start(
        vendors: Vec<Arc<dyn Vendor>>,
        config: FailoverConfig,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Failover {
        let node = NodeInputs::new(config.initial_mode.clone());
        let prepared = PreparedSide::from_adapters(vendors, config);
        Failover::launch(prepared, tasks, cancel, node, None)
    }

    /// Starts a vendor set: the node's shared one (`owner` `None`, `node` new), or a tenant's
    /// own, which follows the node's inputs.
    fn launch(
        prepared: PreparedSide,
        tasks: &TaskTracker,
        cancel: CancellationToken,
        node: NodeInputs,
        owner: Option<crate::tenant::id::TenantId>,
    ) -> Failover {
        let now = Instant::now();
        let mut mode_rx = node.mode.subscribe();
        let mode = mode_rx.borrow_and_update().clone();
        let mode = if mode.expired(now) {
            ModeSetting::auto("default", "config")
        } else {
            mode
        };
        let driver = prepared.driver(mode, now).owned_by(owner.clone());
        let (route_tx, route_rx) = watch::channel(driver.route().clone());
        let (status_tx, status_rx) = watch::channel(driver.status(now));
        let mut self_rx = node.self_path.subscribe();
        self_rx.mark_changed();
        let mut tenant_modes = node.tenant_modes.subscribe();
        tenant_modes.mark_changed();
        let (canary_active, active) = watch::channel(true);
        let canary_gate = canary::Gate {
            active,
            tap: tokio::sync::broadcast::channel(64).0,
        };
        let wiring = side::Wiring {
            route: route_tx,
            status: status_tx,
            mode: mode_rx,
            tenant_modes,
            self_path: self_rx,
            changed: node.changed.clone(),
            canary: canary_gate.clone(),
        };
        let (side, driver) = Side::start(prepared, driver, wiring, tasks, cancel.child_token());
        let driver = driver.spawn(tasks, cancel.clone());
        Failover {
            inner: Arc::new(Inner {
                side: ArcSwap::from_pointee(side),
                route: route_rx,
                status: status_rx,
                node,
                owner,
                own: ArcSwap::default(),
                driver: tokio::sync::Mutex::new(Some(driver)),
                tasks: tasks.clone(),
                cancel,
                canary_active,
                canary_gate,
            }),
        }
    }

    /// Replaces the running vendor side with `next` (a configuration reload).
    ///
    /// The old side stops: its driver first (it hands back the route and status senders), then
    /// its lanes, whose queued events are dropped and counted, and its canaries and heartbeat;
    /// requests in flight finish within their deadline. The new side continues from the old one:
    /// the operator's mode with its reason and expiry, vendors whose configuration is unchanged
    /// with their health, the route with its version (it changes only if the decision does).
    pub async fn rebuild(&self, next: PreparedSide) -> Result<Rebuilt, RebuildError> {
        let mut running = self.inner.driver.lock().await;
        let old = self.inner.side.load_full();
        let queued_dropped = old.queued();
        old.cancel.cancel();
        let handle = running.take().ok_or(RebuildError::DriverGone)?;
        let DriverOutputs { route, status, .. } = handle
            .await
            .ok()
            .flatten()
            .ok_or(RebuildError::DriverGone)?;
        let now = Instant::now();
        let previous = status.borrow().clone();
        let mut mode_rx = self.inner.node.mode.subscribe();
        let set = mode_rx.borrow_and_update().clone();
        // The mode as last set, unless it has expired: then as the old driver left it (`auto`
        // once it saw the expiry; else the expired one, which the new driver expires at once).
        let mode = if set.expired(now) {
            previous.mode.clone()
        } else {
            set
        };
        let mut self_rx = self.inner.node.self_path.subscribe();
        let self_path = *self_rx.borrow_and_update();
        let kept = next.kept(&old);
        let mut driver = next.driver(mode, now).owned_by(self.inner.owner.clone());
        driver.carry_over(&previous, &kept, self_path, now);
        let wiring = side::Wiring {
            route,
            status,
            mode: mode_rx,
            tenant_modes: self.inner.node.tenant_modes.subscribe(),
            self_path: self_rx,
            changed: self.inner.node.changed.clone(),
            canary: self.inner.canary_gate.clone(),
        };
        let (side, mut driver) = Side::start(
            next,
            driver,
            wiring,
            &self.inner.tasks,
            self.inner.cancel.child_token(),
        );
        let rebuilt = Rebuilt {
            vendors: side.lanes.len(),
            kept: kept.iter().flatten().count(),
            queued_dropped,
        };
        // The side goes in place before receivers hear of a new route, so whoever reads the
        // route on that news reads the new one.
        self.inner.side.store(Arc::new(side));
        driver.take_tenant_modes(now);
        driver.publish(now);
        *running = Some(driver.spawn(&self.inner.tasks, self.inner.cancel.clone()));
        tracing::info!(
            vendors = rebuilt.vendors,
            kept = rebuilt.kept,
            queued_dropped,
            "vendor side rebuilt"
        );
        Ok(rebuilt)
    }

    /// Hands an event to the vendor it should go to now ([`Route::forward_to`]): its tenant's
    /// own vendors when it has some, else the shared ones. Synchronous, never blocks. `None`
    /// when no vendor is configured or none was ever routed to.
    pub fn enqueue(&self, event: OutboundEvent) -> Option<Enqueued> {
        let own = self.inner.own.load();
        match own.get(&event.tenant) {
            Some(set) => set.failover.enqueue_here(event),
            None => self.enqueue_here(event),
        }
    }

    fn enqueue_here(&self, event: OutboundEvent) -> Option<Enqueued> {
        let side = self.inner.side.load();
        let tenants = side.tenants.load();
        let index = match tenants.get(&event.tenant) {
            Some(route) => route.forward_to?,
            None => side.current.load().forward_to?,
        };
        Some(side.lanes.get(index)?.enqueue(event))
    }

    /// The node-wide route of the shared vendors now (lock-free): the default tenant's unless
    /// it is held to a mode of its own (see [`Failover::route_for`]).
    pub fn route(&self) -> Arc<Route> {
        self.inner.side.load().current.load_full()
    }

    /// A receiver that wakes on every route change (to push `{"type":"route"}` to clients).
    pub fn watch_route(&self) -> watch::Receiver<Route> {
        self.inner.route.clone()
    }

    /// A receiver of status snapshots (refreshed every tick and on every change).
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.inner.status.clone()
    }

    /// Lets this node's canaries probe the vendors, or holds them while another node does.
    pub fn set_canary_active(&self, active: bool) {
        self.inner
            .canary_active
            .send_if_modified(|a| std::mem::replace(a, active) != active);
    }

    /// Whether this node's canaries probe now.
    pub fn canary_active(&self) -> bool {
        *self.inner.canary_active.borrow()
    }

    /// This node's canary results as they come (for sharing with other nodes).
    pub fn watch_canary(&self) -> tokio::sync::broadcast::Receiver<CanaryObservation> {
        self.inner.canary_gate.tap.subscribe()
    }

    /// Takes a canary result made by another node. Never waits: when the driver is behind, the
    /// result is dropped (the next one follows within a canary interval).
    pub fn observe_canary(&self, canary: CanaryObservation) {
        let side = self.inner.side.load();
        let _ = side.observations.try_send(Observation::Canary(canary));
    }

    /// Names of the configured vendors, in priority order.
    pub fn vendor_names(&self) -> Vec<String> {
        self.inner.side.load().names.clone()
    }

    /// The operator's node-wide mode as last set.
    pub fn mode(&self) -> ModeSetting {
        self.inner.node.mode.borrow().clone()
    }

    /// Sets the operator's node-wide mode; every vendor set's driver applies it (and its
    /// expiry) at once.
    pub fn set_mode(&self, mode: ModeSetting) {
        self.inner.node.mode.send_replace(mode);
    }

    /// Tells the drivers whether understudy's own broadcast can take clients.
    pub fn set_self_path(&self, self_path: SelfPath) {
        self.inner.node.self_path.send_replace(self_path);
    }

    /// Whether any vendor is configured.
    pub fn has_vendors(&self) -> bool {
        !self.inner.side.load().lanes.is_empty()
    }

    /// Each vendor's lanes, in priority order (for per-vendor enqueue policies and stats).
    pub fn lanes(&self) -> Arc<[Lanes]> {
        self.inner.side.load().lanes.clone()
    }
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = self.inner.side.load();
        f.debug_struct("Failover")
            .field("lanes", &side.lanes)
            .field("route", &side.current.load().path)
            .finish()
    }
}
