//! Telling the operator about drops and failed writes without flooding the log: at most one ERROR
//! line per interval for each, carrying the counts since the previous line, and one WARN line when
//! writing recovers. The decisions are pure (`*_due`), so they are tested without a subscriber;
//! the log lines are emitted from the writer task, never from the hot path.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::outcome::Failure;

/// Counts since a failing spell began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Spell {
    /// Failed file operations.
    pub(super) failures: u64,
    /// Entries lost to them.
    pub(super) lost: u64,
}

#[derive(Debug)]
pub(super) struct Report {
    interval: Duration,
    dir: PathBuf,
    /// Drops (the running total) already told in a log line.
    drops_told: u64,
    last_drop_line: Option<Instant>,
    /// Failures and lost entries not yet told in a log line.
    untold: Spell,
    last_failure_line: Option<Instant>,
    /// Counts since writing last succeeded; `None` while writing works.
    spell: Option<Spell>,
}

impl Report {
    pub(super) fn new(interval: Duration, dir: PathBuf) -> Self {
        Self {
            interval,
            dir,
            drops_told: 0,
            last_drop_line: None,
            untold: Spell::default(),
            last_failure_line: None,
            spell: None,
        }
    }

    fn due(&self, last: Option<Instant>, now: Instant) -> bool {
        last.is_none_or(|last| now.saturating_duration_since(last) >= self.interval)
    }

    /// Entries dropped since the last line about drops, when a line is due now (`total` is the
    /// running count of drops).
    pub(super) fn drops_due(&mut self, total: u64, now: Instant) -> Option<u64> {
        if total <= self.drops_told || !self.due(self.last_drop_line, now) {
            return None;
        }
        let new = total - self.drops_told;
        self.drops_told = total;
        self.last_drop_line = Some(now);
        Some(new)
    }

    /// Log the drops if a line is due.
    pub(super) fn drops(&mut self, total: u64, queue: usize, now: Instant) {
        if let Some(dropped) = self.drops_due(total, now) {
            tracing::error!(
                dropped,
                total,
                queue,
                dir = %self.dir.display(),
                "audit entries dropped: the audit writer is not keeping up (slow or full disk?)"
            );
        }
    }

    /// Count a failed operation that lost `lost` entries; the counts untold so far when a line is
    /// due now.
    pub(super) fn failure_due(&mut self, lost: u64, now: Instant) -> Option<Spell> {
        let spell = self.spell.get_or_insert_with(Spell::default);
        spell.failures += 1;
        spell.lost += lost;
        self.untold.failures += 1;
        self.untold.lost += lost;
        if !self.due(self.last_failure_line, now) {
            return None;
        }
        self.last_failure_line = Some(now);
        Some(std::mem::take(&mut self.untold))
    }

    /// Count and, if a line is due, log a failed operation.
    pub(super) fn failure(&mut self, failure: &Failure, lost: u64, now: Instant) {
        if let Some(untold) = self.failure_due(lost, now) {
            tracing::error!(
                error = %failure,
                failures = untold.failures,
                lost = untold.lost,
                dir = %self.dir.display(),
                "audit log write failed; entries are being dropped until it works again \
                 (check free space and permissions)"
            );
        }
    }

    /// Entries reached the file: the failing spell (if any) is over; its counts.
    pub(super) fn recovered_due(&mut self) -> Option<Spell> {
        let spell = self.spell.take()?;
        self.untold = Spell::default();
        self.last_failure_line = None;
        Some(spell)
    }

    /// Log the end of a failing spell, if there was one.
    pub(super) fn recovered(&mut self) {
        if let Some(spell) = self.recovered_due() {
            tracing::warn!(
                failures = spell.failures,
                lost = spell.lost,
                dir = %self.dir.display(),
                "audit log writing works again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report::new(Duration::from_secs(10), PathBuf::from("/audit"))
    }

    #[test]
    fn drops_are_told_at_most_once_per_interval_with_the_count_since_the_last_line() {
        let mut report = report();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(report.drops_due(0, t0), None, "nothing dropped");
        assert_eq!(report.drops_due(3, t0), Some(3));
        assert_eq!(report.drops_due(500, t0 + s(1)), None);
        assert_eq!(report.drops_due(9000, t0 + s(9)), None);
        assert_eq!(report.drops_due(10_000, t0 + s(10)), Some(9_997));
        assert_eq!(report.drops_due(10_000, t0 + s(60)), None, "no new drops");
        assert_eq!(report.drops_due(10_001, t0 + s(61)), Some(1));
    }

    #[test]
    fn failures_are_told_at_most_once_per_interval_and_recovery_sums_the_spell() {
        let mut report = report();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(report.recovered_due(), None, "nothing failed");
        assert_eq!(
            report.failure_due(5, t0),
            Some(Spell {
                failures: 1,
                lost: 5
            })
        );
        for i in 1..=8 {
            assert_eq!(report.failure_due(2, t0 + s(i)), None);
        }
        assert_eq!(
            report.failure_due(1, t0 + s(10)),
            Some(Spell {
                failures: 9,
                lost: 17
            })
        );
        assert_eq!(report.failure_due(1, t0 + s(11)), None);
        assert_eq!(
            report.recovered_due(),
            Some(Spell {
                failures: 11,
                lost: 23
            })
        );
        assert_eq!(report.recovered_due(), None);
        // A new spell is told at once.
        assert!(report.failure_due(1, t0 + s(12)).is_some());
    }
}
