//! The life of a running node: readiness, the one cancellation that tells every long-lived
//! connection to go, and the tracker that lets shutdown wait for them within a limit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// Cancelled when connections must say goodbye (shutdown or drain).
    goodbye: CancellationToken,
    /// True once the node stops being ready; never goes back.
    draining: Arc<AtomicBool>,
    /// Every WebSocket session and long-lived stream holds a token of this tracker.
    tracker: TaskTracker,
    /// Milliseconds; changed by a configuration reload.
    reconnect_jitter_ms: Arc<AtomicU64>,
    /// Connections are told to go at random moments over this window (milliseconds), so a drain
    /// looks like normal churn to the nodes that take the clients. Changed by a reload.
    drain_window_ms: Arc<AtomicU64>,
}

impl Lifecycle {
    pub fn new(reconnect_jitter: Duration, drain_window: Duration) -> Self {
        Self {
            goodbye: CancellationToken::new(),
            draining: Arc::new(AtomicBool::new(false)),
            tracker: TaskTracker::new(),
            reconnect_jitter_ms: Arc::new(AtomicU64::new(ms(reconnect_jitter))),
            drain_window_ms: Arc::new(AtomicU64::new(ms(drain_window))),
        }
    }

    /// New reconnect jitter and drain window (a configuration reload); a drain already begun
    /// keeps the turns it gave out.
    pub fn set_timing(&self, reconnect_jitter: Duration, drain_window: Duration) {
        (self.reconnect_jitter_ms).store(ms(reconnect_jitter), Ordering::Relaxed);
        (self.drain_window_ms).store(ms(drain_window), Ordering::Relaxed);
    }

    /// Whether connections have been told to go (they then leave at their own turn).
    pub fn goodbye_requested(&self) -> bool {
        self.goodbye.is_cancelled()
    }

    /// A connection's turn within the drain window: a random delay, so a drain looks like churn.
    pub fn goodbye_delay(&self) -> Duration {
        random_below(Duration::from_millis(
            self.drain_window_ms.load(Ordering::Relaxed),
        ))
    }

    /// Long-lived connections still open.
    pub fn open_connections(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Readiness goes 503 and new streams are refused; open connections stay until told to go.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Readiness goes 503 and every open connection is told to reconnect elsewhere.
    pub fn begin_shutdown(&self) {
        self.set_draining();
        self.goodbye.cancel();
    }

    /// Resolves when connections must say goodbye.
    pub fn goodbye(&self) -> WaitForCancellationFuture<'_> {
        self.goodbye.cancelled()
    }

    pub fn goodbye_token(&self) -> CancellationToken {
        self.goodbye.clone()
    }

    /// Held by a long-lived connection for as long as it lives.
    pub fn track(&self) -> TaskTrackerToken {
        self.tracker.token()
    }

    /// Waits until every tracked connection has ended.
    pub async fn connections_closed(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// A reconnect delay spread over the configured window, so a restart looks like churn.
    pub fn retry_hint_ms(&self) -> u64 {
        let jitter = Duration::from_millis(self.reconnect_jitter_ms.load(Ordering::Relaxed));
        random_below(jitter).as_millis() as u64
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A random duration in `[0, max)`, whole milliseconds.
fn random_below(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    Duration::from_millis(if ms == 0 {
        0
    } else {
        rand::random::<u64>() % ms
    })
}
