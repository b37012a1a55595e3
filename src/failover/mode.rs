//! The operator's mode, kept apart from observed health: `auto` (default: follow health),
//! `vendor`, `self`, `poll` (forced). A forced mode carries who set it, why, and an optional
//! expiry after which it falls back to `auto` by itself, so a planned maintenance window
//! cannot become a permanent override.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::tenant::id::TenantId;

/// Tenants whose operator mode differs from the node-wide one, with the mode each is held to.
/// A tenant not listed (or whose setting has expired) follows the node-wide mode.
pub type TenantModes = std::collections::BTreeMap<TenantId, ModeSetting>;

/// The operator's mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Route by observed health.
    #[default]
    Auto,
    /// Force the vendor path.
    Vendor,
    /// Force understudy's own WebSocket/SSE broadcast.
    #[serde(rename = "self")]
    SelfHosted,
    /// Tell clients to poll.
    Poll,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Vendor => "vendor",
            Mode::SelfHosted => "self",
            Mode::Poll => "poll",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown mode name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode `{0}` (expected auto, vendor, self or poll)")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Mode::Auto),
            "vendor" => Ok(Mode::Vendor),
            "self" => Ok(Mode::SelfHosted),
            "poll" => Ok(Mode::Poll),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

/// The mode as the operator set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeSetting {
    pub mode: Mode,
    /// Why (free text from the operator, e.g. "vendor incident").
    pub reason: String,
    /// Who (the admin token's name; `config` for the start-up default).
    pub set_by: String,
    /// When a forced mode falls back to `auto`; `None` means until changed.
    pub expires_at: Option<Instant>,
}

impl Default for ModeSetting {
    fn default() -> Self {
        ModeSetting::auto("default", "config")
    }
}

impl ModeSetting {
    pub fn auto(reason: &str, set_by: &str) -> Self {
        ModeSetting {
            mode: Mode::Auto,
            reason: reason.into(),
            set_by: set_by.into(),
            expires_at: None,
        }
    }

    pub fn forced(mode: Mode, reason: &str, set_by: &str, expires_at: Option<Instant>) -> Self {
        ModeSetting {
            mode,
            reason: reason.into(),
            set_by: set_by.into(),
            expires_at,
        }
    }

    /// Whether the setting has expired at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// The mode in force at `now`: `auto` once expired.
    pub fn effective(&self, now: Instant) -> Mode {
        if self.expired(now) {
            Mode::Auto
        } else {
            self.mode
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_round_trip() {
        for mode in [Mode::Auto, Mode::Vendor, Mode::SelfHosted, Mode::Poll] {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
            assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{mode}\""));
        }
        assert!("selfhosted".parse::<Mode>().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_forced_mode_expires_to_auto() {
        let now = Instant::now();
        let m = ModeSetting::forced(
            Mode::SelfHosted,
            "vendor maintenance",
            "ops",
            Some(now + Duration::from_secs(7200)),
        );
        assert_eq!(m.effective(now), Mode::SelfHosted);
        assert_eq!(
            m.effective(now + Duration::from_secs(7199)),
            Mode::SelfHosted
        );
        assert_eq!(m.effective(now + Duration::from_secs(7200)), Mode::Auto);
        assert_eq!(
            ModeSetting::forced(Mode::Poll, "", "ops", None)
                .effective(now + Duration::from_secs(1 << 30)),
            Mode::Poll
        );
    }
}
