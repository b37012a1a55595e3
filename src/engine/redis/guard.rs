//! The breaker in front of this node's calls to Redis ([`Breaker`]): the lock-free check every
//! publish makes, the transitions (logged at WARN once each, counted in metrics, shown in
//! `/admin/status`) and the task that probes Redis while the breaker is tripped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::RedisEngine;
use crate::engine::breaker::{Breaker, BreakerState, Outcome, Policy, Signal, TripReason};
use crate::engine::metrics::EngineMetrics;
use crate::engine::EngineError;

/// What `/admin/status` shows of the breaker.
#[derive(Debug, Clone, Copy)]
pub struct BreakerView {
    pub state: BreakerState,
    pub since: Instant,
    pub reason: Option<TripReason>,
    /// Publishes refused by the breaker since this node started.
    pub refused: u64,
}

pub(super) struct Guard {
    /// Taken only to apply a signal (a failed call or a probe), never across an await.
    breaker: Mutex<Breaker>,
    /// Mirrors `breaker.state() == Tripped`, for the check every publish makes.
    tripped: AtomicBool,
    /// The state, for the probe task to wait on.
    state: watch::Sender<BreakerState>,
    refused: AtomicU64,
}

impl Guard {
    pub(super) fn new(policy: Policy) -> Self {
        set_gauge(BreakerState::Healthy);
        Self {
            breaker: Mutex::new(Breaker::new(policy, Instant::now())),
            tripped: AtomicBool::new(false),
            state: watch::channel(BreakerState::Healthy).0,
            refused: AtomicU64::new(0),
        }
    }

    /// The error for a publish while the breaker is tripped; `None` when it may go ahead.
    pub(super) fn refusal(&self) -> Option<EngineError> {
        if !self.tripped.load(Ordering::Relaxed) {
            return None;
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        EngineMetrics::engine_breaker_refused().increment(1);
        let since = self.breaker.lock().since();
        Some(EngineError::Tripped {
            for_ms: since.elapsed().as_millis() as u64,
        })
    }

    /// Applies a call's or a probe's outcome; logs and counts a transition.
    pub(super) fn signal(&self, signal: Signal, redis: &str) {
        let transition = {
            let mut breaker = self.breaker.lock();
            let t = breaker.step(signal, Instant::now());
            if t.is_some() {
                // Set under the lock, so a later signal never sees an older state here.
                self.tripped
                    .store(breaker.state() == BreakerState::Tripped, Ordering::Relaxed);
            }
            t
        };
        let Some(t) = transition else { return };
        self.state.send_replace(t.to);
        set_gauge(t.to);
        EngineMetrics::engine_breaker_transition(t.to.as_str()).increment(1);
        let after_ms = t.after.as_millis() as u64;
        match t.reason {
            Some(reason) => warn!(
                redis,
                reason = reason.as_str(),
                healthy_for_ms = after_ms,
                "engine breaker tripped: publishes are refused at once until Redis answers a probe"
            ),
            None => warn!(
                redis,
                tripped_for_ms = after_ms,
                "engine breaker healthy again: Redis answered a probe; publishes go through"
            ),
        }
    }

    pub(super) fn view(&self) -> BreakerView {
        let b = self.breaker.lock();
        BreakerView {
            state: b.state(),
            since: b.since(),
            reason: b.reason(),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

fn set_gauge(state: BreakerState) {
    for s in [BreakerState::Healthy, BreakerState::Tripped] {
        let on = if s == state { 1.0 } else { 0.0 };
        EngineMetrics::engine_breaker(s.as_str()).set(on);
    }
}

/// Probes Redis while the breaker is tripped, as often as its policy asks, until one answers.
pub(super) async fn run_probes(engine: Arc<RedisEngine>, cancel: CancellationToken) {
    let mut state = engine.guard.state.subscribe();
    loop {
        let tripped = tokio::select! {
            () = cancel.cancelled() => return,
            r = state.wait_for(|s| *s == BreakerState::Tripped) => r.is_ok(),
        };
        if !tripped {
            return;
        }
        let Some(at) = engine.guard.breaker.lock().probe_at() else {
            continue;
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(at) => {}
        }
        let outcome = tokio::select! {
            () = cancel.cancelled() => return,
            o = engine.probe() => o,
        };
        engine.guard.signal(Signal::Probe(outcome), &engine.display);
    }
}

/// How a Redis call ended, for the breaker.
pub(super) fn outcome_of(e: &redis::RedisError) -> Outcome {
    if e.is_timeout() {
        Outcome::NoAnswer
    } else if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
        Outcome::Unreachable
    } else {
        // Redis answered, with an error: it is alive.
        Outcome::Answered
    }
}
