//! One audit entry: when, who, what, the details and the operator's reason. Its JSON form is one
//! line of the audit log and the item `GET /admin/audit` returns.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Something that happened and who made it happen.
///
/// Serialised as one JSON object with every field present (`details` and `reason` may be `null`),
/// e.g. `{"ts":1718000000000,"actor":"oncall-alice","action":"mode_changed",
/// "details":{"from":"auto","to":"self","expires_at":1718003600000},"reason":"vendor incident"}`.
///
/// Never put a secret in an entry: `actor` is the admin token's configured *name*, never the
/// token. As a safety net the writer redacts `details` values under secret-looking keys (see
/// [`AuditEntry::details`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Milliseconds since the Unix epoch, taken when the entry was made.
    pub ts: u64,
    /// The admin token's name, or [`AuditEntry::SYSTEM`] for what understudy did by itself.
    pub actor: String,
    pub action: AuditAction,
    /// What the action was about (`{"from": "auto", "to": "self"}`, a route, a window). Values
    /// under keys whose last word is secret, password, token, key, authorization or credential
    /// (`api_key`, `subscriber_secret`) are written as `"[redacted]"`.
    #[serde(default)]
    pub details: Value,
    /// Why, in the operator's (or the state machine's) words.
    #[serde(default)]
    pub reason: Option<String>,
}

impl AuditEntry {
    /// The actor of everything understudy does by itself.
    pub const SYSTEM: &'static str = "system";

    /// An entry made now by `actor` (an admin token's name).
    pub fn new(actor: impl Into<String>, action: AuditAction) -> Self {
        Self {
            ts: now_ms(),
            actor: actor.into(),
            action,
            details: Value::Null,
            reason: None,
        }
    }

    /// An entry made now by understudy itself.
    pub fn system(action: AuditAction) -> Self {
        Self::new(Self::SYSTEM, action)
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The same entry at another time (milliseconds since the Unix epoch).
    pub fn at(mut self, ts: u64) -> Self {
        self.ts = ts;
        self
    }
}

/// What happened. Serialised in snake_case (`mode_changed`). An action this build does not know
/// (written by a newer version) reads back as [`AuditAction::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// An operator forced a mode (details: from, to, expires_at).
    ModeChanged,
    /// A forced mode reached its expiry and control went back to the automatic route.
    ModeExpired,
    /// The failover state machine moved by itself (details: from, to; reason: why it tripped).
    TransitionAuto,
    /// The node began draining (by `POST /admin/drain` or a signal).
    Drain,
    /// A drain finished: the node was empty or the time limit was reached.
    DrainCompleted,
    /// A maintenance window was scheduled (details: start, end, mode).
    MaintenanceScheduled,
    /// A scheduled maintenance window was cancelled.
    MaintenanceCancelled,
    /// A maintenance window began and its mode took effect.
    MaintenanceStarted,
    /// A maintenance window ended and the previous mode came back.
    MaintenanceEnded,
    /// An admin call was refused (details: route, status, why). Never the credential presented.
    AdminRejected,
    /// A new configuration was loaded (details: the sections that changed, never their values).
    ConfigReloaded,
    /// A configuration reload failed validation; the running configuration stays.
    ConfigRejected,
    /// An action this build does not know, read back from a log written by another version.
    #[serde(other)]
    Other,
}

impl AuditAction {
    /// The snake_case name used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ModeChanged => "mode_changed",
            Self::ModeExpired => "mode_expired",
            Self::TransitionAuto => "transition_auto",
            Self::Drain => "drain",
            Self::DrainCompleted => "drain_completed",
            Self::MaintenanceScheduled => "maintenance_scheduled",
            Self::MaintenanceCancelled => "maintenance_cancelled",
            Self::MaintenanceStarted => "maintenance_started",
            Self::MaintenanceEnded => "maintenance_ended",
            Self::AdminRejected => "admin_rejected",
            Self::ConfigReloaded => "config_reloaded",
            Self::ConfigRejected => "config_rejected",
            Self::Other => "other",
        }
    }
}

/// Milliseconds since the Unix epoch, by the wall clock (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_entry_round_trips_through_its_json_line() {
        let entry = AuditEntry::new("oncall-alice", AuditAction::ModeChanged)
            .with_details(json!({"from": "auto", "to": "self", "expires_at": 1_718_003_600_000u64}))
            .with_reason("vendor incident #123")
            .at(1_718_000_000_000);
        let line = serde_json::to_string(&entry).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""action":"mode_changed""#), "{line}");
        let back: AuditEntry = serde_json::from_str(&line).unwrap();
        assert_eq!(back, entry);
    }

    #[test]
    fn every_field_is_written_even_when_empty() {
        let entry = AuditEntry::system(AuditAction::Drain).at(5);
        let value = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            value,
            json!({"ts": 5, "actor": "system", "action": "drain", "details": null, "reason": null})
        );
    }

    #[test]
    fn actions_serialise_as_their_snake_case_names() {
        for action in [
            AuditAction::ModeChanged,
            AuditAction::ModeExpired,
            AuditAction::TransitionAuto,
            AuditAction::Drain,
            AuditAction::DrainCompleted,
            AuditAction::MaintenanceScheduled,
            AuditAction::MaintenanceCancelled,
            AuditAction::MaintenanceStarted,
            AuditAction::MaintenanceEnded,
            AuditAction::AdminRejected,
            AuditAction::ConfigReloaded,
            AuditAction::ConfigRejected,
            AuditAction::Other,
        ] {
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                json!(action.as_str())
            );
            let back: AuditAction = serde_json::from_value(json!(action.as_str())).unwrap();
            assert_eq!(back, action);
        }
    }

    #[test]
    fn unknown_actions_and_missing_optional_fields_still_read() {
        let line = r#"{"ts":1,"actor":"system","action":"vendor_rotated_keys"}"#;
        let entry: AuditEntry = serde_json::from_str(line).unwrap();
        assert_eq!(entry.action, AuditAction::Other);
        assert_eq!(entry.details, Value::Null);
        assert_eq!(entry.reason, None);
    }

    #[test]
    fn new_entries_carry_the_current_time() {
        let before = now_ms();
        let entry = AuditEntry::system(AuditAction::ConfigReloaded);
        assert!(entry.ts >= before && entry.ts <= now_ms());
        assert!(before > 1_600_000_000_000, "the wall clock reads {before}");
    }
}
