//! Operator settings shared by every node of one Redis engine: the mode and the maintenance
//! schedule. The node an operator talks to writes the setting to Redis and announces it; every
//! node (after any reconnect, too) reads it back and applies it, so one `understudy mode set` or
//! one maintenance window holds cluster-wide. With the memory engine there is nothing to share.
//!
//! When Redis cannot be reached, an operator's change still applies to the node it was sent to
//! (an outage is exactly when the mode must be forceable) and the answer says it was not shared.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::maintenance::Schedule;
use crate::core::event::now_ms;
use crate::engine::redis::RedisEngine;
use crate::engine::EngineError;
use crate::failover::{Mode, ModeSetting};
use crate::transport::AppState;

/// The mode as stored in Redis: expiry in wall-clock milliseconds, since nodes share no clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SharedMode {
    mode: Mode,
    reason: String,
    set_by: String,
    expires_at_ms: Option<u64>,
}

impl SharedMode {
    fn from_setting(s: &ModeSetting, now: Instant) -> Self {
        Self {
            mode: s.mode,
            reason: s.reason.clone(),
            set_by: s.set_by.clone(),
            expires_at_ms: s.expires_at.map(|at| super::status::unix_ms(at, now)),
        }
    }

    fn to_setting(&self, now: Instant) -> ModeSetting {
        let expires_at = self
            .expires_at_ms
            .map(|ms| now + Duration::from_millis(ms.saturating_sub(now_ms())));
        ModeSetting::forced(self.mode, &self.reason, &self.set_by, expires_at)
    }
}

/// Writes the operator's mode for every node. `Ok(false)`: memory engine, nothing to share.
pub(crate) async fn share_mode(
    state: &AppState,
    setting: &ModeSetting,
) -> Result<bool, EngineError> {
    let Some(redis) = state.engine.redis() else {
        return Ok(false);
    };
    let json = serde_json::to_string(&SharedMode::from_setting(setting, Instant::now()))
        .expect("a mode serialises");
    redis.announce(&redis.keys().mode(), &json).await?;
    Ok(true)
}

/// Changes the shared maintenance schedule with `change`, based on the copy in Redis, and applies
/// the result here. Concurrent changes from two nodes are serialised by a compare-and-set, so
/// neither is lost.
pub(crate) async fn change_schedule<T, E>(
    state: &AppState,
    mut change: impl FnMut(&mut Schedule) -> Result<T, E>,
) -> Result<Result<T, E>, EngineError> {
    let Some(redis) = state.engine.redis() else {
        let mut schedule = state.maintenance.schedule.lock();
        return Ok(change(&mut schedule));
    };
    let key = redis.keys().maintenance();
    for _ in 0..5 {
        let stored = redis.read_setting(&key).await?;
        let mut schedule = match &stored {
            Some(json) => serde_json::from_str(json).unwrap_or_default(),
            None => state.maintenance.schedule.lock().clone(),
        };
        let out = match change(&mut schedule) {
            Ok(out) => out,
            Err(e) => return Ok(Err(e)),
        };
        let json = serde_json::to_string(&schedule).expect("a schedule serialises");
        if swap(redis, &key, stored.as_deref(), &json).await? {
            state
                .maintenance
                .schedule
                .lock()
                .replace_keeping_started(schedule);
            state.maintenance.changed.notify_one();
            return Ok(Ok(out));
        }
    }
    Err(EngineError::Unavailable(
        "the maintenance schedule kept changing under this request; retry".into(),
    ))
}

/// Sets `key` to `new` if it still holds `old` (or is absent when `old` is `None`), and
/// announces the change.
async fn swap(
    redis: &RedisEngine,
    key: &str,
    old: Option<&str>,
    new: &str,
) -> Result<bool, EngineError> {
    const CAS: &str = r"
        local cur = redis.call('GET', KEYS[1])
        if (cur or '') ~= ARGV[1] then return 0 end
        redis.call('SET', KEYS[1], ARGV[2])
        redis.call('PUBLISH', ARGV[3], KEYS[1])
        return 1";
    let mut conn = redis.connection();
    let script = redis::Script::new(CAS);
    let mut call = script.prepare_invoke();
    call.key(key)
        .arg(old.unwrap_or(""))
        .arg(new)
        .arg(redis.keys().control());
    let swapped: i64 = redis
        .bounded("settings", call.invoke_async(&mut conn))
        .await?;
    Ok(swapped == 1)
}

/// Applies the shared settings whenever they may have changed (an announcement from any node, a
/// reconnect). Runs only with the Redis engine.
pub(crate) async fn run(state: AppState, cancel: CancellationToken) {
    let Some(redis) = state.engine.redis().cloned() else {
        return;
    };
    let mut changed = redis.watch_control();
    // The shared mode last taken. A change of the shared value is applied once; a mode this node
    // set by itself since (a maintenance window starting on time) is not undone by a reconnect.
    let mut taken: Option<String> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            r = changed.changed() => if r.is_err() { return },
        }
        if let Err(e) = apply(&state, &redis, &mut taken).await {
            warn!("shared settings not read: {e}; keeping this node's");
        }
    }
}

async fn apply(
    state: &AppState,
    redis: &RedisEngine,
    taken: &mut Option<String>,
) -> Result<(), EngineError> {
    let now = Instant::now();
    let mode = redis.read_setting(&redis.keys().mode()).await?;
    if mode.is_some() && mode != *taken {
        match serde_json::from_str::<SharedMode>(mode.as_deref().unwrap_or_default()) {
            Ok(shared) => {
                let current = SharedMode::from_setting(&state.failover.mode(), now);
                if !same_mode(&shared, &current) {
                    info!(mode = shared.mode.as_str(), by = %shared.set_by, "operator mode set on another node");
                    state.failover.set_mode(shared.to_setting(now));
                }
            }
            Err(e) => warn!("shared mode unreadable: {e}"),
        }
        *taken = mode;
    }
    if let Some(json) = redis.read_setting(&redis.keys().maintenance()).await? {
        match serde_json::from_str::<Schedule>(&json) {
            Ok(shared) => {
                let mut mine = state.maintenance.schedule.lock();
                if !mine.same_plan(&shared) {
                    mine.replace_keeping_started(shared);
                    drop(mine);
                    state.maintenance.changed.notify_one();
                }
            }
            Err(e) => warn!("shared maintenance schedule unreadable: {e}"),
        }
    }
    Ok(())
}

/// Equal but for rounding of the expiry between clocks.
fn same_mode(a: &SharedMode, b: &SharedMode) -> bool {
    let near = match (a.expires_at_ms, b.expires_at_ms) {
        (Some(x), Some(y)) => x.abs_diff(y) < 1_000,
        (x, y) => x == y,
    };
    a.mode == b.mode && a.reason == b.reason && a.set_by == b.set_by && near
}

/// How long a canary lease lives without renewal: a holder that dies is replaced within this.
const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often the lease is renewed or tried for.
const LEASE_EVERY: Duration = Duration::from_secs(1);

/// A canary result as shared between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct SharedCanary {
    node: String,
    vendor: usize,
    name: String,
    result: crate::failover::CanaryResult,
}

/// One node at a time probes the vendors with the canary: the holder of a lease renewed in
/// Redis (`SET NX PX`). It publishes each result; the others feed those results to their own
/// failover machines, so every node has one view of vendor health from one canary, while each
/// still judges its own vendor requests. When Redis cannot be reached every node probes for
/// itself, as a single node would.
pub(crate) async fn run_canary_lease(state: AppState, cancel: CancellationToken) {
    let Some(redis) = state.engine.redis().cloned() else {
        return;
    };
    if state.failover.vendor_names().is_empty() {
        return;
    }
    let failover = state.failover.clone();
    let mut held = false;
    failover.set_canary_active(false);
    let mut mine = failover.watch_canary();
    let mut theirs = redis.watch_canary();
    let mut tick = tokio::time::interval(LEASE_EVERY);
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                if held {
                    // Hand over at once rather than when the lease lapses.
                    let _ = release_lease(&redis).await;
                }
                return;
            }
            _ = tick.tick() => {
                // No Redis, no shared verdict: probe for ourselves.
                let now_held = take_lease(&redis).await.unwrap_or(true);
                if now_held != held {
                    info!(node = redis.node(), held = now_held, "canary lease");
                    held = now_held;
                }
                failover.set_canary_active(held);
            }
            got = mine.recv() => match got {
                Ok(canary) if held => share_canary(&redis, &failover, canary).await,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            got = theirs.recv() => match got {
                Ok(text) if !held => take_canary(&redis, &failover, &text),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
        }
    }
}

/// Takes or renews the lease; whether this node holds it.
async fn take_lease(redis: &RedisEngine) -> Result<bool, EngineError> {
    const LEASE: &str = r"
        local cur = redis.call('GET', KEYS[1])
        if cur == ARGV[1] then
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return 1
        elseif not cur then
          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
          return 1
        end
        return 0";
    let mut conn = redis.connection();
    let script = redis::Script::new(LEASE);
    let mut call = script.prepare_invoke();
    call.key(redis.keys().canary_lease())
        .arg(redis.node())
        .arg(LEASE_TTL.as_millis() as u64);
    let held: i64 = redis.bounded("lease", call.invoke_async(&mut conn)).await?;
    Ok(held == 1)
}

async fn release_lease(redis: &RedisEngine) -> Result<(), EngineError> {
    const RELEASE: &str = r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
        return 0";
    let mut conn = redis.connection();
    let script = redis::Script::new(RELEASE);
    let mut call = script.prepare_invoke();
    call.key(redis.keys().canary_lease()).arg(redis.node());
    redis
        .bounded("lease", call.invoke_async::<i64>(&mut conn))
        .await
        .map(|_| ())
}

async fn share_canary(
    redis: &RedisEngine,
    failover: &crate::failover::Failover,
    canary: crate::failover::CanaryObservation,
) {
    let Some(name) = failover.vendor_names().get(canary.vendor).cloned() else {
        return;
    };
    let shared = SharedCanary {
        node: redis.node().to_string(),
        vendor: canary.vendor,
        name,
        result: canary.result,
    };
    let json = serde_json::to_string(&shared).expect("a canary result serialises");
    if let Err(e) = redis
        .publish_message(&redis.keys().canary_results(), &json)
        .await
    {
        tracing::debug!("canary result not shared: {e}");
    }
}

fn take_canary(redis: &RedisEngine, failover: &crate::failover::Failover, text: &str) {
    let Ok(shared) = serde_json::from_str::<SharedCanary>(text) else {
        warn!("unreadable shared canary result");
        return;
    };
    // Only results about the same vendor at the same place in this node's priority order.
    let same = failover.vendor_names().get(shared.vendor) == Some(&shared.name);
    if shared.node != redis.node() && same {
        failover.observe_canary(crate::failover::CanaryObservation {
            vendor: shared.vendor,
            at: Instant::now(),
            result: shared.result,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_mode_survives_the_trip_through_redis_with_its_expiry() {
        let now = Instant::now();
        let set = ModeSetting::forced(
            Mode::SelfHosted,
            "vendor incident",
            "alice",
            Some(now + Duration::from_secs(600)),
        );
        let shared = SharedMode::from_setting(&set, now);
        let json = serde_json::to_string(&shared).unwrap();
        let back: SharedMode = serde_json::from_str(&json).unwrap();
        let setting = back.to_setting(now);
        assert_eq!(setting.mode, Mode::SelfHosted);
        assert_eq!(
            (setting.reason.as_str(), setting.set_by.as_str()),
            ("vendor incident", "alice")
        );
        let left = setting.expires_at.unwrap() - now;
        assert!(
            left > Duration::from_secs(598) && left <= Duration::from_secs(600),
            "{left:?}"
        );
        assert!(same_mode(&back, &SharedMode::from_setting(&setting, now)));
        let auto = SharedMode::from_setting(&ModeSetting::auto("over", "bob"), now);
        assert!(!same_mode(&back, &auto));
        assert_eq!(auto.to_setting(now).expires_at, None);
    }
}
