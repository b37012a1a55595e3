//! Classifies a Pusher HTTP API answer. Pure: status and body in, outcome out.
//!
//! Success is 2xx with a body that is not an error (Pusher `{}`, sockudo `{"ok":true}`,
//! `{"channels":..}`, `{"batch":..}`). A 2xx whose body carries `"error"` is a failure:
//! soketi answers every error with HTTP 200 and `{"error":"..","code":401}`.

use crate::upstream::error::truncate_message;
use crate::upstream::{ErrorClass, VendorError};

/// `Ok(())` when the vendor took the events, else the classified failure.
pub fn classify(status: u16, body: &[u8]) -> Result<(), VendorError> {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error_text = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .map(|e| match e {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    // A numeric code in the body, as Pusher-compatible servers send it (`"code":401`).
    let body_code = parsed
        .as_ref()
        .and_then(|v| v.get("code").or_else(|| v.get("status")))
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|c| u32::try_from(c).ok());
    let message = || {
        error_text
            .clone()
            .unwrap_or_else(|| truncate_message(&String::from_utf8_lossy(body)))
    };

    if (200..300).contains(&status) {
        if error_text.is_none() {
            return Ok(());
        }
        let class = body_code
            .and_then(|c| u16::try_from(c).ok())
            .and_then(class_of_status)
            .unwrap_or(ErrorClass::Protocol);
        return Err(VendorError::Rejected {
            class,
            status,
            code: body_code,
            message: truncate_message(&message()),
        });
    }
    let class = class_of_status(status).unwrap_or(ErrorClass::Protocol);
    Err(VendorError::Rejected {
        class,
        status,
        code: body_code,
        message: truncate_message(&message()),
    })
}

/// The class of an HTTP error status; `None` for statuses that are not errors.
pub(crate) fn class_of_status(status: u16) -> Option<ErrorClass> {
    Some(match status {
        401 | 403 | 404 => ErrorClass::Config,
        400 | 413 | 422 => ErrorClass::Request,
        408 => ErrorClass::Unavailable,
        429 => ErrorClass::RateLimited,
        500..=599 => ErrorClass::Unavailable,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, body: &str) -> Option<ErrorClass> {
        classify(status, body.as_bytes()).err().map(|e| e.class())
    }

    #[test]
    fn table() {
        let cases: &[(u16, &str, Option<ErrorClass>)] = &[
            (200, "{}", None),
            (200, r#"{"ok":true}"#, None),
            (200, r#"{"channels":{"a":{}}}"#, None),
            (200, "", None),
            (202, "{}", None),
            // sockudo's real answers (VENDORS.md §5.2)
            (
                401,
                r#"{"error":"Invalid API signature","code":"auth_failed","status":401}"#,
                Some(ErrorClass::Config),
            ),
            (
                413,
                r#"{"error":"Payload too large"}"#,
                Some(ErrorClass::Request),
            ),
            (
                400,
                r#"{"error":"Too many channels"}"#,
                Some(ErrorClass::Request),
            ),
            (
                429,
                r#"{"error":"Too Many Requests"}"#,
                Some(ErrorClass::RateLimited),
            ),
            (403, "Forbidden", Some(ErrorClass::Config)),
            (404, "", Some(ErrorClass::Config)),
            (500, "oops", Some(ErrorClass::Unavailable)),
            (
                502,
                "<html>bad gateway</html>",
                Some(ErrorClass::Unavailable),
            ),
            (503, "", Some(ErrorClass::Unavailable)),
            (302, "", Some(ErrorClass::Protocol)),
            // soketi: every error is HTTP 200 with the real code in the body
            (
                200,
                r#"{"error":"The app does not exist","code":401}"#,
                Some(ErrorClass::Config),
            ),
            (
                200,
                r#"{"error":"Payload too large","code":413}"#,
                Some(ErrorClass::Request),
            ),
            (
                200,
                r#"{"error":"Server error","code":500}"#,
                Some(ErrorClass::Unavailable),
            ),
            (200, r#"{"error":"something"}"#, Some(ErrorClass::Protocol)),
        ];
        for (status, body, expected) in cases {
            assert_eq!(class(*status, body), *expected, "{status} {body}");
        }
    }

    #[test]
    fn error_keeps_code_and_message() {
        let e = classify(200, br#"{"error":"The app does not exist","code":401}"#).unwrap_err();
        assert_eq!(
            e,
            VendorError::Rejected {
                class: ErrorClass::Config,
                status: 200,
                code: Some(401),
                message: "The app does not exist".into()
            }
        );
    }
}
