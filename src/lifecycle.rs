//! The life of a running node: readiness, the one cancellation that tells every long-lived
//! connection to go, and the tracker that lets shutdown wait for them within a limit.

use std::sync::atomic::{AtomicBool, Ordering};
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
    reconnect_jitter: Duration,
}

impl Lifecycle {
    pub fn new(reconnect_jitter: Duration) -> Self {
        Self {
            goodbye: CancellationToken::new(),
            draining: Arc::new(AtomicBool::new(false)),
            tracker: TaskTracker::new(),
            reconnect_jitter,
        }
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
        let max = self.reconnect_jitter.as_millis() as u64;
        if max == 0 {
            0
        } else {
            rand::random::<u64>() % max
        }
    }
}
