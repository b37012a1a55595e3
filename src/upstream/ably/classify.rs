//! Classifies an Ably REST answer. Pure: status and body in, outcome out.
//!
//! Errors look like `{"error":{"code":40142,"statusCode":401,"message":".."}}`; the code is
//! more specific than the status and wins (VENDORS.md §1.7). A 2xx carrying such an error body
//! is a failure. Any other 2xx is success (`{"channel","messageId"}` or `{"serials":[..]}`).

use crate::upstream::error::truncate_message;
use crate::upstream::{ErrorClass, VendorError};

/// `Ok(())` when Ably took the message, else the classified failure.
pub fn classify(status: u16, body: &[u8]) -> Result<(), VendorError> {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let error_object = error.filter(|e| e.is_object());
    let code = error_object
        .and_then(|e| e.get("code"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|c| u32::try_from(c).ok());
    let message = error_object
        .and_then(|e| e.get("message"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .or_else(|| error.and_then(serde_json::Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());

    if (200..300).contains(&status) && error.is_none() {
        return Ok(());
    }
    let class = code
        .and_then(class_of_code)
        .or_else(|| (!(200..300).contains(&status)).then(|| class_of_status(status)))
        .unwrap_or(ErrorClass::Protocol);
    Err(VendorError::Rejected {
        class,
        status,
        code,
        message: truncate_message(&message),
    })
}

/// An Ably error code (5 digits; the first three are the HTTP status).
pub fn class_of_code(code: u32) -> Option<ErrorClass> {
    Some(match code {
        40140..=40149 => ErrorClass::TokenExpired,
        40100..=40199 | 40300..=40399 | 40400..=40499 => ErrorClass::Config,
        40000..=40099 | 41300..=41399 | 42200..=42299 => ErrorClass::Request,
        42900..=42999 => ErrorClass::RateLimited,
        50000..=59999 => ErrorClass::Unavailable,
        _ => return None,
    })
}

/// The class of an HTTP status without a usable Ably code.
pub fn class_of_status(status: u16) -> ErrorClass {
    match status {
        401 | 403 | 404 => ErrorClass::Config,
        400 | 413 | 422 => ErrorClass::Request,
        408 | 500..=599 => ErrorClass::Unavailable,
        429 => ErrorClass::RateLimited,
        _ => ErrorClass::Protocol,
    }
}

/// Whether a failure qualifies for a retry on a fallback host (spec RSC15l): unreachable,
/// time-out, 500-504, or any status >= 400 from CloudFront.
pub fn qualifies_for_fallback(error: &VendorError, server_is_cloudfront: bool) -> bool {
    match error {
        VendorError::Timeout { .. } | VendorError::Connect(_) | VendorError::Transport(_) => true,
        VendorError::Rejected { status, .. } => {
            (500..=504).contains(status) || (*status >= 400 && server_is_cloudfront)
        }
        // Another host of the same vendor presents a certificate from the same CA.
        VendorError::Tls { .. } | VendorError::Internal(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn err(status: u16, code: u32, message: &str) -> String {
        format!(
            r#"{{"error":{{"code":{code},"statusCode":{status},"message":"{message}","href":"https://help.ably.io/error/{code}"}}}}"#
        )
    }

    fn class(status: u16, body: &str) -> Option<ErrorClass> {
        classify(status, body.as_bytes()).err().map(|e| e.class())
    }

    #[test]
    fn table() {
        let cases: Vec<(u16, String, Option<ErrorClass>)> = vec![
            (201, r#"{"channel":"a","messageId":"m1"}"#.into(), None),
            (201, r#"{"serials":["01:0"]}"#.into(), None),
            (200, "[]".into(), None),
            (201, "".into(), None),
            (
                401,
                err(401, 40142, "Token expired"),
                Some(ErrorClass::TokenExpired),
            ),
            (
                401,
                err(401, 40140, "Token error"),
                Some(ErrorClass::TokenExpired),
            ),
            (
                401,
                err(401, 40149, "Token error"),
                Some(ErrorClass::TokenExpired),
            ),
            (
                401,
                err(401, 40101, "Invalid credentials"),
                Some(ErrorClass::Config),
            ),
            (
                401,
                err(401, 40160, "Capability denied"),
                Some(ErrorClass::Config),
            ),
            (403, err(403, 40300, "Forbidden"), Some(ErrorClass::Config)),
            (
                400,
                err(400, 40000, "Bad request"),
                Some(ErrorClass::Request),
            ),
            (
                400,
                err(400, 40031, "Invalid id"),
                Some(ErrorClass::Request),
            ),
            (
                413,
                err(413, 40009, "Message too large"),
                Some(ErrorClass::Request),
            ),
            (
                429,
                err(429, 42910, "Rate limit"),
                Some(ErrorClass::RateLimited),
            ),
            (429, err(429, 42922, "Flood"), Some(ErrorClass::RateLimited)),
            (
                500,
                err(500, 50000, "Internal"),
                Some(ErrorClass::Unavailable),
            ),
            (
                503,
                err(503, 50003, "Timeout exceeded while waiting for publish"),
                Some(ErrorClass::Unavailable),
            ),
            (
                500,
                err(500, 50003, "Timeout"),
                Some(ErrorClass::Unavailable),
            ),
            (
                503,
                err(503, 50310, "Unavailable"),
                Some(ErrorClass::Unavailable),
            ),
            // Without an Ably body the status decides.
            (
                429,
                r#"{"error":"Too Many Requests"}"#.into(),
                Some(ErrorClass::RateLimited),
            ),
            (
                502,
                "<html>Bad Gateway</html>".into(),
                Some(ErrorClass::Unavailable),
            ),
            (401, "".into(), Some(ErrorClass::Config)),
            (404, "not found".into(), Some(ErrorClass::Config)),
            (301, "".into(), Some(ErrorClass::Protocol)),
            // 200 with an error body is a failure, classified by its code.
            (
                200,
                err(500, 50002, "Internal"),
                Some(ErrorClass::Unavailable),
            ),
            (
                201,
                r#"{"error":"weird"}"#.into(),
                Some(ErrorClass::Protocol),
            ),
        ];
        for (status, body, expected) in cases {
            assert_eq!(class(status, &body), expected, "{status} {body}");
        }
    }

    #[test]
    fn error_keeps_code_and_message() {
        let e = classify(401, err(401, 40101, "Invalid credentials").as_bytes()).unwrap_err();
        assert_eq!(
            e,
            VendorError::Rejected {
                class: ErrorClass::Config,
                status: 401,
                code: Some(40101),
                message: "Invalid credentials".into()
            }
        );
        assert!(!e.retry_allowed());
        let t = classify(401, err(401, 40142, "expired").as_bytes()).unwrap_err();
        assert!(t.retry_allowed());
    }

    #[test]
    fn fallback_rules() {
        let rejected = |status| VendorError::Rejected {
            class: ErrorClass::Unavailable,
            status,
            code: None,
            message: String::new(),
        };
        assert!(qualifies_for_fallback(
            &VendorError::Timeout {
                after: Duration::from_secs(2)
            },
            false
        ));
        assert!(qualifies_for_fallback(
            &VendorError::Connect("refused".into()),
            false
        ));
        assert!(qualifies_for_fallback(&rejected(503), false));
        assert!(!qualifies_for_fallback(&rejected(505), false));
        assert!(!qualifies_for_fallback(&rejected(401), false));
        assert!(qualifies_for_fallback(&rejected(403), true));
    }
}
