//! The per-vendor health state machine. Pure: `step(health, evidence, now) -> (health, actions)`.
//!
//! ```text
//!            N bad windows | C lost canaries             D more bad signals
//!  Healthy ───────────────────────────────▶ Degraded ────────────────────▶ Down
//!     ▲   ╲ fatal (401/403, refused) ─────────────────────────────────────▶ ▲
//!     │                                        │ good canary                 │ good canary
//!     │  M good canaries and min_dwell          ▼                            │
//!     └───────────────────────────────── Recovering ◀──────────────────────┘
//!                                              │ any bad signal ─▶ Degraded (fatal ─▶ Down)
//! ```
//!
//! Only `Healthy` vendors are routed to. Recovery needs canaries (M in a row, and at least
//! `min_dwell` in `Recovering`), so a vendor that merely stopped getting traffic cannot come
//! back by silence; a vendor without a realtime side (webhook) recovers on good windows
//! instead. Every transition records a [`TransitionReason`].

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::health::{BadReason, Verdict};
use crate::upstream::error::ErrorClass;
use crate::upstream::observation::{as_millis, CanaryFailure, CanaryResult};

/// Observed health of a vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Working: routed to.
    Healthy,
    /// Tripped by errors, slowness or lost canaries: not routed to.
    Degraded,
    /// Still failing after tripping, or refusing our credentials: not routed to.
    Down,
    /// Good canaries again, proving itself for `recover_after` canaries and `min_dwell`: not
    /// routed to yet.
    Recovering,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::Down => "down",
            State::Recovering => "recovering",
        }
    }

    /// Whether traffic may be routed to a vendor in this state.
    pub fn routable(self) -> bool {
        self == State::Healthy
    }
}

/// Hysteresis settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive bad windows that trip `Healthy` to `Degraded`. Default 2.
    pub trip_after_bad_windows: u32,
    /// Consecutive lost canaries that trip `Healthy` to `Degraded`. Default 1: a canary is only
    /// lost after its whole deadline (2 s), which is already a sustained symptom.
    pub trip_after_lost_canaries: u32,
    /// Further consecutive bad signals that take `Degraded` to `Down`. Default 3.
    pub down_after: u32,
    /// Consecutive good canaries (or good windows, without a canary) to leave `Recovering`.
    /// Default 5.
    pub recover_after: u32,
    /// Minimum time in `Recovering` before `Healthy`. Default 10 s.
    pub min_dwell: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            trip_after_bad_windows: 2,
            trip_after_lost_canaries: 1,
            down_after: 3,
            recover_after: 5,
            min_dwell: Duration::from_secs(10),
        }
    }
}

/// What the machine is told.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Evidence {
    /// The passive window's verdict (evaluated every driver tick).
    Window(Verdict),
    /// A canary round's result.
    Canary(CanaryResult),
}

/// A bad signal, as recorded in reasons.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum BadSignal {
    Window { reason: BadReason },
    Canary { failure: CanaryFailure },
}

/// A fatal signal.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum FatalSignal {
    Request { class: ErrorClass },
    Canary { failure: CanaryFailure },
}

/// Why a transition happened.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransitionReason {
    BadWindows {
        count: u32,
        last: BadReason,
    },
    LostCanaries {
        count: u32,
        last: CanaryFailure,
    },
    Fatal {
        signal: FatalSignal,
    },
    StillFailing {
        count: u32,
        last: BadSignal,
    },
    /// First good signal after tripping.
    Probing {
        #[serde(serialize_with = "opt_millis")]
        canary_latency: Option<Duration>,
    },
    /// A bad signal while recovering.
    Relapsed {
        signal: BadSignal,
    },
    Recovered {
        good: u32,
        #[serde(rename = "dwell_ms", serialize_with = "as_millis")]
        dwell: Duration,
    },
}

fn opt_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => as_millis(d, s),
        None => s.serialize_none(),
    }
}

/// One recorded transition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub reason: TransitionReason,
    pub at: Instant,
}

/// What the driver must do after a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Action {
    /// The state changed: log it, count it, re-evaluate the route.
    Transitioned(Transition),
    /// Forget the passive window (entering `Recovering`).
    ClearWindow,
}

/// A vendor's health: its state plus the streak counters of that state.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    pub state: State,
    /// When `state` was entered.
    pub since: Instant,
    /// The last transition, if any.
    pub last: Option<Transition>,
    /// Whether good windows count as recovery evidence (no canary for this vendor).
    recovers_on_windows: bool,
    /// `Healthy`: consecutive bad windows.
    bad_windows: u32,
    /// `Healthy`: consecutive lost canaries.
    lost_canaries: u32,
    /// `Degraded`: consecutive bad signals since tripping.
    failing: u32,
    /// `Recovering`: consecutive good canaries (or windows).
    good: u32,
}

impl Health {
    /// A vendor starts `Healthy`: optimistic, like a fresh connection pool; the first canary
    /// round (at most `interval + deadline` away) corrects it.
    pub fn new(now: Instant, has_canary: bool) -> Self {
        Health {
            state: State::Healthy,
            since: now,
            last: None,
            recovers_on_windows: !has_canary,
            bad_windows: 0,
            lost_canaries: 0,
            failing: 0,
            good: 0,
        }
    }

    fn enter(&self, to: State, reason: TransitionReason, now: Instant) -> (Health, Vec<Action>) {
        let transition = Transition {
            from: self.state,
            to,
            reason,
            at: now,
        };
        let next = Health {
            state: to,
            since: now,
            last: Some(transition),
            ..Health::new(now, !self.recovers_on_windows)
        };
        let mut actions = vec![Action::Transitioned(transition)];
        if to == State::Recovering {
            actions.push(Action::ClearWindow);
        }
        (next, actions)
    }
}

enum Signal {
    /// `recovery` when it counts toward recovery (a canary, or a window without a canary).
    Good {
        recovery: bool,
        canary_latency: Option<Duration>,
    },
    Bad(BadSignal),
    Fatal(FatalSignal),
    Neutral,
}

/// The state machine, with its thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Machine {
    pub thresholds: Thresholds,
}

impl Machine {
    pub(crate) fn new(thresholds: Thresholds) -> Self {
        Machine { thresholds }
    }

    pub(crate) fn step(
        &self,
        health: &Health,
        evidence: Evidence,
        now: Instant,
    ) -> (Health, Vec<Action>) {
        let t = &self.thresholds;
        let signal = match evidence {
            Evidence::Window(Verdict::Idle) => Signal::Neutral,
            Evidence::Window(Verdict::Good) => Signal::Good {
                recovery: health.recovers_on_windows,
                canary_latency: None,
            },
            Evidence::Window(Verdict::Bad { reason }) => Signal::Bad(BadSignal::Window { reason }),
            Evidence::Window(Verdict::Fatal { class }) => {
                Signal::Fatal(FatalSignal::Request { class })
            }
            Evidence::Canary(CanaryResult::Arrived { latency }) => Signal::Good {
                recovery: true,
                canary_latency: Some(latency),
            },
            Evidence::Canary(CanaryResult::Lost { failure }) if failure.is_fatal() => {
                Signal::Fatal(FatalSignal::Canary { failure })
            }
            Evidence::Canary(CanaryResult::Lost { failure }) => {
                Signal::Bad(BadSignal::Canary { failure })
            }
        };
        let mut next = health.clone();
        match (health.state, signal) {
            (_, Signal::Neutral) => {}
            (State::Down, Signal::Fatal(_)) => {}
            (_, Signal::Fatal(signal)) => {
                return health.enter(State::Down, TransitionReason::Fatal { signal }, now)
            }

            (State::Healthy, Signal::Good { canary_latency, .. }) => {
                if canary_latency.is_some() {
                    next.lost_canaries = 0;
                } else {
                    next.bad_windows = 0;
                }
            }
            (State::Healthy, Signal::Bad(BadSignal::Window { reason })) => {
                next.bad_windows += 1;
                if next.bad_windows >= t.trip_after_bad_windows.max(1) {
                    let reason = TransitionReason::BadWindows {
                        count: next.bad_windows,
                        last: reason,
                    };
                    return health.enter(State::Degraded, reason, now);
                }
            }
            (State::Healthy, Signal::Bad(BadSignal::Canary { failure })) => {
                next.lost_canaries += 1;
                if next.lost_canaries >= t.trip_after_lost_canaries.max(1) {
                    let reason = TransitionReason::LostCanaries {
                        count: next.lost_canaries,
                        last: failure,
                    };
                    return health.enter(State::Degraded, reason, now);
                }
            }

            (State::Degraded, Signal::Bad(signal)) => {
                next.failing += 1;
                if next.failing >= t.down_after.max(1) {
                    let reason = TransitionReason::StillFailing {
                        count: next.failing,
                        last: signal,
                    };
                    return health.enter(State::Down, reason, now);
                }
            }
            (
                State::Degraded | State::Down,
                Signal::Good {
                    recovery: true,
                    canary_latency,
                },
            ) => {
                return health.enter(
                    State::Recovering,
                    TransitionReason::Probing { canary_latency },
                    now,
                );
            }
            (
                State::Degraded | State::Down,
                Signal::Good {
                    recovery: false, ..
                },
            ) => {}
            (State::Down, Signal::Bad(_)) => {}

            (State::Recovering, Signal::Good { recovery: true, .. }) => {
                next.good += 1;
                let dwell = now.saturating_duration_since(health.since);
                if next.good >= t.recover_after && dwell >= t.min_dwell {
                    return health.enter(
                        State::Healthy,
                        TransitionReason::Recovered {
                            good: next.good,
                            dwell,
                        },
                        now,
                    );
                }
            }
            (
                State::Recovering,
                Signal::Good {
                    recovery: false, ..
                },
            ) => {}
            (State::Recovering, Signal::Bad(signal)) => {
                return health.enter(State::Degraded, TransitionReason::Relapsed { signal }, now);
            }
        }
        (next, Vec::new())
    }
}

#[cfg(test)]
mod tests;
