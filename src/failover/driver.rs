//! The failover driver: one task that consumes observations, evaluates the passive windows on a
//! tick, steps each vendor's state machine, applies the operator's mode (and its expiry), and
//! publishes the [`Route`] through `watch` (for change notifications) and `ArcSwap` (for the
//! hot path, lock-free), plus a [`Status`] snapshot for `/admin/status`.
//!
//! [`Driver`] holds the logic as plain synchronous methods (`observe`, `tick`, `set_mode`);
//! [`run`] is the thin async loop around it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::health::{Sample, Verdict, Window, WindowConfig, WindowSummary};
use super::machine::{
    Action, Evidence, Health, Machine, State, Thresholds, Transition, TransitionReason,
};
use super::mode::{Mode, ModeSetting};
use super::route::{route, Decision, Path, RouteReason, SelfPath};
use crate::tenant::id::TenantId;
use crate::upstream::observation::{CanaryObservation, Observation};
use crate::upstream::{PublicInfo, VendorKind};

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
    /// Increases with every published change; unique among the routes of one driver (the
    /// node-wide one and each tenant's), so a client moved between them always sees a change.
    pub version: u64,
}

/// A tenant held to a mode of its own (`PUT /admin/mode` with `tenant`), and the route that mode
/// gives it over this driver's vendors.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantRoute {
    pub mode: ModeSetting,
    pub route: Route,
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
    /// The newest failure of a request or a canary round, with its cause.
    pub last_error: Option<LastError>,
    /// The latest transitions, oldest first (at most [`TRANSITIONS_KEPT`]).
    pub transitions: VecDeque<Transition>,
}

/// Transitions kept per vendor for status.
pub(crate) const TRANSITIONS_KEPT: usize = 16;

/// Everything the driver knows, for `/admin/status`.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The mode as set (see [`Route::mode`] for the one in force).
    pub mode: ModeSetting,
    pub self_path: SelfPath,
    pub route: Route,
    pub vendors: Vec<VendorStatus>,
    /// When a reload last rebuilt the vendor side (`None`: never). Transitions from before it
    /// were carried over from the previous side, possibly under another index.
    pub rebuilt_at: Option<Instant>,
    /// Tenants held to a mode of their own, with their routes (the others follow `route`).
    pub tenants: BTreeMap<TenantId, TenantRoute>,
}

/// A vendor as the driver sees it.
#[derive(Clone, Debug)]
pub(crate) struct VendorInfo {
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
    errors: ErrorTracker,
    transitions: VecDeque<Transition>,
}

/// The driver's state and logic, without I/O.
pub(crate) struct Driver {
    machine: Machine,
    window: WindowConfig,
    route_config: RouteConfig,
    slots: Vec<Slot>,
    mode: ModeSetting,
    self_path: SelfPath,
    route: Route,
    rebuilt_at: Option<Instant>,
    /// Tenants held to a mode of their own; bounded by the configured tenants.
    tenants: BTreeMap<TenantId, TenantRoute>,
    /// The highest route version this driver announced, for any route.
    versions: u64,
    /// The tenant whose own vendors these are; `None`: the shared `[vendors]`.
    owner: Option<TenantId>,
}

impl Driver {
    pub(crate) fn new(
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
                errors: ErrorTracker::default(),
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
            changed_at_ms: crate::upstream::unix_ms(),
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
            rebuilt_at: None,
            tenants: BTreeMap::new(),
            versions: 0,
            owner: None,
        }
    }

    /// These vendors are `tenant`'s own (its routes are logged as its, not the node's).
    pub(crate) fn owned_by(mut self, tenant: Option<TenantId>) -> Self {
        self.owner = tenant;
        self
    }

    pub(crate) fn route(&self) -> &Route {
        &self.route
    }

    /// Takes one observation. Returns whether the route changed.
    pub(crate) fn observe(&mut self, observation: Observation, now: Instant) -> bool {
        let index = observation.vendor();
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        slot.errors.observe(&observation, &slot.info.name);
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
    pub(crate) fn tick(&mut self, now: Instant) -> bool {
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
    pub(crate) fn set_mode(&mut self, mode: ModeSetting, now: Instant) -> bool {
        tracing::warn!(mode = mode.mode.as_str(), set_by = %mode.set_by, reason = %mode.reason, "operator mode set");
        self.mode = mode;
        self.reroute(now)
    }

    /// Replaces an expired forced mode by `auto`, and returns a tenant whose own mode expired
    /// to the node-wide one. Returns whether a route changed.
    pub(crate) fn expire_mode(&mut self, now: Instant) -> bool {
        let tenants = self.expire_tenant_modes(now);
        if !self.mode.expired(now) {
            return tenants | self.reroute(now);
        }
        tracing::warn!(mode = self.mode.mode.as_str(), set_by = %self.mode.set_by, "forced mode expired, back to auto");
        let reason = format!("{} expired (was: {})", self.mode.mode, self.mode.reason);
        self.mode = ModeSetting::auto(&reason, "expiry");
        self.reroute(now) | tenants
    }

    /// The next moment a mode (the node-wide one or a tenant's) expires.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        let tenants = self.tenants.values().filter_map(|t| t.mode.expires_at);
        self.mode.expires_at.into_iter().chain(tenants).min()
    }

    /// Whether understudy's own broadcast can take clients. Returns whether the route changed.
    pub(crate) fn set_self_path(&mut self, self_path: SelfPath, now: Instant) -> bool {
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

    /// Re-decides the node-wide route and every tenant's; returns whether one changed.
    fn reroute(&mut self, now: Instant) -> bool {
        let mut changed = false;
        if let Some((decision, mode, jitter)) = self.change(&self.mode, &self.route, now) {
            self.announce(decision, mode, jitter, now);
            changed = true;
        }
        changed | self.reroute_tenants(now)
    }

    /// What `mode` decides now, if it differs from `old`, with the spread of the change.
    fn change(
        &self,
        mode: &ModeSetting,
        old: &Route,
        now: Instant,
    ) -> Option<(Decision, Mode, Duration)> {
        let (decision, effective) = self.decide_for(mode, now);
        if decision.path == old.path && decision.reason == old.reason && effective == old.mode {
            return None;
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
        Some((decision, effective, jitter))
    }

    fn decide(&self, now: Instant) -> (Decision, Mode) {
        self.decide_for(&self.mode, now)
    }

    fn decide_for(&self, mode: &ModeSetting, now: Instant) -> (Decision, Mode) {
        let states: Vec<State> = self.slots.iter().map(|s| s.health.state).collect();
        let decision = route(mode, &states, self.self_path, now);
        (decision, mode.effective(now))
    }

    /// Makes `decision` the node-wide route, as the next version.
    fn announce(&mut self, decision: Decision, mode: Mode, jitter: Duration, now: Instant) {
        self.versions += 1;
        let route = self.next_route(&self.route, decision, mode, jitter, now);
        log_route(&self.route, &route, self.owner.as_ref());
        self.route = route;
    }

    /// The route after `old` that `decision` makes, as version `self.versions`.
    fn next_route(
        &self,
        old: &Route,
        decision: Decision,
        mode: Mode,
        jitter: Duration,
        now: Instant,
    ) -> Route {
        Route {
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
            changed_at_ms: crate::upstream::unix_ms(),
            version: self.versions,
        }
    }

    pub(crate) fn status(&self, now: Instant) -> Status {
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
                    last_error: s.errors.last().cloned(),
                    transitions: s.transitions.clone(),
                })
                .collect(),
            rebuilt_at: self.rebuilt_at,
            tenants: self.tenants.clone(),
        }
    }
}

mod carry;
mod last_error;
mod run;
mod telemetry;
mod tenants;

use last_error::ErrorTracker;
pub(crate) use last_error::LastError;
pub(crate) use run::{run, DriverInputs, DriverOutputs, TenantRoutes};
use telemetry::{log_route, log_transition, record_canary};

#[cfg(test)]
mod tests;
