//! A token bucket: how many events a tenant may publish now, refilled continuously at its rate.
//! Plain Rust with the time passed in, so tests drive it with a paused clock.

use std::time::Duration;

use tokio::time::Instant;

/// One tenant's publish budget. The rate and burst are not stored: they are read from the
/// configuration at each take, so a reload applies at once and the level carries over.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Events that may be taken now; at most the burst.
    level: f64,
    /// When `level` was last brought up to date.
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: u32, now: Instant) -> Self {
        Self {
            level: f64::from(burst),
            at: now,
        }
    }

    fn refill(&mut self, per_second: u32, burst: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * f64::from(per_second)).min(f64::from(burst));
        self.at = now;
    }

    /// Takes `n` events, or none and answers how long until `n` are there. A take larger than
    /// the burst (one event to more channels than the burst) passes on a full bucket and empties
    /// it: it could never pass otherwise, and the overshoot is bounded by the channels a publish
    /// may name.
    pub fn take(
        &mut self,
        n: u32,
        per_second: u32,
        burst: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        self.refill(per_second, burst, now);
        let n = f64::from(n.min(burst));
        if n <= self.level {
            self.level -= n;
            return Ok(());
        }
        let wait = (n - self.level) / f64::from(per_second.max(1));
        Err(Duration::from_secs_f64(wait))
    }

    /// Events that could be taken now (for status pages).
    pub fn level(&self, per_second: u32, burst: u32, now: Instant) -> f64 {
        let mut b = self.clone();
        b.refill(per_second, burst, now);
        b.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_spent_then_refilled_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(5, t0);
        for _ in 0..5 {
            b.take(1, 2, 5, t0).unwrap();
        }
        // Empty: one more event at 2/s is half a second away.
        assert_eq!(b.take(1, 2, 5, t0), Err(Duration::from_millis(500)));
        assert_eq!(b.take(3, 2, 5, t0), Err(Duration::from_millis(1500)));
        tokio::time::advance(Duration::from_millis(500)).await;
        let t1 = Instant::now();
        b.take(1, 2, 5, t1).unwrap();
        assert!(b.take(1, 2, 5, t1).is_err());
        // Never above the burst, however long it rests.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(b.level(2, 5, Instant::now()), 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_applies_to_the_level_carried_over() {
        let t0 = Instant::now();
        let mut b = Bucket::full(10, t0);
        b.take(10, 10, 10, t0).unwrap();
        // Lowered to 1/s with a burst of 2: the refill follows the new rate at once.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.level(1, 2, Instant::now()), 1.0);
        // A lower burst caps a fuller bucket; a take over the burst empties a full one.
        let mut full = Bucket::full(10, t0);
        full.take(3, 1, 2, Instant::now()).unwrap();
        assert_eq!(
            full.take(1, 1, 2, Instant::now()),
            Err(Duration::from_secs(1))
        );
    }
}
