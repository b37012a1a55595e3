//! The global retry budget: a token bucket shared by every lane of every vendor. Each first
//! attempt deposits `ratio` of a token, each retry withdraws a whole one, and the balance never
//! exceeds `burst`. Retries are therefore at most `burst + ratio × requests`, so an outage
//! cannot turn into a retry storm (the pattern of linkerd's and Finagle's retry budgets).

use std::sync::atomic::{AtomicU64, Ordering};

/// Retry budget settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudgetConfig {
    /// Share of requests that may be retried. Default 0.1 (10 %).
    pub ratio: f64,
    /// Starting and largest balance, in retries. Default 10.
    pub burst: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.1,
            burst: 10,
        }
    }
}

/// Balance kept in thousandths of a retry.
const UNIT: u64 = 1000;

/// The shared bucket. Lock-free.
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a retry; never above `max`.
    balance: AtomicU64,
    deposit: u64,
    max: u64,
}

impl RetryBudget {
    pub fn new(config: RetryBudgetConfig) -> Self {
        let ratio = if config.ratio.is_finite() {
            config.ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let max = u64::from(config.burst) * UNIT;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let deposit = (ratio * UNIT as f64).round() as u64;
        RetryBudget {
            balance: AtomicU64::new(max),
            deposit,
            max,
        }
    }

    /// Credits one first attempt.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + self.deposit).min(self.max))
            });
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                b.checked_sub(UNIT)
            })
            .is_ok()
    }

    /// Whole retries available now.
    pub fn available(&self) -> u64 {
        self.balance.load(Ordering::Relaxed) / UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_ten_percent() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            ratio: 0.1,
            burst: 3,
        });
        assert_eq!(budget.available(), 3);
        for _ in 0..3 {
            assert!(budget.try_withdraw());
        }
        assert!(!budget.try_withdraw());
        // 1000 failing requests during an outage allow 100 retries, not more.
        let mut retries = 0;
        for _ in 0..1000 {
            budget.deposit();
            if budget.try_withdraw() {
                retries += 1;
            }
        }
        assert_eq!(retries, 100);
    }

    #[test]
    fn the_balance_is_capped_at_the_burst() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            ratio: 0.5,
            burst: 2,
        });
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(budget.available(), 2);
    }

    #[test]
    fn zero_ratio_and_zero_burst_mean_no_retries() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            ratio: 0.0,
            burst: 0,
        });
        budget.deposit();
        assert!(!budget.try_withdraw());
        let nan = RetryBudget::new(RetryBudgetConfig {
            ratio: f64::NAN,
            burst: 0,
        });
        nan.deposit();
        assert!(!nan.try_withdraw());
    }
}
