//! The failover driver: one task that consumes observations, evaluates the passive windows on a
//! tick, steps each vendor's state machine, applies the operator's mode (and its expiry), and
//! publishes the [`Route`] through `watch` (for change notifications) and `ArcSwap` (for the
//! hot path, lock-free), plus a [`Status`] snapshot for `/admin/status`.
//!
//! [`Driver`] holds the logic as plain synchronous methods (`observe`, `tick`, `set_mode`);
//! [`run`] is the thin async loop around it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::health::{Sample, Verdict, Window, WindowConfig, WindowSummary};
use super::machine::{
    Action, Evidence, Health, Machine, State, Thresholds, Transition, TransitionReason,
};
use super::mode::{Mode, ModeSetting};
use super::observation::{CanaryObservation, CanaryResult, Observation};
use super::route::{route, Path, RouteReason, SelfPath};
use crate::vendor::{PublicInfo, VendorKind};

/// How route changes are spread over clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// Spread when clients move back to a vendor. Default 30 s.
    pub move_back_jitter: Duration,
    /// Spread for every other change (off a failing vendor: fast). Default 1 s.
    pub move_away_jitter: Duration,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            move_back_jitter: Duration::from_secs(30),
            move_away_jitter: Duration::from_secs(1),
        }
    }
}

/// The route in force, as the hot path and `GET /v1/route` read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub path: Path,
    pub reason: RouteReason,
    /// The operator's mode in force (`auto` once a forced mode expired).
    pub mode: Mode,
    /// Public info of the routed vendor (`None` unless `path` is a vendor).
    pub vendor: Option<PublicInfo>,
    /// Where events are forwarded: the routed vendor, else the last vendor routed to (clients
    /// still on it keep receiving while they move; its lanes shed if it is hung), else `None`.
    pub forward_to: Option<usize>,
    /// Clients spread this change over a random delay in `[0, jitter)`.
    pub jitter: Duration,
    /// When this route was decided.
    pub since: Instant,
    /// The same moment, in milliseconds since the Unix epoch (`changed_at`).
    pub changed_at_ms: u64,
    /// Increases by one with every published change.
    pub version: u64,
}

/// One vendor, as `/admin/status` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct VendorStatus {
    pub index: usize,
    pub name: String,
    pub kind: VendorKind,
    pub health: Health,
    /// The passive window now.
    pub window: WindowSummary,
    pub verdict: Verdict,
    pub last_canary: Option<CanaryObservation>,
    /// The latest transitions, oldest first (at most [`TRANSITIONS_KEPT`]).
    pub transitions: VecDeque<Transition>,
}

/// Transitions kept per vendor for status.
pub const TRANSITIONS_KEPT: usize = 16;

/// Everything the driver knows, for `/admin/status`.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The mode as set (see [`Route::mode`] for the one in force).
    pub mode: ModeSetting,
    pub self_path: SelfPath,
    pub route: Route,
    pub vendors: Vec<VendorStatus>,
}

/// A vendor as the driver sees it.
#[derive(Clone, Debug)]
pub struct VendorInfo {
    pub name: String,
    pub kind: VendorKind,
    pub public: PublicInfo,
    /// Whether a canary runs for it (recovery then needs good canaries).
    pub has_canary: bool,
}

struct Slot {
    info: VendorInfo,
    health: Health,
    window: Window,
    verdict: Verdict,
    last_canary: Option<CanaryObservation>,
    transitions: VecDeque<Transition>,
}

/// The driver's state and logic, without I/O.
pub struct Driver {
    machine: Machine,
    window: WindowConfig,
    route_config: RouteConfig,
    slots: Vec<Slot>,
    mode: ModeSetting,
    self_path: SelfPath,
    route: Route,
}

impl Driver {
    pub fn new(
        vendors: Vec<VendorInfo>,
        thresholds: Thresholds,
        window: WindowConfig,
        route_config: RouteConfig,
        mode: ModeSetting,
        now: Instant,
    ) -> Driver {
        let slots: Vec<Slot> = vendors
            .into_iter()
            .map(|info| Slot {
                health: Health::new(now, info.has_canary),
                info,
                window: Window::default(),
                verdict: Verdict::Idle,
                last_canary: None,
                transitions: VecDeque::new(),
            })
            .collect();
        let states: Vec<State> = slots.iter().map(|s| s.health.state).collect();
        let decision = route(&mode, &states, SelfPath::Available, now);
        let path = decision.path;
        let route = Route {
            path,
            reason: decision.reason,
            mode: mode.effective(now),
            vendor: path.vendor().map(|i| slots[i].info.public.clone()),
            forward_to: path.vendor(),
            jitter: Duration::ZERO,
            since: now,
            changed_at_ms: crate::vendor::unix_ms(),
            version: 0,
        };
        Driver {
            machine: Machine::new(thresholds),
            window,
            route_config,
            slots,
            mode,
            self_path: SelfPath::Available,
            route,
        }
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    pub fn mode(&self) -> &ModeSetting {
        &self.mode
    }

    /// Takes one observation. Returns whether the route changed.
    pub fn observe(&mut self, observation: Observation, now: Instant) -> bool {
        let index = observation.vendor();
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        match observation {
            Observation::Request(r) => {
                slot.window.record(
                    Sample {
                        at: r.at,
                        latency: r.latency,
                        result: r.result,
                    },
                    &self.window,
                );
                false
            }
            Observation::Canary(c) => {
                record_canary(&slot.info.name, &c.result);
                let result = c.result;
                slot.last_canary = Some(c);
                self.step(index, Evidence::Canary(result), now);
                self.reroute(now)
            }
        }
    }

    /// Evaluates every window. Returns whether the route changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            slot.window.prune(now, &self.window);
            let verdict = slot.window.verdict(now, &self.window);
            slot.verdict = verdict;
            self.step(index, Evidence::Window(verdict), now);
        }
        self.reroute(now)
    }

    /// Applies an operator's mode. Returns whether the route changed.
    pub fn set_mode(&mut self, mode: ModeSetting, now: Instant) -> bool {
        tracing::warn!(mode = mode.mode.as_str(), set_by = %mode.set_by, reason = %mode.reason, "operator mode set");
        self.mode = mode;
        self.reroute(now)
    }

    /// Replaces an expired forced mode by `auto`. Returns whether the route changed.
    pub fn expire_mode(&mut self, now: Instant) -> bool {
        if !self.mode.expired(now) {
            return false;
        }
        tracing::warn!(mode = self.mode.mode.as_str(), set_by = %self.mode.set_by, "forced mode expired, back to auto");
        let reason = format!("{} expired (was: {})", self.mode.mode, self.mode.reason);
        self.mode = ModeSetting::auto(&reason, "expiry");
        self.reroute(now)
    }

    /// Whether understudy's own broadcast can take clients. Returns whether the route changed.
    pub fn set_self_path(&mut self, self_path: SelfPath, now: Instant) -> bool {
        self.self_path = self_path;
        self.reroute(now)
    }

    fn step(&mut self, index: usize, evidence: Evidence, now: Instant) {
        let slot = &mut self.slots[index];
        let (health, actions) = self.machine.step(&slot.health, evidence, now);
        slot.health = health;
        for action in actions {
            match action {
                Action::ClearWindow => slot.window.clear(),
                Action::Transitioned(t) => {
                    log_transition(&slot.info.name, &t);
                    if slot.transitions.len() == TRANSITIONS_KEPT {
                        slot.transitions.pop_front();
                    }
                    slot.transitions.push_back(t);
                }
            }
        }
    }

    /// Re-decides the route; returns whether it changed.
    fn reroute(&mut self, now: Instant) -> bool {
        let states: Vec<State> = self.slots.iter().map(|s| s.health.state).collect();
        let decision = route(&self.mode, &states, self.self_path, now);
        let mode = self.mode.effective(now);
        let old = &self.route;
        if decision.path == old.path && decision.reason == old.reason && mode == old.mode {
            return false;
        }
        // Up the ladder (back to a better path) is spread wide; down it, fast.
        let rank = |path: Path| match path {
            Path::Vendor(i) => i,
            Path::SelfHosted => self.slots.len(),
            Path::Poll => self.slots.len() + 1,
        };
        let jitter = if decision.path == old.path {
            old.jitter
        } else if rank(decision.path) < rank(old.path) {
            self.route_config.move_back_jitter
        } else {
            self.route_config.move_away_jitter
        };
        let route = Route {
            path: decision.path,
            reason: decision.reason,
            mode,
            vendor: decision
                .path
                .vendor()
                .map(|i| self.slots[i].info.public.clone()),
            forward_to: decision.path.vendor().or(old.forward_to),
            jitter,
            since: now,
            changed_at_ms: crate::vendor::unix_ms(),
            version: old.version + 1,
        };
        log_route(old, &route);
        self.route = route;
        true
    }

    pub fn status(&self, now: Instant) -> Status {
        Status {
            mode: self.mode.clone(),
            self_path: self.self_path,
            route: self.route.clone(),
            vendors: self
                .slots
                .iter()
                .enumerate()
                .map(|(index, s)| VendorStatus {
                    index,
                    name: s.info.name.clone(),
                    kind: s.info.kind,
                    health: s.health.clone(),
                    window: s.window.summary(now, &self.window),
                    verdict: s.verdict,
                    last_canary: s.last_canary.clone(),
                    transitions: s.transitions.clone(),
                })
                .collect(),
        }
    }

    /// Vendor states, in priority order.
    pub fn states(&self) -> Vec<State> {
        self.slots.iter().map(|s| s.health.state).collect()
    }
}

fn record_canary(vendor: &str, result: &CanaryResult) {
    let outcome = match result {
        CanaryResult::Arrived { latency } => {
            metrics::histogram!("understudy_canary_seconds", "vendor" => vendor.to_owned())
                .record(latency.as_secs_f64());
            "arrived"
        }
        CanaryResult::Lost { failure } => failure.as_str(),
    };
    metrics::counter!("understudy_canary_total", "vendor" => vendor.to_owned(), "outcome" => outcome).increment(1);
}

fn log_transition(vendor: &str, t: &Transition) {
    metrics::counter!(
        "understudy_vendor_transitions_total",
        "vendor" => vendor.to_owned(), "from" => t.from.as_str(), "to" => t.to.as_str()
    )
    .increment(1);
    for state in [
        State::Healthy,
        State::Degraded,
        State::Down,
        State::Recovering,
    ] {
        let value = if state == t.to { 1.0 } else { 0.0 };
        metrics::gauge!("understudy_vendor_state", "vendor" => vendor.to_owned(), "state" => state.as_str()).set(value);
    }
    let reason = serde_json::to_string(&t.reason).unwrap_or_default();
    match t.reason {
        TransitionReason::Fatal { .. } => {
            tracing::error!(vendor, from = t.from.as_str(), to = t.to.as_str(), %reason, "vendor refuses understudy's configuration")
        }
        _ => {
            tracing::warn!(vendor, from = t.from.as_str(), to = t.to.as_str(), %reason, "vendor health changed")
        }
    }
}

fn log_route(old: &Route, new: &Route) {
    for path in ["vendor", "self", "poll"] {
        let value = if path == new.path.as_str() { 1.0 } else { 0.0 };
        metrics::gauge!("understudy_route", "route" => path).set(value);
    }
    let vendor = new.path.vendor();
    if new.path == Path::Poll {
        tracing::error!(from = old.path.as_str(), to = "poll", reason = %new.reason, "route changed: clients told to poll");
    } else {
        tracing::warn!(from = old.path.as_str(), to = new.path.as_str(), ?vendor, reason = %new.reason, "route changed");
    }
}

/// The driver's inputs.
pub struct DriverInputs {
    pub observations: mpsc::Receiver<Observation>,
    pub mode: watch::Receiver<ModeSetting>,
    pub self_path: watch::Receiver<SelfPath>,
}

/// Where the driver publishes.
pub struct DriverOutputs {
    pub route: watch::Sender<Route>,
    /// Lock-free copy of the route for the hot path.
    pub current: Arc<ArcSwap<Route>>,
    pub status: watch::Sender<Status>,
}

/// Runs the driver until `cancel` fires: observations as they come, windows every `tick`,
/// mode changes and expiry on time.
pub async fn run(
    mut driver: Driver,
    mut inputs: DriverInputs,
    outputs: DriverOutputs,
    tick: Duration,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut observations_open, mut mode_open, mut self_open) = (true, true, true);
    loop {
        let expiry = driver.mode().expires_at;
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
            let route = driver.route().clone();
            outputs.current.store(Arc::new(route.clone()));
            outputs.route.send_replace(route);
            outputs.status.send_replace(driver.status(Instant::now()));
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
