//! The rate at which the public listener admits new subscriber connections (WebSocket upgrades
//! and SSE streams): a token bucket, and the jittered wait a refused client is told to keep.
//! After a restart or a route change thousands of clients reconnect within a second; each one
//! admitted costs a subscribe and a history replay, so admitting them all at once would starve
//! the publish path they all share. Past the bucket a client is told to come back after a random
//! delay, so the retries spread over a window instead of arriving as a second storm.
//!
//! Pure: the clock is passed in and the random draw is a parameter.

pub(crate) use crate::config::RateLimit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

use crate::ops::metrics::{Metrics, Transport};

/// The bucket. `tokens` is fractional so that rates below one per poll interval still refill.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// Tokens in hand, at most `burst` as of `at`.
    tokens: f64,
    /// When `tokens` was last brought up to date; `None` before the first call (the bucket
    /// starts full).
    at: Option<Instant>,
}

impl Bucket {
    pub(crate) const fn new() -> Self {
        Self {
            tokens: 0.0,
            at: None,
        }
    }

    /// Takes a token, or answers how long until the next one.
    pub(crate) fn take(&mut self, now: Instant, limit: &RateLimit) -> Result<(), Duration> {
        if !limit.enabled() {
            return Ok(());
        }
        let burst = f64::from(limit.burst.max(1));
        let rate = f64::from(limit.per_second);
        self.tokens = match self.at {
            None => burst,
            Some(at) => {
                (self.tokens + now.saturating_duration_since(at).as_secs_f64() * rate).min(burst)
            }
        };
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// The wait a refused client is told: until the next token, plus `draw` (uniform in `[0, 1)`)
/// of the jitter window, in whole milliseconds and never under one.
pub(crate) fn retry_after(until_token: Duration, jitter: Duration, draw: f64) -> Duration {
    let spread = jitter.mul_f64(draw.clamp(0.0, 1.0));
    let ms = (until_token + spread).as_millis().max(1);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The listener's bucket, shared by every handler that opens a subscriber connection.
#[derive(Debug)]
pub struct NewSubscribers {
    bucket: Mutex<Bucket>,
    /// Subscriber connections admitted and refused since start, for `/admin/status`.
    admitted: AtomicU64,
    refused: AtomicU64,
}

/// What `/admin/status` shows of the bucket, beside the listener's caps.
#[derive(Debug, Serialize)]
pub struct NewSubscribersStatus {
    /// `null`: no limit.
    pub max_per_second: Option<u32>,
    pub burst: u32,
    pub jitter_ms: u64,
    pub admitted: u64,
    pub refused: u64,
}

impl Default for NewSubscribers {
    fn default() -> Self {
        Self {
            bucket: Mutex::new(Bucket::new()),
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

impl NewSubscribers {
    /// Admits a new subscriber connection, or answers how long it should wait before trying
    /// again (jittered). The lock is held for the arithmetic only.
    pub fn admit(&self, limit: &RateLimit, transport: Transport) -> Result<(), Duration> {
        let taken = self.bucket.lock().take(Instant::now(), limit);
        let (outcome, count) = match taken {
            Ok(()) => ("admitted", &self.admitted),
            Err(_) => ("refused", &self.refused),
        };
        count.fetch_add(1, Ordering::Relaxed);
        Metrics::new_subscriber(transport, outcome).increment(1);
        taken.map_err(|wait| retry_after(wait, limit.jitter, rand::random::<f64>()))
    }

    pub fn status(&self, limit: &RateLimit) -> NewSubscribersStatus {
        NewSubscribersStatus {
            max_per_second: limit.enabled().then_some(limit.per_second),
            burst: limit.burst,
            jitter_ms: limit.jitter.as_millis() as u64,
            admitted: self.admitted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limit(per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_second,
            burst,
            jitter: Duration::ZERO,
        }
    }

    fn run(b: &mut Bucket, n: usize, limit: &RateLimit) -> (usize, Vec<Duration>) {
        let mut admitted = 0;
        let mut waits = Vec::new();
        for _ in 0..n {
            match b.take(Instant::now(), limit) {
                Ok(()) => admitted += 1,
                Err(w) => waits.push(w),
            }
        }
        (admitted, waits)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_admitted_whole_then_the_rate_holds() {
        let l = limit(100, 50);
        let mut b = Bucket::new();
        let (admitted, waits) = run(&mut b, 80, &l);
        assert_eq!(admitted, 50, "the bucket starts full");
        assert_eq!(waits.len(), 30);
        assert!(waits.iter().all(|w| *w == 10 * MS), "{waits:?}");

        tokio::time::advance(Duration::from_millis(250)).await;
        let (admitted, _) = run(&mut b, 80, &l);
        assert_eq!(admitted, 25, "a quarter second at 100/s refills 25");

        // Over ten seconds of steady demand the bucket admits its rate, not the demand.
        let mut total = 0;
        for _ in 0..100 {
            tokio::time::advance(Duration::from_millis(100)).await;
            total += run(&mut b, 40, &l).0;
        }
        assert_eq!(total, 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_spell_refills_to_the_burst_and_no_more() {
        let l = limit(10, 5);
        let mut b = Bucket::new();
        assert_eq!(run(&mut b, 5, &l).0, 5);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(run(&mut b, 20, &l).0, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_until_the_next_token() {
        let l = limit(4, 1);
        let mut b = Bucket::new();
        assert!(b.take(Instant::now(), &l).is_ok());
        assert_eq!(b.take(Instant::now(), &l), Err(250 * MS));
        tokio::time::advance(100 * MS).await;
        assert_eq!(b.take(Instant::now(), &l), Err(150 * MS));
        tokio::time::advance(150 * MS).await;
        assert!(b.take(Instant::now(), &l).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_of_zero_admits_everyone() {
        let mut b = Bucket::new();
        assert_eq!(run(&mut b, 10_000, &limit(0, 1)).0, 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_rate_from_a_reload_applies_at_once() {
        let mut b = Bucket::new();
        assert_eq!(run(&mut b, 100, &limit(1000, 100)).0, 100);
        tokio::time::advance(Duration::from_secs(1)).await;
        // The tokens in hand are cut to the new burst.
        assert_eq!(run(&mut b, 100, &limit(10, 3)).0, 3);
    }

    #[test]
    fn the_jitter_spreads_waits_uniformly_over_its_window() {
        let j = Duration::from_secs(2);
        assert_eq!(retry_after(10 * MS, j, 0.0), 10 * MS);
        assert_eq!(retry_after(10 * MS, j, 0.5), 1010 * MS);
        assert_eq!(retry_after(10 * MS, j, 0.9999), 2009 * MS);
        assert_eq!(retry_after(10 * MS, Duration::ZERO, 0.7), 10 * MS);
        // Never zero: a client told 0 would come straight back.
        assert_eq!(retry_after(Duration::ZERO, Duration::ZERO, 0.0), MS);
        // Draws spread over the window: every tenth of it gets some of 1,000 draws.
        let mut tenths = [0usize; 10];
        for i in 0..1000 {
            let w = retry_after(Duration::ZERO, j, f64::from(i) / 1000.0);
            tenths[(w.as_millis() / 200) as usize] += 1;
        }
        assert_eq!(tenths, [100; 10]);
    }
}
