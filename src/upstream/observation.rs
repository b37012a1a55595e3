//! What the vendor side reports to the failover driver: one [`Observation`] per vendor request
//! (from the lanes) and per canary round. Plain data; the driver turns it into health.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::upstream::error::{ErrorClass, TlsProblem, VendorError};
use crate::upstream::priority::Priority;

/// A fact about one vendor, identified by its index in the configured priority order.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    Request(RequestObservation),
    Canary(CanaryObservation),
}

impl Observation {
    pub fn vendor(&self) -> usize {
        match self {
            Observation::Request(r) => r.vendor,
            Observation::Canary(c) => c.vendor,
        }
    }
}

/// One publish request (one attempt) made by a lane.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestObservation {
    pub vendor: usize,
    pub priority: Priority,
    /// 0 for the first attempt, 1 for the retry.
    pub attempt: u8,
    /// Events the request carried.
    pub events: usize,
    /// From sending to the answer (or to the deadline).
    pub latency: Duration,
    /// When the request finished.
    pub at: Instant,
    pub result: Result<(), ErrorClass>,
    /// For a failure, the error as an operator reads it (no URL, no secret), for
    /// `/admin/status` and the log. `None` for a success.
    pub message: Option<String>,
}

/// One canary round.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryObservation {
    pub vendor: usize,
    /// When the round finished.
    pub at: Instant,
    pub result: CanaryResult,
}

/// How a canary round ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CanaryResult {
    /// Published and received on the vendor's realtime connection within the deadline.
    Arrived {
        #[serde(serialize_with = "as_millis", deserialize_with = "from_millis")]
        latency: Duration,
    },
    /// Not received within the deadline, for this reason.
    Lost { failure: CanaryFailure },
}

/// Why a canary was not received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum CanaryFailure {
    /// The realtime connection was not subscribed within the deadline.
    NotSubscribed,
    /// The realtime side refused us (bad key, unknown app): an operator must act.
    Refused,
    /// The REST publish failed (time-out included).
    PublishFailed { class: ErrorClass },
    /// The REST publish succeeded but the event never arrived: the vendor is dropping deliveries.
    NotDelivered,
    /// The TLS handshake (realtime or REST) failed: a configuration error an operator must fix.
    Tls { problem: TlsProblem },
}

impl CanaryFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryFailure::NotSubscribed => "not_subscribed",
            CanaryFailure::Refused => "refused",
            CanaryFailure::PublishFailed { .. } => "publish_failed",
            CanaryFailure::NotDelivered => "not_delivered",
            CanaryFailure::Tls { .. } => "tls",
        }
    }

    /// A failed canary publish.
    pub fn of_publish(error: &VendorError) -> CanaryFailure {
        match error {
            VendorError::Tls { problem, .. } => CanaryFailure::Tls { problem: *problem },
            e => CanaryFailure::PublishFailed { class: e.class() },
        }
    }

    /// Whether this failure alone means the vendor cannot work until an operator acts.
    pub fn is_fatal(self) -> bool {
        match self {
            CanaryFailure::Refused | CanaryFailure::Tls { .. } => true,
            CanaryFailure::PublishFailed { class } => class.is_fatal(),
            CanaryFailure::NotSubscribed | CanaryFailure::NotDelivered => false,
        }
    }
}

/// What an operator reads about a lost canary.
impl std::fmt::Display for CanaryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CanaryFailure::NotSubscribed => {
                f.write_str("canary: the vendor's realtime connection did not subscribe in time")
            }
            CanaryFailure::Refused => f.write_str(
                "canary: the vendor's realtime side refused understudy (bad key, unknown or disabled app)",
            ),
            CanaryFailure::PublishFailed { class } => {
                write!(f, "canary: the publish failed ({class})")
            }
            CanaryFailure::NotDelivered => {
                f.write_str("canary: published but not delivered within the deadline")
            }
            CanaryFailure::Tls { problem } => problem.fmt(f),
        }
    }
}

pub(crate) fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}
