//! The newest failure seen for each vendor, as an operator reads it: kept for `/admin/status`
//! (`last_error`), and logged at WARN with its cause when it is a configuration error new to
//! the vendor (a certificate not trusted, credentials refused), so such an error is never only
//! a lost canary at DEBUG, nor a line every round.

use tokio::time::Instant;

use crate::upstream::observation::{CanaryResult, Observation};

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

/// A vendor's last error, and what was last logged at WARN per source, so a vendor refused
/// for an hour logs its cause once per source (REST, canary), and again only after a success
/// or when the cause changes.
#[derive(Debug, Default)]
pub(super) struct ErrorTracker {
    last: Option<LastError>,
    /// The message last logged for publish (0) and canary (1) failures.
    warned: [Option<String>; 2],
}

impl ErrorTracker {
    /// Continues with `last` as the last error (a rebuilt side keeps it for status).
    pub(super) fn carried(last: Option<LastError>) -> Self {
        ErrorTracker {
            last,
            warned: [None, None],
        }
    }

    pub(super) fn last(&self) -> Option<&LastError> {
        self.last.as_ref()
    }

    /// Takes one observation; returns whether it logged a WARN.
    pub(super) fn observe(&mut self, observation: &Observation, vendor: &str) -> bool {
        let source = match observation {
            Observation::Request(_) => 0,
            Observation::Canary(_) => 1,
        };
        let Some(new) = LastError::of(observation) else {
            self.warned[source] = None;
            return false;
        };
        if new.fatal && self.warned[source].as_deref() != Some(new.message.as_str()) {
            tracing::warn!(
                vendor,
                source = new.source,
                kind = new.kind,
                "vendor {vendor}: {}",
                new.message
            );
            self.warned[source] = Some(new.message.clone());
            self.last = Some(new);
            return true;
        }
        self.last = Some(new);
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::observation::{CanaryFailure, CanaryObservation, RequestObservation};
    use crate::upstream::tls::TlsProblem;
    use crate::upstream::{ErrorClass, Priority};

    fn canary(result: CanaryResult) -> Observation {
        Observation::Canary(CanaryObservation {
            vendor: 0,
            at: Instant::now(),
            result,
        })
    }

    fn untrusted() -> Observation {
        canary(CanaryResult::Lost {
            failure: CanaryFailure::Tls {
                problem: TlsProblem::UnknownIssuer,
            },
        })
    }

    fn request(result: Result<(), ErrorClass>, message: Option<&str>) -> Observation {
        Observation::Request(RequestObservation {
            vendor: 0,
            priority: Priority::Realtime,
            attempt: 0,
            events: 1,
            latency: Duration::from_millis(3),
            at: Instant::now(),
            result,
            message: message.map(str::to_owned),
        })
    }

    #[test]
    fn a_fatal_cause_is_logged_once_per_source_until_a_success() {
        let mut errors = ErrorTracker::default();
        let tls = Err(ErrorClass::Tls);
        let logged: Vec<bool> = [
            untrusted(),
            untrusted(),
            request(
                tls,
                Some("TLS certificate not trusted (UnknownIssuer): ... (detail)"),
            ),
            untrusted(),
            request(
                tls,
                Some("TLS certificate not trusted (UnknownIssuer): ... (detail)"),
            ),
            // Not fatal: kept as the last error, never logged here.
            request(Err(ErrorClass::Timeout), Some("no answer within 2s")),
            canary(CanaryResult::Arrived {
                latency: Duration::from_millis(5),
            }),
            untrusted(),
        ]
        .iter()
        .map(|o| errors.observe(o, "v"))
        .collect();
        assert_eq!(
            logged,
            [true, false, true, false, false, false, false, true]
        );
        let last = errors.last().expect("a last error");
        assert_eq!(
            (last.source, last.kind, last.fatal),
            ("canary", "tls", true)
        );
    }

    #[test]
    fn the_message_is_the_request_error_or_the_canary_failure() {
        let mut errors = ErrorTracker::default();
        errors.observe(&request(Err(ErrorClass::Config), Some("HTTP 401")), "v");
        let last = errors.last().unwrap();
        assert_eq!(
            (last.source, last.kind, last.fatal, last.message.as_str()),
            ("publish", "config", true, "HTTP 401")
        );
        errors.observe(&request(Ok(()), None), "v");
        assert_eq!(
            errors.last().map(|e| e.kind),
            Some("config"),
            "a success keeps the last error"
        );
        errors.observe(&untrusted(), "v");
        assert!(errors
            .last()
            .unwrap()
            .message
            .starts_with("TLS certificate not trusted (UnknownIssuer): set vendors.ca_file"));
    }
}
