//! The engine breaker: once the shared engine fails to answer a call, publishes are refused at
//! once instead of each waiting out its own deadline, until a probe gets an answer.
//!
//! Plain state and a pure `step`: no clock of its own, no I/O. The Redis engine feeds it the
//! outcome of every call that had its full deadline and of every probe, with the time, and runs
//! the probes it asks for ([`Breaker::probe_at`]).
//!
//! Why one failure trips it: a call that got no answer has already cost its caller the whole
//! deadline (a second by default). Waiting for a second failure would make a second caller pay it
//! too, the very thing the breaker exists to prevent. Recovery is what takes hysteresis: a
//! minimum time tripped before the first probe, and a number of answered probes in a row.

use std::time::Duration;

use tokio::time::Instant;

/// Whether the engine takes publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to the engine.
    Healthy,
    /// The engine failed to answer: publishes are refused at once; probes run.
    Tripped,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Tripped => "tripped",
        }
    }
}

/// How one call or probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The engine answered (an error answer too: it is alive).
    Answered,
    /// No answer within the full deadline.
    NoAnswer,
    /// The connection could not be made or broke.
    Unreachable,
}

/// What the breaker is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// A call that had its full deadline ended so. Calls cut short by a shared deadline (a
    /// batch's) prove nothing about the engine and are not signalled.
    Call(Outcome),
    /// A probe ended so.
    Probe(Outcome),
}

/// Why the breaker tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripReason {
    NoAnswer,
    Unreachable,
}

impl TripReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoAnswer => "no_answer",
            Self::Unreachable => "unreachable",
        }
    }
}

/// A change of state, with why and how long the previous state lasted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    /// Set when tripping.
    pub reason: Option<TripReason>,
    pub after: Duration,
}

/// Recovery hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Time tripped before the first probe, and between probes.
    pub probe_every: Duration,
    /// Answered probes in a row that make the breaker healthy again.
    pub recover_after: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            probe_every: Duration::from_millis(250),
            recover_after: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    policy: Policy,
    state: BreakerState,
    /// When `state` began.
    since: Instant,
    /// Why it tripped; `None` while healthy.
    reason: Option<TripReason>,
    /// Answered probes in a row since the last failed one; only counts while tripped.
    answered: u32,
    /// When the last probe ended (or the breaker tripped); the next probe is due
    /// `probe_every` after it.
    last_probe: Instant,
}

impl Breaker {
    pub(crate) fn new(policy: Policy, now: Instant) -> Self {
        Self {
            policy,
            state: BreakerState::Healthy,
            since: now,
            reason: None,
            answered: 0,
            last_probe: now,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.state
    }

    pub(crate) fn since(&self) -> Instant {
        self.since
    }

    pub(crate) fn reason(&self) -> Option<TripReason> {
        self.reason
    }

    /// When the next probe is due; `None` while healthy.
    pub(crate) fn probe_at(&self) -> Option<Instant> {
        (self.state == BreakerState::Tripped).then(|| self.last_probe + self.policy.probe_every)
    }

    /// Applies one signal; answers the transition if the state changed.
    pub(crate) fn step(&mut self, signal: Signal, now: Instant) -> Option<Transition> {
        use BreakerState::{Healthy, Tripped};
        match (self.state, signal) {
            (Healthy, Signal::Call(Outcome::NoAnswer) | Signal::Probe(Outcome::NoAnswer)) => {
                self.trip(TripReason::NoAnswer, now)
            }
            (Healthy, Signal::Call(Outcome::Unreachable) | Signal::Probe(Outcome::Unreachable)) => {
                self.trip(TripReason::Unreachable, now)
            }
            (Healthy, _) => None,
            // Calls in flight when it tripped end late either way; only probes decide recovery.
            (Tripped, Signal::Call(_)) => None,
            (Tripped, Signal::Probe(outcome)) => {
                self.last_probe = now;
                if outcome != Outcome::Answered {
                    self.answered = 0;
                    return None;
                }
                self.answered += 1;
                if self.answered < self.policy.recover_after {
                    return None;
                }
                Some(self.enter(Healthy, None, now))
            }
        }
    }

    fn trip(&mut self, reason: TripReason, now: Instant) -> Option<Transition> {
        self.answered = 0;
        self.last_probe = now;
        Some(self.enter(BreakerState::Tripped, Some(reason), now))
    }

    fn enter(&mut self, to: BreakerState, reason: Option<TripReason>, now: Instant) -> Transition {
        let t = Transition {
            from: self.state,
            to,
            reason,
            after: now.saturating_duration_since(self.since),
        };
        self.state = to;
        self.since = now;
        self.reason = reason;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;
    use BreakerState::{Healthy, Tripped};

    const EVERY: Duration = Duration::from_millis(250);

    fn breaker(recover_after: u32) -> Breaker {
        let policy = Policy {
            probe_every: EVERY,
            recover_after,
        };
        Breaker::new(policy, Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn one_unanswered_call_trips_it_and_answered_calls_change_nothing() {
        let mut b = breaker(1);
        let now = Instant::now();
        assert_eq!(b.step(Signal::Call(Outcome::Answered), now), None);
        assert_eq!(b.state(), Healthy);
        assert_eq!(b.probe_at(), None, "no probes while healthy");
        advance(Duration::from_secs(3)).await;
        let t = b.step(Signal::Call(Outcome::NoAnswer), Instant::now());
        assert_eq!(
            t,
            Some(Transition {
                from: Healthy,
                to: Tripped,
                reason: Some(TripReason::NoAnswer),
                after: Duration::from_secs(3),
            })
        );
        assert_eq!(b.state(), Tripped);
        assert_eq!(b.since(), Instant::now());
        assert_eq!(b.reason(), Some(TripReason::NoAnswer));
        // A second failure of a call that was in flight is no new transition.
        assert_eq!(
            b.step(Signal::Call(Outcome::NoAnswer), Instant::now()),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_engine_trips_it_with_its_own_reason() {
        let mut b = breaker(1);
        let t = b.step(Signal::Call(Outcome::Unreachable), Instant::now());
        assert_eq!(t.and_then(|t| t.reason), Some(TripReason::Unreachable));
    }

    #[tokio::test(start_paused = true)]
    async fn probes_are_due_every_interval_after_the_trip_and_after_each_probe() {
        let mut b = breaker(1);
        let tripped = Instant::now();
        b.step(Signal::Call(Outcome::NoAnswer), tripped);
        assert_eq!(b.probe_at(), Some(tripped + EVERY));
        // A probe that hangs for its whole deadline: the next is due an interval after it ended.
        advance(EVERY + Duration::from_secs(1)).await;
        let ended = Instant::now();
        assert_eq!(b.step(Signal::Probe(Outcome::NoAnswer), ended), None);
        assert_eq!(b.state(), Tripped);
        assert_eq!(b.probe_at(), Some(ended + EVERY));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_probe_makes_it_healthy_and_a_late_call_answer_does_not() {
        let mut b = breaker(1);
        b.step(Signal::Call(Outcome::NoAnswer), Instant::now());
        advance(Duration::from_millis(100)).await;
        assert_eq!(
            b.step(Signal::Call(Outcome::Answered), Instant::now()),
            None,
            "only probes decide recovery"
        );
        advance(Duration::from_millis(400)).await;
        let t = b.step(Signal::Probe(Outcome::Answered), Instant::now());
        assert_eq!(
            t,
            Some(Transition {
                from: Tripped,
                to: Healthy,
                reason: None,
                after: Duration::from_millis(500),
            })
        );
        assert_eq!(b.state(), Healthy);
        assert_eq!(b.reason(), None);
        assert_eq!(b.probe_at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn recovery_takes_the_answered_probes_in_a_row_the_policy_asks_for() {
        let mut b = breaker(3);
        b.step(Signal::Call(Outcome::NoAnswer), Instant::now());
        let probe = |b: &mut Breaker, o| b.step(Signal::Probe(o), Instant::now());
        assert_eq!(probe(&mut b, Outcome::Answered), None);
        assert_eq!(probe(&mut b, Outcome::Answered), None);
        // A failed probe starts the count again.
        assert_eq!(probe(&mut b, Outcome::Unreachable), None);
        assert_eq!(probe(&mut b, Outcome::Answered), None);
        assert_eq!(probe(&mut b, Outcome::Answered), None);
        assert_eq!(b.state(), Tripped);
        let t = probe(&mut b, Outcome::Answered);
        assert_eq!(t.map(|t| t.to), Some(Healthy));
        // And it trips again on the next failure, counting from zero on the way back.
        b.step(Signal::Call(Outcome::NoAnswer), Instant::now());
        assert_eq!(probe(&mut b, Outcome::Answered), None);
        assert_eq!(b.state(), Tripped);
    }
}
