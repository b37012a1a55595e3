//! The newest failure seen for each vendor, as an operator reads it: kept for `/admin/status`
//! (`last_error`), and logged at WARN with its cause when it is a configuration error new to
//! the vendor (a certificate not trusted, credentials refused), so such an error is never only
//! a lost canary at DEBUG.

use tokio::time::Instant;

use crate::failover::observation::{CanaryResult, Observation};

/// One failure of a vendor.
#[derive(Clone, Debug, PartialEq)]
pub struct LastError {
    pub at: Instant,
    /// `publish` (a lane's request) or `canary`.
    pub source: &'static str,
    /// The error class (`tls`, `timeout`...) or the canary's failure (`tls`, `not_delivered`...).
    pub kind: &'static str,
    /// Whether it alone keeps the vendor down until an operator (or the vendor) acts.
    pub fatal: bool,
    pub message: String,
}

impl LastError {
    /// The failure an observation reports, if it reports one.
    pub(super) fn of(observation: &Observation) -> Option<LastError> {
        match observation {
            Observation::Request(r) => {
                let class = r.result.err()?;
                Some(LastError {
                    at: r.at,
                    source: "publish",
                    kind: class.as_str(),
                    fatal: class.is_fatal(),
                    message: r.message.clone().unwrap_or_else(|| class.to_string()),
                })
            }
            Observation::Canary(c) => match c.result {
                CanaryResult::Arrived { .. } => None,
                CanaryResult::Lost { failure } => Some(LastError {
                    at: c.at,
                    source: "canary",
                    kind: failure.as_str(),
                    fatal: failure.is_fatal(),
                    message: failure.to_string(),
                }),
            },
        }
    }
}

/// Makes `new` the vendor's last error, logging it at WARN if it is fatal and says something
/// other than the one before (a vendor refused for an hour logs once, not every round).
pub(super) fn record(last: &mut Option<LastError>, new: LastError, vendor: &str) {
    let repeated = last.as_ref().is_some_and(|old| old.message == new.message);
    if new.fatal && !repeated {
        tracing::warn!(
            vendor,
            source = new.source,
            kind = new.kind,
            "vendor {vendor}: {}",
            new.message
        );
    }
    *last = Some(new);
}
