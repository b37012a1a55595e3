//! The per-channel window of recent idempotency keys and the seq each one was published at.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// How long and how many keys a channel remembers.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyLimits {
    pub window: Duration,
    pub max_keys: usize,
}

/// Recent keys, expired by age and bounded by count (oldest forgotten first).
#[derive(Debug, Default)]
pub(crate) struct IdempotencyWindow {
    seqs: HashMap<Arc<str>, u64>,
    order: VecDeque<(Arc<str>, Instant)>,
}

impl IdempotencyWindow {
    /// The seq `id` was published at, if it is still remembered.
    pub(crate) fn get(
        &mut self,
        id: &str,
        now: Instant,
        limits: &IdempotencyLimits,
    ) -> Option<u64> {
        self.expire(now, limits);
        self.seqs.get(id).copied()
    }

    pub(crate) fn remember(
        &mut self,
        id: Arc<str>,
        seq: u64,
        now: Instant,
        limits: &IdempotencyLimits,
    ) {
        if limits.max_keys == 0 {
            return;
        }
        while self.order.len() >= limits.max_keys {
            self.forget_oldest();
        }
        self.seqs.insert(id.clone(), seq);
        self.order.push_back((id, now));
    }

    pub(crate) fn expire(&mut self, now: Instant, limits: &IdempotencyLimits) {
        while self
            .order
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > limits.window)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((id, _)) = self.order.pop_front() {
            self.seqs.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: IdempotencyLimits = IdempotencyLimits {
        window: Duration::from_secs(300),
        max_keys: 3,
    };

    #[tokio::test(start_paused = true)]
    async fn remembers_within_the_window_only() {
        let mut w = IdempotencyWindow::default();
        w.remember(Arc::from("a"), 1, Instant::now(), &LIMITS);
        assert_eq!(w.get("a", Instant::now(), &LIMITS), Some(1));
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(w.get("a", Instant::now(), &LIMITS), None);
        assert!(w.order.is_empty());
    }

    #[test]
    fn forgets_the_oldest_past_the_count() {
        let now = Instant::now();
        let mut w = IdempotencyWindow::default();
        for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            w.remember(Arc::from(id), i as u64 + 1, now, &LIMITS);
        }
        assert_eq!(w.order.len(), 3);
        assert_eq!(w.get("a", now, &LIMITS), None);
        assert_eq!(w.get("d", now, &LIMITS), Some(4));
    }
}
