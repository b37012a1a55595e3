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

pub mod canary;
pub mod driver;
pub mod health;
pub mod heartbeat;
pub mod machine;
pub mod mode;
pub mod observation;
pub mod route;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use canary::CanaryConfig;
pub use driver::{Route, RouteConfig, Status, VendorStatus};
pub use health::{Verdict, WindowConfig};
pub use machine::{State, Thresholds, TransitionReason};
pub use mode::{Mode, ModeSetting};
pub use observation::{
    CanaryFailure, CanaryObservation, CanaryResult, Observation, RequestObservation,
};
pub use route::{Path, RouteReason, SelfPath};

use crate::vendor::http::{HttpClient, HttpConfig};
use crate::vendor::lanes::{Enqueued, LaneConfig, Lanes, RetryBudget, RetryBudgetConfig};
use crate::vendor::realtime::RealtimeConfig;
use crate::vendor::{BuildError, OutboundEvent, Vendor, VendorConfig};

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
#[derive(Clone)]
pub struct Failover {
    inner: Arc<Inner>,
}

struct Inner {
    /// One per vendor, in priority order.
    lanes: Vec<Lanes>,
    /// The route, lock-free for the hot path.
    current: Arc<ArcSwap<Route>>,
    route: watch::Receiver<Route>,
    status: watch::Receiver<Status>,
    mode: watch::Sender<ModeSetting>,
    self_path: watch::Sender<SelfPath>,
    /// For observations made elsewhere (another node's canary).
    observations: mpsc::Sender<Observation>,
    /// Whether this node's canaries probe (it holds the canary lease, or runs alone).
    canary_active: watch::Sender<bool>,
    /// This node's canary results, for sharing.
    canary_tap: tokio::sync::broadcast::Sender<CanaryObservation>,
    vendor_names: Vec<String>,
}

impl Failover {
    /// Builds the adapters for `vendors` (priority order: primary first) and starts everything.
    pub fn build(
        vendors: &[VendorConfig],
        config: FailoverConfig,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Failover, BuildError> {
        let http = HttpClient::new(&HttpConfig {
            request_timeout: config.lanes.request_timeout,
            ..config.http.clone()
        })?;
        let adapters = vendors
            .iter()
            .map(|v| crate::vendor::build(v, &http, &config.realtime))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Failover::start(adapters, config, tasks, cancel))
    }

    /// Starts lanes, canaries, the driver and the heartbeat for already-built vendors.
    /// Must be called inside a Tokio runtime.
    pub fn start(
        vendors: Vec<Arc<dyn Vendor>>,
        config: FailoverConfig,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Failover {
        let now = Instant::now();
        let (observations_tx, observations_rx) = mpsc::channel(config.observation_buffer.max(1));
        let budget = Arc::new(RetryBudget::new(config.retry_budget));
        let lanes: Vec<Lanes> = vendors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Lanes::start(
                    i,
                    v.clone(),
                    config.lanes.clone(),
                    budget.clone(),
                    observations_tx.clone(),
                    tasks,
                    cancel.clone(),
                )
            })
            .collect();
        let infos = vendors
            .iter()
            .map(|v| driver::VendorInfo {
                name: v.name().to_owned(),
                kind: v.kind(),
                public: v.public_info(),
                has_canary: config.canary.is_some() && v.has_realtime(),
            })
            .collect();
        let (canary_active, active) = watch::channel(true);
        let gate = canary::Gate {
            active,
            tap: tokio::sync::broadcast::channel(64).0,
        };
        if let Some(canary) = &config.canary {
            for (i, v) in vendors.iter().enumerate().filter(|(_, v)| v.has_realtime()) {
                let (v, canary, tx, gate, cancel) = (
                    v.clone(),
                    canary.clone(),
                    observations_tx.clone(),
                    gate.clone(),
                    cancel.clone(),
                );
                let span = tracing::info_span!("canary", vendor = %v.name());
                tasks.spawn(
                    async move {
                        canary::run_gated(i, v.as_ref(), &canary, tx, &gate, cancel).await
                    }
                    .instrument(span),
                );
            }
        }

        let driver = driver::Driver::new(
            infos,
            config.thresholds,
            config.window,
            config.route,
            config.initial_mode.clone(),
            now,
        );
        let route = driver.route().clone();
        let current = Arc::new(ArcSwap::from_pointee(route.clone()));
        let (route_tx, route_rx) = watch::channel(route);
        let (status_tx, status_rx) = watch::channel(driver.status(now));
        let (mode_tx, mode_rx) = watch::channel(config.initial_mode.clone());
        let (self_tx, self_rx) = watch::channel(SelfPath::Available);
        let inputs = driver::DriverInputs {
            observations: observations_rx,
            mode: mode_rx,
            self_path: self_rx,
        };
        let outputs = driver::DriverOutputs {
            route: route_tx,
            current: current.clone(),
            status: status_tx,
        };
        let span = tracing::info_span!("failover_driver");
        tasks.spawn(
            driver::run(driver, inputs, outputs, config.tick, cancel.clone()).instrument(span),
        );
        if let Some(interval) = config.heartbeat {
            let span = tracing::info_span!("vendor_heartbeat");
            tasks.spawn(
                heartbeat::run(lanes.clone(), current.clone(), interval, cancel.clone())
                    .instrument(span),
            );
        }
        Failover {
            inner: Arc::new(Inner {
                lanes,
                current,
                route: route_rx,
                status: status_rx,
                mode: mode_tx,
                self_path: self_tx,
                observations: observations_tx,
                canary_active,
                canary_tap: gate.tap,
                vendor_names: vendors.iter().map(|v| v.name().to_owned()).collect(),
            }),
        }
    }

    /// Hands an event to the vendor it should go to now ([`Route::forward_to`]). Synchronous,
    /// never blocks. `None` when no vendor is configured or none was ever routed to.
    pub fn enqueue(&self, event: OutboundEvent) -> Option<Enqueued> {
        let index = self.inner.current.load().forward_to?;
        Some(self.inner.lanes.get(index)?.enqueue(event))
    }

    /// The route now (lock-free).
    pub fn route(&self) -> Arc<Route> {
        self.inner.current.load_full()
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
        self.inner.canary_tap.subscribe()
    }

    /// Takes a canary result made by another node. Never waits: when the driver is behind, the
    /// result is dropped (the next one follows within a canary interval).
    pub fn observe_canary(&self, canary: CanaryObservation) {
        let _ = self
            .inner
            .observations
            .try_send(Observation::Canary(canary));
    }

    /// Names of the configured vendors, in priority order.
    pub fn vendor_names(&self) -> &[String] {
        &self.inner.vendor_names
    }

    /// The operator's mode as last set.
    pub fn mode(&self) -> ModeSetting {
        self.inner.mode.borrow().clone()
    }

    /// Sets the operator's mode; the driver applies it (and its expiry) at once.
    pub fn set_mode(&self, mode: ModeSetting) {
        self.inner.mode.send_replace(mode);
    }

    /// Tells the driver whether understudy's own broadcast can take clients.
    pub fn set_self_path(&self, self_path: SelfPath) {
        self.inner.self_path.send_replace(self_path);
    }

    /// Each vendor's lanes, in priority order (for per-vendor enqueue policies and stats).
    pub fn lanes(&self) -> &[Lanes] {
        &self.inner.lanes
    }
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("lanes", &self.inner.lanes)
            .field("route", &self.inner.current.load().path)
            .finish()
    }
}
