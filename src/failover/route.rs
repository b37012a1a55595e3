//! Route selection. Pure: `route(mode, vendor states in priority order, self path, now)`.
//!
//! The ladder is primary vendor → secondary vendor → own broadcast (`self`) → `poll`:
//! - `auto`: the first `Healthy` vendor in priority order; if none, `self`; if the self path is
//!   unavailable (the node serves neither WebSocket nor SSE), `poll`.
//! - `vendor` (forced): the first `Healthy` vendor, else the primary whatever its health
//!   (the operator asked for it); `self` when no vendor is configured.
//! - `self` (forced): `self`, or `poll` when the self path is unavailable.
//! - `poll` (forced): `poll`.
//!
//! So `poll` is chosen only when forced, or when no vendor is usable and the self path is not.

use serde::Serialize;
use tokio::time::Instant;

use super::machine::State;
use super::mode::{Mode, ModeSetting};

/// Which path clients should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// The vendor at this index of the configured priority order.
    Vendor(usize),
    /// understudy's own WebSocket, then SSE.
    SelfHosted,
    Poll,
}

impl Path {
    /// The `route` field of `GET /v1/route`: `vendor`, `self` or `poll`.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Vendor(_) => "vendor",
            Path::SelfHosted => "self",
            Path::Poll => "poll",
        }
    }

    pub fn vendor(self) -> Option<usize> {
        match self {
            Path::Vendor(i) => Some(i),
            _ => None,
        }
    }
}

/// Whether understudy's own broadcast can take the clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfPath {
    #[default]
    Available,
    Unavailable,
}

/// Why this path was chosen (the `reason` of `GET /v1/route`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RouteReason {
    /// Auto mode, vendor `index` is the first healthy one (`index > 0`: those before it are not).
    VendorHealthy { index: usize },
    /// Auto mode, no vendor is healthy.
    NoHealthyVendor,
    /// Auto mode, no vendor configured.
    NoVendor,
    /// A forced mode chose this path.
    Forced { mode: Mode },
    /// Forced `vendor` mode while no vendor is healthy: the primary is used anyway.
    ForcedUnhealthyVendor,
    /// The self path was wanted but is unavailable.
    SelfUnavailable,
}

impl std::fmt::Display for RouteReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteReason::VendorHealthy { index: 0 } => f.write_str("vendor healthy"),
            RouteReason::VendorHealthy { index } => {
                write!(f, "vendor {index} healthy, preferred vendors are not")
            }
            RouteReason::NoHealthyVendor => f.write_str("no healthy vendor"),
            RouteReason::NoVendor => f.write_str("no vendor configured"),
            RouteReason::Forced { mode } => write!(f, "mode forced to {mode}"),
            RouteReason::ForcedUnhealthyVendor => {
                f.write_str("mode forced to vendor while no vendor is healthy")
            }
            RouteReason::SelfUnavailable => f.write_str("own broadcast unavailable"),
        }
    }
}

/// A route decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    pub path: Path,
    pub reason: RouteReason,
}

/// Picks the path for `mode` given each vendor's state, in priority order.
pub(crate) fn route(
    mode: &ModeSetting,
    vendors: &[State],
    self_path: SelfPath,
    now: Instant,
) -> Decision {
    let healthy = vendors.iter().position(|s| s.routable());
    let self_or_poll = |reason: RouteReason| match self_path {
        SelfPath::Available => Decision {
            path: Path::SelfHosted,
            reason,
        },
        SelfPath::Unavailable => Decision {
            path: Path::Poll,
            reason: RouteReason::SelfUnavailable,
        },
    };
    match mode.effective(now) {
        Mode::Poll => Decision {
            path: Path::Poll,
            reason: RouteReason::Forced { mode: Mode::Poll },
        },
        Mode::SelfHosted => self_or_poll(RouteReason::Forced {
            mode: Mode::SelfHosted,
        }),
        Mode::Vendor => match (healthy, vendors.is_empty()) {
            (Some(index), _) => Decision {
                path: Path::Vendor(index),
                reason: RouteReason::Forced { mode: Mode::Vendor },
            },
            (None, false) => Decision {
                path: Path::Vendor(0),
                reason: RouteReason::ForcedUnhealthyVendor,
            },
            (None, true) => self_or_poll(RouteReason::NoVendor),
        },
        Mode::Auto => match healthy {
            Some(index) => Decision {
                path: Path::Vendor(index),
                reason: RouteReason::VendorHealthy { index },
            },
            None if vendors.is_empty() => self_or_poll(RouteReason::NoVendor),
            None => self_or_poll(RouteReason::NoHealthyVendor),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use State::{Degraded, Down, Healthy, Recovering};

    fn auto() -> ModeSetting {
        ModeSetting::default()
    }

    fn forced(mode: Mode) -> ModeSetting {
        ModeSetting::forced(mode, "test", "ops", None)
    }

    #[tokio::test(start_paused = true)]
    async fn auto_walks_the_ladder() {
        let now = Instant::now();
        let a = SelfPath::Available;
        let cases: &[(&[State], SelfPath, Path, RouteReason)] = &[
            (
                &[Healthy, Healthy],
                a,
                Path::Vendor(0),
                RouteReason::VendorHealthy { index: 0 },
            ),
            (
                &[Degraded, Healthy],
                a,
                Path::Vendor(1),
                RouteReason::VendorHealthy { index: 1 },
            ),
            (
                &[Recovering, Healthy],
                a,
                Path::Vendor(1),
                RouteReason::VendorHealthy { index: 1 },
            ),
            (
                &[Down, Degraded],
                a,
                Path::SelfHosted,
                RouteReason::NoHealthyVendor,
            ),
            (
                &[Down, Down],
                SelfPath::Unavailable,
                Path::Poll,
                RouteReason::SelfUnavailable,
            ),
            (&[], a, Path::SelfHosted, RouteReason::NoVendor),
            (
                &[Healthy],
                SelfPath::Unavailable,
                Path::Vendor(0),
                RouteReason::VendorHealthy { index: 0 },
            ),
        ];
        for (states, self_path, path, reason) in cases {
            assert_eq!(
                route(&auto(), states, *self_path, now),
                Decision {
                    path: *path,
                    reason: *reason
                },
                "{states:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn forced_modes() {
        let now = Instant::now();
        let a = SelfPath::Available;
        assert_eq!(
            route(&forced(Mode::Poll), &[Healthy], a, now).path,
            Path::Poll
        );
        assert_eq!(
            route(&forced(Mode::SelfHosted), &[Healthy], a, now).path,
            Path::SelfHosted
        );
        assert_eq!(
            route(
                &forced(Mode::SelfHosted),
                &[Healthy],
                SelfPath::Unavailable,
                now
            )
            .path,
            Path::Poll
        );
        assert_eq!(
            route(&forced(Mode::Vendor), &[Down, Healthy], a, now).path,
            Path::Vendor(1)
        );
        assert_eq!(
            route(&forced(Mode::Vendor), &[Down, Down], a, now),
            Decision {
                path: Path::Vendor(0),
                reason: RouteReason::ForcedUnhealthyVendor
            }
        );
        assert_eq!(
            route(&forced(Mode::Vendor), &[], a, now).path,
            Path::SelfHosted
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_forced_mode_routes_like_auto() {
        let now = Instant::now();
        let m = ModeSetting::forced(
            Mode::Poll,
            "maintenance",
            "ops",
            Some(now + Duration::from_secs(60)),
        );
        assert_eq!(
            route(&m, &[Healthy], SelfPath::Available, now).path,
            Path::Poll
        );
        let later = now + Duration::from_secs(60);
        assert_eq!(
            route(&m, &[Healthy], SelfPath::Available, later).path,
            Path::Vendor(0)
        );
    }
}
