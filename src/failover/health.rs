//! Passive health: a rolling window of one vendor's request outcomes, and the [`Verdict`] the
//! state machine consumes. Pure: samples and `now` are passed in.
//!
//! A window is **bad** when, among the requests of the last `span` that say something about the
//! vendor (a `request` or `internal` error is understudy's problem and is ignored):
//! - the newest outcomes are `consecutive_failures` failures in a row, or
//! - at least `min_requests` requests and a failure share of at least `error_ratio`, or
//! - at least `min_requests` successes with a p99 latency of at least `slow_p99`.
//!
//! It is **fatal** when the newest outcome is a configuration error (401/403/40101...).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::upstream::error::ErrorClass;
use crate::upstream::observation::as_millis;

/// Window settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowConfig {
    /// How far back the window looks. Default 2 s.
    pub span: Duration,
    /// Requests needed before the error share or the p99 counts. Default 4.
    pub min_requests: usize,
    /// Failure share that makes a window bad. Default 0.5.
    pub error_ratio: f64,
    /// Failures in a row (newest first) that make a window bad. Default 3.
    pub consecutive_failures: usize,
    /// Success p99 latency that makes a window bad. Default 1 s.
    pub slow_p99: Duration,
    /// Samples kept at most (the oldest go first). Default 4096.
    pub max_samples: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            span: Duration::from_secs(2),
            min_requests: 4,
            error_ratio: 0.5,
            consecutive_failures: 3,
            slow_p99: Duration::from_secs(1),
            max_samples: 4096,
        }
    }
}

/// One request outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    pub at: Instant,
    pub latency: Duration,
    pub result: Result<(), ErrorClass>,
}

impl Sample {
    /// Whether the sample says anything about the vendor.
    fn counts(&self) -> bool {
        match self.result {
            Ok(()) => true,
            Err(class) => class.counts_against_vendor(),
        }
    }
}

/// What the window says now.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// No request in the window.
    Idle,
    Good,
    Bad {
        reason: BadReason,
    },
    /// The vendor refuses our credentials or app: it cannot work until an operator acts.
    Fatal {
        class: ErrorClass,
    },
}

/// Why a window is bad.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BadReason {
    ConsecutiveFailures {
        count: usize,
        class: ErrorClass,
    },
    ErrorRate {
        failures: usize,
        requests: usize,
        class: ErrorClass,
    },
    Slow {
        #[serde(rename = "p99_ms", serialize_with = "as_millis")]
        p99: Duration,
    },
}

/// Numbers behind a verdict, for `/admin/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WindowSummary {
    pub requests: usize,
    pub ok: usize,
    pub failures: usize,
    pub timeouts: usize,
    pub errors: BTreeMap<ErrorClass, usize>,
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

/// The rolling window of one vendor.
#[derive(Clone, Debug, Default)]
pub(crate) struct Window {
    /// Oldest first; at most `max_samples`.
    samples: VecDeque<Sample>,
}

impl Window {
    pub(crate) fn record(&mut self, sample: Sample, config: &WindowConfig) {
        self.samples.push_back(sample);
        while self.samples.len() > config.max_samples {
            self.samples.pop_front();
        }
    }

    /// Forgets everything (on entering `Recovering`, so old failures cannot trip it again).
    pub(crate) fn clear(&mut self) {
        self.samples.clear();
    }

    /// Drops samples older than the span.
    pub(crate) fn prune(&mut self, now: Instant, config: &WindowConfig) {
        while self
            .samples
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.at) > config.span)
        {
            self.samples.pop_front();
        }
    }

    fn recent<'a>(
        &'a self,
        now: Instant,
        config: &'a WindowConfig,
    ) -> impl DoubleEndedIterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| now.saturating_duration_since(s.at) <= config.span)
    }

    pub(crate) fn verdict(&self, now: Instant, config: &WindowConfig) -> Verdict {
        let counted: Vec<&Sample> = self.recent(now, config).filter(|s| s.counts()).collect();
        let Some(newest) = counted.last() else {
            return Verdict::Idle;
        };
        if let Err(class) = newest.result {
            if class.is_fatal() {
                return Verdict::Fatal { class };
            }
        }
        let trailing = counted
            .iter()
            .rev()
            .take_while(|s| s.result.is_err())
            .count();
        if trailing >= config.consecutive_failures.max(1) {
            let class = newest.result.err().unwrap_or(ErrorClass::Protocol);
            return Verdict::Bad {
                reason: BadReason::ConsecutiveFailures {
                    count: trailing,
                    class,
                },
            };
        }
        let requests = counted.len();
        let failures = counted.iter().filter(|s| s.result.is_err()).count();
        if requests >= config.min_requests
            && failures as f64 >= config.error_ratio * requests as f64
            && failures > 0
        {
            let class = most_common(counted.iter().filter_map(|s| s.result.err()))
                .unwrap_or(ErrorClass::Protocol);
            return Verdict::Bad {
                reason: BadReason::ErrorRate {
                    failures,
                    requests,
                    class,
                },
            };
        }
        let mut ok: Vec<Duration> = counted
            .iter()
            .filter(|s| s.result.is_ok())
            .map(|s| s.latency)
            .collect();
        if ok.len() >= config.min_requests {
            ok.sort_unstable();
            let p99 = percentile(&ok, 0.99);
            if p99 >= config.slow_p99 {
                return Verdict::Bad {
                    reason: BadReason::Slow { p99 },
                };
            }
        }
        Verdict::Good
    }

    pub(crate) fn summary(&self, now: Instant, config: &WindowConfig) -> WindowSummary {
        let mut summary = WindowSummary::default();
        let mut latencies = Vec::new();
        for s in self.recent(now, config) {
            summary.requests += 1;
            latencies.push(s.latency);
            match s.result {
                Ok(()) => summary.ok += 1,
                Err(class) => {
                    summary.failures += 1;
                    *summary.errors.entry(class).or_default() += 1;
                    if class == ErrorClass::Timeout {
                        summary.timeouts += 1;
                    }
                }
            }
        }
        if !latencies.is_empty() {
            latencies.sort_unstable();
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            summary.p50_ms = Some(ms(percentile(&latencies, 0.50)));
            summary.p99_ms = Some(ms(percentile(&latencies, 0.99)));
        }
        summary
    }
}

/// Nearest-rank percentile of a sorted, non-empty slice.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn most_common(classes: impl Iterator<Item = ErrorClass>) -> Option<ErrorClass> {
    let mut counts: BTreeMap<ErrorClass, usize> = BTreeMap::new();
    for c in classes {
        *counts.entry(c).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn window(now: Instant, outcomes: &[(u64, Result<(), ErrorClass>, u64)]) -> Window {
        // (ms ago, result, latency ms), oldest first
        let mut w = Window::default();
        for (ago, result, latency) in outcomes {
            w.record(
                Sample {
                    at: now - MS * (*ago as u32),
                    latency: MS * (*latency as u32),
                    result: *result,
                },
                &WindowConfig::default(),
            );
        }
        w
    }

    #[tokio::test(start_paused = true)]
    async fn verdicts() {
        tokio::time::advance(Duration::from_secs(60)).await;
        let now = Instant::now();
        let c = WindowConfig::default();
        let ok = Ok(());
        let e500 = Err(ErrorClass::Unavailable);
        let timeout = Err(ErrorClass::Timeout);

        assert_eq!(window(now, &[]).verdict(now, &c), Verdict::Idle);
        // Old samples are outside the span.
        assert_eq!(
            window(now, &[(5000, e500, 1), (4000, e500, 1), (3000, e500, 1)]).verdict(now, &c),
            Verdict::Idle
        );
        assert_eq!(
            window(now, &[(10, ok, 5), (5, ok, 5)]).verdict(now, &c),
            Verdict::Good
        );
        // Three failures in a row, newest last.
        assert_eq!(
            window(
                now,
                &[
                    (30, ok, 5),
                    (20, timeout, 2000),
                    (10, e500, 1),
                    (5, e500, 1)
                ]
            )
            .verdict(now, &c),
            Verdict::Bad {
                reason: BadReason::ConsecutiveFailures {
                    count: 3,
                    class: ErrorClass::Unavailable
                }
            }
        );
        // Half failed, not in a row.
        assert_eq!(
            window(
                now,
                &[(40, e500, 1), (30, ok, 5), (20, e500, 1), (10, ok, 5)]
            )
            .verdict(now, &c),
            Verdict::Bad {
                reason: BadReason::ErrorRate {
                    failures: 2,
                    requests: 4,
                    class: ErrorClass::Unavailable
                }
            }
        );
        // Below min_requests the share does not count.
        assert_eq!(
            window(now, &[(20, e500, 1), (10, ok, 5)]).verdict(now, &c),
            Verdict::Good
        );
        // Slow successes.
        assert_eq!(
            window(
                now,
                &[(40, ok, 5), (30, ok, 5), (20, ok, 5), (10, ok, 1500)]
            )
            .verdict(now, &c),
            Verdict::Bad {
                reason: BadReason::Slow { p99: MS * 1500 }
            }
        );
        // Our own bad requests do not count against the vendor.
        let req = Err(ErrorClass::Request);
        assert_eq!(
            window(
                now,
                &[(30, req, 1), (20, req, 1), (10, req, 1), (5, req, 1)]
            )
            .verdict(now, &c),
            Verdict::Idle
        );
        // A configuration error is fatal at once.
        assert_eq!(
            window(now, &[(20, ok, 5), (10, Err(ErrorClass::Config), 3)]).verdict(now, &c),
            Verdict::Fatal {
                class: ErrorClass::Config
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn summary_counts_classes_and_percentiles() {
        tokio::time::advance(Duration::from_secs(60)).await;
        let now = Instant::now();
        let c = WindowConfig::default();
        let mut outcomes: Vec<(u64, Result<(), ErrorClass>, u64)> =
            (1..=98).map(|i| (1000 - i, Ok(()), 10)).collect();
        outcomes.push((20, Err(ErrorClass::Timeout), 2000));
        outcomes.push((10, Err(ErrorClass::Unavailable), 3));
        let s = window(now, &outcomes).summary(now, &c);
        assert_eq!((s.requests, s.ok, s.failures, s.timeouts), (100, 98, 2, 1));
        assert_eq!(s.errors.get(&ErrorClass::Unavailable), Some(&1));
        assert_eq!((s.p50_ms, s.p99_ms), (Some(10), Some(10)));
        let mut w = window(now, &outcomes);
        w.prune(now + Duration::from_secs(5), &c);
        assert_eq!(w.summary(now + Duration::from_secs(5), &c).requests, 0);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(|i| MS * i).collect();
        assert_eq!(percentile(&v, 0.5), MS * 50);
        assert_eq!(percentile(&v, 0.99), MS * 99);
        assert_eq!(percentile(&v[..1], 0.99), MS);
    }
}
