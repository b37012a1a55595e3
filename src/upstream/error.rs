//! Vendor errors: what went wrong ([`ErrorClass`]), who failed ([`Party`]) and whether a retry
//! is allowed ([`Retry`]). Adapters produce a [`VendorError`]; the lanes and health only look at
//! its class, party and retry.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The kind of failure, coarse enough to be a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// No answer within the deadline. The outcome is unknown: the event may still be delivered.
    Timeout,
    /// Could not open a connection (refused, unreachable, DNS, connect time-out). Not delivered.
    Connect,
    /// The connection broke after the request was sent. Outcome unknown.
    Transport,
    /// The vendor answered 5xx (or Ably 500xx/503xx).
    Unavailable,
    /// The vendor answered 429 (or Ably 429xx).
    RateLimited,
    /// Ably token error 40140..=40149: renew the token, retry once.
    TokenExpired,
    /// Bad credentials, disabled app, unknown app (401, 403, Ably 40101/40160/403xx).
    Config,
    /// The TLS handshake failed: a certificate not trusted or not for this host, or no TLS on
    /// the port. A configuration error like `Config`, kept apart so it can be told and counted.
    Tls,
    /// The request itself is wrong (400, 413): understudy's bug, a retry cannot help.
    Request,
    /// An answer understudy cannot interpret (e.g. 2xx with an error body without a usable code,
    /// or an unexpected status).
    Protocol,
    /// understudy's own failure while building the request.
    Internal,
}

impl ErrorClass {
    /// Every class, in declaration order (for tables and counters).
    pub const ALL: [ErrorClass; 11] = [
        ErrorClass::Timeout,
        ErrorClass::Connect,
        ErrorClass::Transport,
        ErrorClass::Unavailable,
        ErrorClass::RateLimited,
        ErrorClass::TokenExpired,
        ErrorClass::Config,
        ErrorClass::Tls,
        ErrorClass::Request,
        ErrorClass::Protocol,
        ErrorClass::Internal,
    ];

    /// Stable snake_case name, used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connect => "connect",
            ErrorClass::Transport => "transport",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::TokenExpired => "token_expired",
            ErrorClass::Config => "config",
            ErrorClass::Tls => "tls",
            ErrorClass::Request => "request",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Internal => "internal",
        }
    }

    /// Who is at fault.
    pub fn party(self) -> Party {
        match self {
            ErrorClass::Timeout
            | ErrorClass::Connect
            | ErrorClass::Transport
            | ErrorClass::Unavailable
            | ErrorClass::RateLimited
            | ErrorClass::Protocol => Party::Vendor,
            ErrorClass::TokenExpired
            | ErrorClass::Config
            | ErrorClass::Tls
            | ErrorClass::Request => Party::Client,
            ErrorClass::Internal => Party::Internal,
        }
    }

    /// Whether and how a retry may be attempted.
    pub fn retry(self) -> Retry {
        match self {
            ErrorClass::Connect | ErrorClass::Unavailable | ErrorClass::RateLimited => Retry::Safe,
            ErrorClass::Timeout | ErrorClass::Transport => Retry::UnknownOutcome,
            ErrorClass::TokenExpired => Retry::AfterRenew,
            ErrorClass::Config
            | ErrorClass::Tls
            | ErrorClass::Request
            | ErrorClass::Protocol
            | ErrorClass::Internal => Retry::Never,
        }
    }

    /// Whether this failure says something about the vendor's health. A `Request` or
    /// `Internal` failure is understudy's problem and must not trip a failover.
    pub fn counts_against_vendor(self) -> bool {
        !matches!(self, ErrorClass::Request | ErrorClass::Internal)
    }

    /// Whether this failure alone means the vendor cannot work until an operator acts.
    pub fn is_fatal(self) -> bool {
        matches!(self, ErrorClass::Config | ErrorClass::Tls)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// understudy as the vendor's client: bad credentials or a bad request.
    Client,
    /// The vendor: down, slow, overloaded or answering nonsense.
    Vendor,
    /// understudy itself, before anything was sent.
    Internal,
}

/// Whether a failed request may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Never: the same request would fail the same way.
    Never,
    /// Safe: the vendor did not take the event.
    Safe,
    /// Allowed once, but the first attempt may have been delivered (a retry can duplicate on
    /// Pusher; Ably dedupes on the message `id`).
    UnknownOutcome,
    /// Allowed once after renewing the credentials (Ably token errors).
    AfterRenew,
}

/// A failed vendor request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VendorError {
    #[error("no answer within {after:?}; the event may or may not have been delivered")]
    Timeout { after: Duration },
    #[error("could not connect to the vendor: {0}")]
    Connect(String),
    #[error("connection to the vendor failed mid-request: {0}")]
    Transport(String),
    #[error("vendor refused the request ({class}, HTTP {status}{}): {message}", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    Rejected {
        class: ErrorClass,
        status: u16,
        /// The vendor's own error code (Ably `40142`, a Pusher-compatible `code`), if any.
        code: Option<u32>,
        message: String,
    },
    /// The TLS handshake failed; `detail` is the error chain (no URL, no secret).
    #[error("{problem} ({detail})")]
    Tls { problem: TlsProblem, detail: String },
    #[error("internal error before sending: {0}")]
    Internal(String),
}

impl VendorError {
    pub fn class(&self) -> ErrorClass {
        match self {
            VendorError::Timeout { .. } => ErrorClass::Timeout,
            VendorError::Connect(_) => ErrorClass::Connect,
            VendorError::Transport(_) => ErrorClass::Transport,
            VendorError::Rejected { class, .. } => *class,
            VendorError::Tls { .. } => ErrorClass::Tls,
            VendorError::Internal(_) => ErrorClass::Internal,
        }
    }

    pub fn party(&self) -> Party {
        self.class().party()
    }

    pub fn retry(&self) -> Retry {
        self.class().retry()
    }

    /// Whether one retry is allowed at all.
    pub fn retry_allowed(&self) -> bool {
        self.retry() != Retry::Never
    }

    /// Whether the event may have been delivered despite the error.
    pub fn outcome_unknown(&self) -> bool {
        self.retry() == Retry::UnknownOutcome
    }
}

/// Cuts a vendor-supplied message to a sane length for errors and logs.
pub(crate) fn truncate_message(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Why a TLS handshake with a vendor failed. Each needs an operator (or the vendor) to act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsProblem {
    /// The certificate chains to no trusted root: a private CA not in `vendors.ca_file`.
    UnknownIssuer,
    /// The certificate does not name the host of the vendor URL.
    NotValidForName,
    Expired,
    NotValidYet,
    Revoked,
    /// Any other refusal of the certificate (bad encoding or signature, wrong purpose).
    BadCertificate,
    /// The handshake itself failed: often a plain port with `tls=true`.
    Handshake,
}

impl TlsProblem {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsProblem::UnknownIssuer => "unknown_issuer",
            TlsProblem::NotValidForName => "not_valid_for_name",
            TlsProblem::Expired => "expired",
            TlsProblem::NotValidYet => "not_valid_yet",
            TlsProblem::Revoked => "revoked",
            TlsProblem::BadCertificate => "bad_certificate",
            TlsProblem::Handshake => "handshake",
        }
    }
}

/// What an operator reads: the problem, its rustls name, and what to do.
impl fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsProblem::UnknownIssuer => "TLS certificate not trusted (UnknownIssuer): set vendors.ca_file (UNDERSTUDY_VENDOR_CA_FILE) to a PEM bundle holding the CA that signed the vendor's certificate",
            TlsProblem::NotValidForName => "TLS certificate not valid for the vendor's host (NotValidForName): the host of the vendor URL must be in the certificate's subjectAltName (an IP address needs an IP entry)",
            TlsProblem::Expired => "TLS certificate expired (Expired): the vendor must renew it, or this machine's clock is wrong",
            TlsProblem::NotValidYet => "TLS certificate not valid yet (NotValidYet): this machine's clock is probably wrong",
            TlsProblem::Revoked => "TLS certificate revoked (Revoked): the vendor must replace it",
            TlsProblem::BadCertificate => "TLS certificate refused (BadCertificate): it is malformed or not meant for a server",
            TlsProblem::Handshake => "TLS handshake failed (Handshake): is the vendor URL's port a TLS port? Use tls=false for a plain one",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties_and_retries_follow_the_class() {
        let cases = [
            (ErrorClass::Timeout, Party::Vendor, Retry::UnknownOutcome),
            (ErrorClass::Connect, Party::Vendor, Retry::Safe),
            (ErrorClass::Transport, Party::Vendor, Retry::UnknownOutcome),
            (ErrorClass::Unavailable, Party::Vendor, Retry::Safe),
            (ErrorClass::RateLimited, Party::Vendor, Retry::Safe),
            (ErrorClass::TokenExpired, Party::Client, Retry::AfterRenew),
            (ErrorClass::Config, Party::Client, Retry::Never),
            (ErrorClass::Tls, Party::Client, Retry::Never),
            (ErrorClass::Request, Party::Client, Retry::Never),
            (ErrorClass::Protocol, Party::Vendor, Retry::Never),
            (ErrorClass::Internal, Party::Internal, Retry::Never),
        ];
        for (class, party, retry) in cases {
            assert_eq!(class.party(), party, "{class}");
            assert_eq!(class.retry(), retry, "{class}");
        }
    }

    #[test]
    fn display_names_the_code() {
        let e = VendorError::Rejected {
            class: ErrorClass::Config,
            status: 401,
            code: Some(40101),
            message: "Invalid credentials".into(),
        };
        assert_eq!(
            e.to_string(),
            "vendor refused the request (config, HTTP 401, code 40101): Invalid credentials"
        );
        assert!(!e.retry_allowed());
        let t = VendorError::Timeout {
            after: Duration::from_secs(2),
        };
        assert!(t.retry_allowed() && t.outcome_unknown());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let long = "é".repeat(300);
        let cut = truncate_message(&long);
        assert!(cut.ends_with("...") && cut.len() <= 203);
    }
}
