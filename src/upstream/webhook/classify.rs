//! Classifies a webhook receiver's answer. Pure: status and body in, outcome out.
//!
//! 2xx is success unless the body is a JSON object with an `"error"` member (a receiver that
//! answers 200 with an error body did not take the event).

use crate::upstream::error::truncate_message;
use crate::upstream::pusher::classify::class_of_status;
use crate::upstream::{ErrorClass, VendorError};

/// `Ok(())` when the receiver took the event, else the classified failure.
pub(crate) fn classify(status: u16, body: &[u8]) -> Result<(), VendorError> {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = || {
        let text = match error {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::from_utf8_lossy(body).into_owned(),
        };
        truncate_message(&text)
    };
    if (200..300).contains(&status) {
        if error.is_none() {
            return Ok(());
        }
        return Err(VendorError::Rejected {
            class: ErrorClass::Protocol,
            status,
            code: None,
            message: message(),
        });
    }
    let class = match status {
        410 => ErrorClass::Config,
        other => class_of_status(other).unwrap_or(ErrorClass::Protocol),
    };
    Err(VendorError::Rejected {
        class,
        status,
        code: None,
        message: message(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(u16, &str, Option<ErrorClass>)] = &[
            (200, "", None),
            (204, "", None),
            (202, r#"{"ok":true}"#, None),
            (200, r#"{"error":"queue full"}"#, Some(ErrorClass::Protocol)),
            (400, "bad", Some(ErrorClass::Request)),
            (413, "", Some(ErrorClass::Request)),
            (401, "", Some(ErrorClass::Config)),
            (403, "", Some(ErrorClass::Config)),
            (404, "", Some(ErrorClass::Config)),
            (410, "", Some(ErrorClass::Config)),
            (408, "", Some(ErrorClass::Unavailable)),
            (429, "", Some(ErrorClass::RateLimited)),
            (500, "", Some(ErrorClass::Unavailable)),
            (503, "", Some(ErrorClass::Unavailable)),
            (301, "", Some(ErrorClass::Protocol)),
        ];
        for (status, body, expected) in cases {
            assert_eq!(
                classify(*status, body.as_bytes()).err().map(|e| e.class()),
                *expected,
                "{status} {body}"
            );
        }
    }
}
