//! The engine's own metrics: names and handles, recorded through the `metrics` facade. The
//! recorder the admin listener installs turns them into `/metrics`; the engine names nothing of
//! the admin side.

use metrics::{counter, gauge, Counter, Gauge};

pub(crate) const ENGINE_RESYNC_TOTAL: &str = "understudy_engine_resyncs_total";
pub(crate) const ENGINE_ERRORS_TOTAL: &str = "understudy_engine_errors_total";
pub(crate) const ENGINE_BREAKER: &str = "understudy_engine_breaker";
pub(crate) const ENGINE_BREAKER_TRANSITIONS_TOTAL: &str =
    "understudy_engine_breaker_transitions_total";
pub(crate) const ENGINE_BREAKER_REFUSED_TOTAL: &str = "understudy_engine_breaker_refused_total";

/// Handles of the engine's metrics.
pub(crate) struct EngineMetrics;

impl EngineMetrics {
    /// A mirrored channel found a gap or a new epoch in what Redis sent and was reloaded.
    pub(crate) fn engine_resync() -> Counter {
        counter!(ENGINE_RESYNC_TOTAL)
    }

    /// A call to the shared engine failed or timed out (`op`: publish, load).
    pub(crate) fn engine_error(op: &'static str) -> Counter {
        counter!(ENGINE_ERRORS_TOTAL, "op" => op)
    }

    /// 1 for the publish breaker's current state (`healthy`, `tripped`), 0 for the other.
    pub(crate) fn engine_breaker(state: &'static str) -> Gauge {
        gauge!(ENGINE_BREAKER, "state" => state)
    }

    /// The publish breaker entered `to`.
    pub(crate) fn engine_breaker_transition(to: &'static str) -> Counter {
        counter!(ENGINE_BREAKER_TRANSITIONS_TOTAL, "to" => to)
    }

    /// A publish refused by the tripped breaker without trying Redis.
    pub(crate) fn engine_breaker_refused() -> Counter {
        counter!(ENGINE_BREAKER_REFUSED_TOTAL)
    }
}
