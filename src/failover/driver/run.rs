//! The driver task: a thin async loop around [`Driver`](super::Driver) that selects over
//! cancellation, mode expiry, mode and self-path changes, observations and the window tick, and
//! publishes the route (`watch` + `ArcSwap`) and the status.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{Driver, Route, Status};
use crate::failover::mode::{ModeSetting, TenantModes};
use crate::failover::route::SelfPath;
use crate::upstream::observation::Observation;

/// The driver's inputs.
pub(crate) struct DriverInputs {
    pub observations: mpsc::Receiver<Observation>,
    pub mode: watch::Receiver<ModeSetting>,
    /// Tenants held to a mode of their own (the node's, shared by every vendor set).
    pub tenant_modes: watch::Receiver<TenantModes>,
    pub self_path: watch::Receiver<SelfPath>,
}

/// Where the driver publishes.
pub(crate) struct DriverOutputs {
    pub route: watch::Sender<Route>,
    /// Lock-free copy of the route for the hot path.
    pub current: Arc<ArcSwap<Route>>,
    /// Lock-free copy of the routes of tenants held to a mode of their own.
    pub tenants: Arc<ArcSwap<TenantRoutes>>,
    pub status: watch::Sender<Status>,
    /// Bumped on every route change of every vendor set of the node, so one task can tell
    /// each tenant's connections about theirs.
    pub changed: watch::Sender<u64>,
}

/// The routes of tenants held to a mode of their own, by tenant.
pub(crate) type TenantRoutes = std::collections::BTreeMap<crate::tenant::id::TenantId, Arc<Route>>;

impl DriverOutputs {
    /// Makes the driver's routes the ones the hot path and every receiver see.
    pub(crate) fn publish(&self, driver: &Driver, now: Instant) {
        let route = driver.route().clone();
        self.current.store(Arc::new(route.clone()));
        let tenants = (driver.tenant_routes())
            .map(|(t, r)| (t.clone(), Arc::new(r.clone())))
            .collect();
        self.tenants.store(Arc::new(tenants));
        self.route.send_replace(route);
        self.status.send_replace(driver.status(now));
        self.changed.send_modify(|n| *n += 1);
    }
}

/// Runs the driver until `cancel` fires: observations as they come, windows every `tick`,
/// mode changes and expiry on time. Hands its outputs back when it stops, so a rebuilt vendor
/// side's driver can go on publishing to the same receivers.
pub(crate) async fn run(
    mut driver: Driver,
    mut inputs: DriverInputs,
    outputs: DriverOutputs,
    tick: Duration,
    cancel: CancellationToken,
) -> DriverOutputs {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut observations_open, mut mode_open, mut self_open) = (true, true, true);
    let mut tenants_open = true;
    loop {
        let expiry = driver.next_expiry();
        let changed = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            () = sleep_until_opt(expiry), if expiry.is_some() => driver.expire_mode(Instant::now()),
            changed = inputs.mode.changed(), if mode_open => match changed {
                Ok(()) => {
                    let mode = inputs.mode.borrow_and_update().clone();
                    driver.set_mode(mode, Instant::now())
                }
                Err(_) => { mode_open = false; false }
            },
            changed = inputs.tenant_modes.changed(), if tenants_open => match changed {
                Ok(()) => {
                    let modes = inputs.tenant_modes.borrow_and_update().clone();
                    driver.set_tenant_modes(&modes, Instant::now())
                }
                Err(_) => { tenants_open = false; false }
            },
            changed = inputs.self_path.changed(), if self_open => match changed {
                Ok(()) => {
                    let self_path = *inputs.self_path.borrow_and_update();
                    driver.set_self_path(self_path, Instant::now())
                }
                Err(_) => { self_open = false; false }
            },
            observation = inputs.observations.recv(), if observations_open => match observation {
                Some(observation) => {
                    let now = Instant::now();
                    let mut changed = driver.observe(observation, now);
                    // Drain what else is waiting, bounded, before publishing.
                    for _ in 0..256 {
                        match inputs.observations.try_recv() {
                            Ok(observation) => changed |= driver.observe(observation, now),
                            Err(_) => break,
                        }
                    }
                    changed
                }
                None => { observations_open = false; false }
            },
            _ = ticker.tick() => {
                let now = Instant::now();
                let changed = driver.tick(now);
                outputs.status.send_replace(driver.status(now));
                changed
            }
        };
        if changed {
            outputs.publish(&driver, Instant::now());
        }
    }
    outputs
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
