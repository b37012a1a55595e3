//! Test support shared by the integration tests: the real vendor process, a fault-injecting
//! HTTP proxy, and small independent WebSocket clients for the Pusher and Ably protocols.

pub(crate) mod ably_client;
pub(crate) mod fault_proxy;
pub(crate) mod pusher_client;
pub(crate) mod sockudo;

use std::time::Duration;

/// Polls `check` every 10 ms until it is true; fails after `within` with `what`.
pub(crate) async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
