//! One vendor side: the adapters of a configuration and everything that runs for them (lanes,
//! canaries, the heartbeat, the failover driver), under a cancellation token of its own so a
//! reload can stop it whole and start another in its place.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::driver::{
    self, Driver, DriverInputs, DriverOutputs, Route, Status, TenantRoutes, VendorInfo,
};
use super::{canary, heartbeat, FailoverConfig, ModeSetting, Observation, SelfPath, TenantModes};
use crate::upstream::http::{HttpClient, HttpConfig};
use crate::upstream::lanes::{Lanes, RetryBudget};
use crate::upstream::{BuildError, Vendor, VendorConfig};

/// Vendor adapters built from configuration, not started yet. Building can fail (an endpoint
/// that does not parse, the HTTP client); starting cannot.
pub struct PreparedSide {
    vendors: Vec<Arc<dyn Vendor>>,
    /// Each vendor's configuration, to tell which vendors a rebuild keeps (`None`: an adapter
    /// handed in as such, never taken for a kept one).
    configs: Vec<Option<VendorConfig>>,
    config: FailoverConfig,
}

impl PreparedSide {
    /// Builds the adapters for `vendors` (priority order: primary first), sharing one HTTP
    /// client whose request time-out is `lanes.request_timeout`, so there is one deadline.
    pub fn build(vendors: &[VendorConfig], config: FailoverConfig) -> Result<Self, BuildError> {
        let http = HttpClient::new(&HttpConfig {
            request_timeout: config.lanes.request_timeout,
            ..config.http.clone()
        })?;
        let adapters = vendors
            .iter()
            .map(|v| crate::upstream::build(v, &http, &config.realtime))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            vendors: adapters,
            configs: vendors.iter().cloned().map(Some).collect(),
            config,
        })
    }

    /// Already-built adapters (tests, fakes).
    pub fn from_adapters(vendors: Vec<Arc<dyn Vendor>>, config: FailoverConfig) -> Self {
        Self {
            configs: vec![None; vendors.len()],
            vendors,
            config,
        }
    }

    /// Already-built adapters standing for `configs` (tests of which vendors a rebuild keeps).
    #[cfg(test)]
    pub(crate) fn from_adapters_for(
        vendors: Vec<Arc<dyn Vendor>>,
        configs: Vec<VendorConfig>,
        config: FailoverConfig,
    ) -> Self {
        Self {
            vendors,
            configs: configs.into_iter().map(Some).collect(),
            config,
        }
    }

    /// A driver for these vendors, all healthy, with `mode`.
    pub(super) fn driver(&self, mode: ModeSetting, now: Instant) -> Driver {
        let infos = self
            .vendors
            .iter()
            .map(|v| VendorInfo {
                name: v.name().to_owned(),
                kind: v.kind(),
                public: v.public_info(),
                has_canary: self.config.canary.is_some() && v.has_realtime(),
            })
            .collect();
        let c = &self.config;
        Driver::new(infos, c.thresholds, c.window, c.route, mode, now)
    }

    /// For each vendor, its index in `running` if its configuration is unchanged.
    pub(super) fn kept(&self, running: &Side) -> Vec<Option<usize>> {
        self.configs
            .iter()
            .map(|c| {
                let c = c.as_ref()?;
                running.configs.iter().position(|r| r.as_ref() == Some(c))
            })
            .collect()
    }

    pub(super) fn config(&self) -> &FailoverConfig {
        &self.config
    }
}

/// A running vendor side.
pub(super) struct Side {
    /// One per vendor, in priority order.
    pub(super) lanes: Arc<[Lanes]>,
    /// The route this side's driver decided, lock-free for the hot path. Per side, so an index
    /// read from it always refers to these lanes.
    pub(super) current: Arc<ArcSwap<Route>>,
    /// The routes of tenants held to a mode of their own, lock-free like `current`.
    pub(super) tenants: Arc<ArcSwap<TenantRoutes>>,
    configs: Vec<Option<VendorConfig>>,
    /// The vendors' names, in priority order.
    pub(super) names: Vec<String>,
    /// For observations made elsewhere (another node's canary).
    pub(super) observations: mpsc::Sender<Observation>,
    /// Stops this side's lanes, canaries, heartbeat and driver.
    pub(super) cancel: CancellationToken,
}

/// The side's driver, ready to run once the side is in place.
pub(super) struct DriverTask {
    driver: Driver,
    inputs: DriverInputs,
    outputs: DriverOutputs,
    config: FailoverConfig,
    cancel: CancellationToken,
}

/// Where a side's driver publishes and what it listens to.
pub(super) struct Wiring {
    pub(super) route: watch::Sender<Route>,
    pub(super) status: watch::Sender<Status>,
    pub(super) mode: watch::Receiver<ModeSetting>,
    pub(super) tenant_modes: watch::Receiver<TenantModes>,
    pub(super) self_path: watch::Receiver<SelfPath>,
    /// The node's "a route changed" counter.
    pub(super) changed: watch::Sender<u64>,
    /// Whether this node's canaries probe now (the node's, kept across rebuilds).
    pub(super) canary: canary::Gate,
}

impl Side {
    /// Starts lanes, canaries and the heartbeat of `prepared` on `tasks`; the driver is
    /// returned to be started once the side is in place. Must be called inside a Tokio runtime.
    pub(super) fn start(
        prepared: PreparedSide,
        driver: Driver,
        wiring: Wiring,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> (Side, DriverTask) {
        let PreparedSide {
            vendors,
            configs,
            config,
        } = prepared;
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
        if let Some(canary) = &config.canary {
            for (i, v) in vendors.iter().enumerate().filter(|(_, v)| v.has_realtime()) {
                let (v, canary, tx, cancel) = (
                    v.clone(),
                    canary.clone(),
                    observations_tx.clone(),
                    cancel.clone(),
                );
                let gate = wiring.canary.clone();
                let span = tracing::info_span!("canary", vendor = %v.name());
                tasks.spawn(
                    async move {
                        canary::run_gated(i, v.as_ref(), &canary, tx, &gate, cancel).await
                    }
                    .instrument(span),
                );
            }
        }
        let current = Arc::new(ArcSwap::from_pointee(driver.route().clone()));
        let tenants = Arc::new(ArcSwap::from_pointee(TenantRoutes::new()));
        if let Some(interval) = config.heartbeat {
            let span = tracing::info_span!("vendor_heartbeat");
            tasks.spawn(
                heartbeat::run(lanes.clone(), current.clone(), interval, cancel.clone())
                    .instrument(span),
            );
        }
        let task = DriverTask {
            driver,
            inputs: DriverInputs {
                observations: observations_rx,
                mode: wiring.mode,
                tenant_modes: wiring.tenant_modes,
                self_path: wiring.self_path,
            },
            outputs: DriverOutputs {
                route: wiring.route,
                current: current.clone(),
                tenants: tenants.clone(),
                status: wiring.status,
                changed: wiring.changed,
            },
            config,
            cancel: cancel.clone(),
        };
        let side = Side {
            names: vendors.iter().map(|v| v.name().to_owned()).collect(),
            lanes: lanes.into(),
            current,
            tenants,
            configs,
            observations: observations_tx,
            cancel,
        };
        (side, task)
    }

    /// Events waiting in this side's queues now.
    pub(super) fn queued(&self) -> usize {
        self.lanes
            .iter()
            .map(|l| {
                let s = l.stats();
                s.realtime.queued + s.bulk.queued
            })
            .sum()
    }
}

impl DriverTask {
    /// Publishes the driver's routes and status (a receiver told of a route it already holds
    /// finds the same version and tells no client).
    pub(super) fn publish(&self, now: Instant) {
        self.outputs.publish(&self.driver, now);
    }

    /// Applies the tenants' modes in force before the driver starts.
    pub(super) fn take_tenant_modes(&mut self, now: Instant) {
        let modes = self.inputs.tenant_modes.borrow_and_update().clone();
        self.driver.set_tenant_modes(&modes, now);
    }

    /// Runs the driver on `tasks`. Stopped by a rebuild (its side's token alone), it hands
    /// back its outputs; stopped with the node (`node` is cancelled too), it drops them, so
    /// every route and status receiver sees the end.
    pub(super) fn spawn(
        self,
        tasks: &TaskTracker,
        node: CancellationToken,
    ) -> JoinHandle<Option<DriverOutputs>> {
        let span = tracing::info_span!("failover_driver");
        let run = driver::run(
            self.driver,
            self.inputs,
            self.outputs,
            self.config.tick,
            self.cancel,
        );
        tasks.spawn(
            async move {
                let outputs = run.await;
                (!node.is_cancelled()).then_some(outputs)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
pub(super) mod tests;
