//! The `[audit]` section, validated into the audit trail's settings.

use std::time::Duration;

use serde::Deserialize;

use super::AuditConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) dir: String,
    queue: usize,
    max_segment_bytes: u64,
    max_segments: usize,
    max_age_secs: u64,
    flush_interval_ms: u64,
}

impl RawAudit {
    pub(super) fn validate(self, errs: &mut Vec<String>) -> AuditConfig {
        let config = AuditConfig {
            dir: self.dir.into(),
            queue: self.queue,
            max_segment_bytes: self.max_segment_bytes,
            max_segments: self.max_segments,
            max_age: Duration::from_secs(self.max_age_secs),
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            ..AuditConfig::default()
        };
        errs.extend(config.problems());
        config
    }
}
