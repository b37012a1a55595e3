//! `PUT /admin/mode`: the operator forces a path or returns to `auto`, always with a reason, and a
//! forced mode always with an expiry so a maintenance override cannot become permanent.
//!
//! With `tenant`, the mode is that tenant's alone (every mode then needs an expiry, `auto`
//! included: it holds the tenant to health-based routing whatever the node-wide mode); the
//! mode `inherit` lifts it, back to the node-wide mode.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::failover::{Mode, ModeSetting};

/// Longest a forced mode may last.
pub(crate) const MAX_FORCED: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModeRequest {
    /// A tenant's id: the mode is that tenant's alone. Absent: the node-wide mode.
    #[serde(default)]
    pub tenant: Option<String>,
    pub mode: String,
    pub reason: String,
    /// Seconds as a number, or a string like "90s", "30m", "2h", "1d".
    pub expires_in: Option<serde_json::Value>,
}

/// What is wrong with a mode request, in words an operator can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ModeError {
    #[error("mode {0:?} is not one of auto, vendor, self, poll")]
    UnknownMode(String),
    #[error("reason must say why (1 to 500 characters); it is recorded in the audit trail")]
    NoReason,
    #[error("a forced mode needs expires_in (e.g. \"2h\"): it falls back to auto by itself")]
    NoExpiry,
    #[error("expires_in {0:?} is not a duration; use seconds or \"90s\", \"30m\", \"2h\", \"1d\"")]
    BadExpiry(String),
    #[error("expires_in is longer than the 7 days a forced mode may last")]
    TooLong,
    #[error("mode \"inherit\" lifts a tenant's own mode; name the tenant")]
    InheritWithoutTenant,
}

/// What a mode request changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModeChange {
    /// The node-wide mode.
    Node(ModeSetting),
    /// One tenant's own mode; `None` lifts it (back to the node-wide mode).
    Tenant {
        tenant: String,
        setting: Option<ModeSetting>,
    },
}

/// Parses "90", "90s", "30m", "2h", "1d".
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

impl ModeRequest {
    /// What this request changes, made by `by` at `now`.
    pub(crate) fn into_change(mut self, by: &str, now: Instant) -> Result<ModeChange, ModeError> {
        let Some(tenant) = self.tenant.take() else {
            if self.mode == "inherit" {
                return Err(ModeError::InheritWithoutTenant);
            }
            return self.into_setting(by, now).map(ModeChange::Node);
        };
        if self.mode == "inherit" {
            let reason = self.reason.trim();
            if reason.is_empty() || reason.chars().count() > 500 {
                return Err(ModeError::NoReason);
            }
            return Ok(ModeChange::Tenant {
                tenant,
                setting: None,
            });
        }
        // A tenant's `auto` is held like a forced mode: with its expiry.
        let setting = self.setting(by, now, true)?;
        Ok(ModeChange::Tenant {
            tenant,
            setting: Some(setting),
        })
    }

    /// The setting this request asks for, made by `by` at `now`.
    pub(crate) fn into_setting(self, by: &str, now: Instant) -> Result<ModeSetting, ModeError> {
        self.setting(by, now, false)
    }

    /// The setting asked for; `auto` too needs an expiry when `held`.
    fn setting(self, by: &str, now: Instant, held: bool) -> Result<ModeSetting, ModeError> {
        let mode: Mode = self
            .mode
            .parse()
            .map_err(|_| ModeError::UnknownMode(self.mode.clone()))?;
        let reason = self.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(ModeError::NoReason);
        }
        if mode == Mode::Auto && !held {
            return Ok(ModeSetting::auto(reason, by));
        }
        let expires_in = match &self.expires_in {
            None => return Err(ModeError::NoExpiry),
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| ModeError::BadExpiry(n.to_string()))?,
            Some(serde_json::Value::String(s)) => {
                parse_duration(s).ok_or_else(|| ModeError::BadExpiry(s.clone()))?
            }
            Some(other) => return Err(ModeError::BadExpiry(other.to_string())),
        };
        if expires_in > MAX_FORCED {
            return Err(ModeError::TooLong);
        }
        Ok(ModeSetting::forced(
            mode,
            reason,
            by,
            Some(now + expires_in),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: serde_json::Value) -> ModeRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        for bad in ["", "h", "2x", "-1s", "0"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_forced_mode_needs_a_reason_and_an_expiry() {
        let now = Instant::now();
        let ok = req(json!({"mode": "self", "reason": "vendor incident", "expires_in": "2h"}))
            .into_setting("alice", now)
            .unwrap();
        assert_eq!((ok.mode, ok.set_by.as_str()), (Mode::SelfHosted, "alice"));
        assert_eq!(ok.expires_at, Some(now + Duration::from_secs(7200)));
        let err = |v| req(v).into_setting("alice", now).unwrap_err();
        assert_eq!(
            err(json!({"mode": "self", "reason": "x"})),
            ModeError::NoExpiry
        );
        assert_eq!(
            err(json!({"mode": "self", "reason": " ", "expires_in": 60})),
            ModeError::NoReason
        );
        assert_eq!(
            err(json!({"mode": "sideways", "reason": "x"})),
            ModeError::UnknownMode("sideways".into())
        );
        assert_eq!(
            err(json!({"mode": "poll", "reason": "x", "expires_in": "8d"})),
            ModeError::TooLong
        );
        assert!(matches!(
            err(json!({"mode": "poll", "reason": "x", "expires_in": "soon"})),
            ModeError::BadExpiry(_)
        ));
        let auto = req(json!({"mode": "auto", "reason": "over"}))
            .into_setting("bob", now)
            .unwrap();
        assert_eq!((auto.mode, auto.expires_at), (Mode::Auto, None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenant_mode_always_expires_and_inherit_lifts_it() {
        let now = Instant::now();
        let change = |v| req(v).into_change("alice", now);
        let Ok(ModeChange::Tenant {
            tenant,
            setting: Some(poll),
        }) = change(json!({"tenant": "a", "mode": "poll", "reason": "x", "expires_in": 60}))
        else {
            panic!("a tenant's forced mode")
        };
        assert_eq!(tenant, "a");
        assert_eq!(
            (poll.mode, poll.expires_at),
            (Mode::Poll, Some(now + Duration::from_secs(60)))
        );
        let Ok(ModeChange::Tenant {
            setting: Some(auto),
            ..
        }) = change(json!({"tenant": "a", "mode": "auto", "reason": "x", "expires_in": "1h"}))
        else {
            panic!("a tenant's auto")
        };
        assert_eq!(
            (auto.mode, auto.expires_at),
            (Mode::Auto, Some(now + Duration::from_secs(3600)))
        );
        assert_eq!(
            change(json!({"tenant": "a", "mode": "auto", "reason": "x"})),
            Err(ModeError::NoExpiry)
        );
        assert_eq!(
            change(json!({"tenant": "a", "mode": "inherit", "reason": "over"})),
            Ok(ModeChange::Tenant {
                tenant: "a".into(),
                setting: None
            })
        );
        assert_eq!(
            change(json!({"mode": "inherit", "reason": "over"})),
            Err(ModeError::InheritWithoutTenant)
        );
        assert!(matches!(
            change(json!({"mode": "auto", "reason": "over"})),
            Ok(ModeChange::Node(_))
        ));
    }
}
