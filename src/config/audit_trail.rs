//! The audit trail's settings, their defaults (in one place) and their validation.

use std::path::PathBuf;
use std::time::Duration;

/// Where and how the audit trail is written. `AuditConfig::default()` holds every default; the
/// config file keys are listed in the [module documentation](super).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Directory holding `audit.log` (the active segment) and `audit.NNNNNN.log` (rotated ones).
    /// Created by the writer on its first write. Default `./data/audit`.
    pub dir: PathBuf,
    /// Entries that may wait for the writer; one more is dropped and counted. Default 1024.
    pub queue: usize,
    /// The active segment is rotated before a line would take it past this size. Default 8 MiB.
    pub max_segment_bytes: u64,
    /// Segments kept, the active one included; the oldest are deleted whole. Default 20.
    pub max_segments: usize,
    /// Rotated segments last written longer ago than this are deleted whole. Default 30 days.
    pub max_age: Duration,
    /// Buffered lines reach the file at least this often while entries keep arriving (and at
    /// once whenever the queue runs empty). Default 1 s.
    pub flush_interval: Duration,
    /// Drops and write failures are logged at ERROR at most once per this interval, with the
    /// counts since the previous log line. Default 10 s.
    pub report_interval: Duration,
}

impl AuditConfig {
    pub const DEFAULT_DIR: &'static str = "./data/audit";
    pub const DEFAULT_QUEUE: usize = 1024;
    pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
    pub const DEFAULT_MAX_SEGMENTS: usize = 20;
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
    pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(10);

    /// The defaults with another directory.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }

    /// Every problem with these settings, one sentence each, ready to be collected with the rest
    /// of the configuration's problems. Empty when the settings are usable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.dir.as_os_str().is_empty() {
            problems.push("audit.dir must not be empty".to_string());
        }
        if self.queue == 0 {
            problems.push("audit.queue must be at least 1".to_string());
        }
        if self.max_segment_bytes < 4096 {
            problems.push(format!(
                "audit.max_segment_bytes is {}; it must be at least 4096",
                self.max_segment_bytes
            ));
        }
        if self.max_segments == 0 {
            problems.push("audit.max_segments must be at least 1 (the active segment)".into());
        }
        if self.max_age.is_zero() {
            problems.push("audit.max_age_secs must be at least 1".to_string());
        }
        if self.flush_interval.is_zero() {
            problems.push("audit.flush_interval_ms must be at least 1".to_string());
        }
        if self.report_interval.is_zero() {
            problems.push("audit.report_interval_ms must be at least 1".to_string());
        }
        problems
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(Self::DEFAULT_DIR),
            queue: Self::DEFAULT_QUEUE,
            max_segment_bytes: Self::DEFAULT_MAX_SEGMENT_BYTES,
            max_segments: Self::DEFAULT_MAX_SEGMENTS,
            max_age: Self::DEFAULT_MAX_AGE,
            flush_interval: Self::DEFAULT_FLUSH_INTERVAL,
            report_interval: Self::DEFAULT_REPORT_INTERVAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = AuditConfig::default();
        assert!(config.problems().is_empty());
        assert_eq!(config.dir, PathBuf::from("./data/audit"));
        assert_eq!(config.queue, 1024);
        assert_eq!(config.max_segment_bytes, 8 * 1024 * 1024);
        assert_eq!(config.max_segments, 20);
        assert_eq!(config.max_age, Duration::from_secs(2_592_000));
    }

    #[test]
    fn every_problem_is_listed() {
        let config = AuditConfig {
            dir: PathBuf::new(),
            queue: 0,
            max_segment_bytes: 10,
            max_segments: 0,
            max_age: Duration::ZERO,
            flush_interval: Duration::ZERO,
            report_interval: Duration::ZERO,
        };
        assert_eq!(config.problems().len(), 7, "{:?}", config.problems());
    }
}
