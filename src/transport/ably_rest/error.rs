//! The Ably ingress's refusals, mapped once to the status and numeric code the Ably SDKs read:
//! `{"error":{"code":40142,"statusCode":401,"message":"...","href":"..."}}`, plus the
//! `X-Ably-ErrorCode` and `X-Ably-ErrorMessage` headers Ably sends for clients that cannot read
//! bodies. Always JSON with exactly `Content-Type: application/json`: ably-js and ably-python
//! pick the error decoder by content type, whatever format they asked for.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::ably::AblyAuthError;
use crate::tenant::{retry_secs, Refusal};
use crate::transport::ApiError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AblyError {
    #[error(transparent)]
    Auth(#[from] AblyAuthError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidChannel(String),
    #[error("{0}")]
    ClientIdMismatch(String),
    #[error("{0}")]
    InvalidData(String),
    #[error("the messages are {0} bytes, over the limit of 65536 bytes per publish (name, clientId, extras and data); split them or send less")]
    TooLarge(usize),
    #[error("the request body is larger than {0} bytes; split the publish")]
    BodyTooLarge(usize),
    #[error("no key named {0:?} in [[apps]]")]
    UnknownKey(String),
    #[error("method not allowed: this Ably route takes POST")]
    MethodNotAllowed,
    #[error("{0}")]
    Unavailable(String),
    /// The app's tenant's scope or quota.
    #[error(transparent)]
    Tenant(#[from] crate::tenant::Refusal),
}

impl AblyError {
    /// HTTP status and Ably error code.
    pub(crate) fn status_and_code(&self) -> (StatusCode, u32) {
        use AblyAuthError as A;
        use AblyError::*;
        let (status, code) = match self {
            Auth(A::Missing | A::InvalidCredentials | A::KeyMismatch | A::InvalidMac) => {
                (401, 40101)
            }
            Auth(A::StaleTimestamp) => (401, 40104),
            Auth(A::NonceReplayed) => (401, 40105),
            Auth(A::UnrecognisedToken) => (401, 40140),
            Auth(A::TokenExpired) => (401, 40142),
            Auth(A::MalformedToken(_)) => (401, 40144),
            Auth(A::Forbidden(_)) => (403, 40160),
            Auth(A::InvalidCapability(_) | A::InvalidTokenRequest(_)) => (400, 40003),
            Auth(A::TooManyTokenRequests) => (429, 42910),
            BadRequest(_) => (400, 40000),
            InvalidParameter(_) => (400, 40003),
            InvalidChannel(_) => (400, 40010),
            ClientIdMismatch(_) => (400, 40012),
            InvalidData(_) => (400, 40013),
            TooLarge(_) | BodyTooLarge(_) => (413, 40009),
            UnknownKey(_) => (404, 40400),
            MethodNotAllowed => (405, 40500),
            Unavailable(_) => (503, 50003),
            // Ably's "operation not permitted with provided capability" and "rate limit
            // exceeded": what the SDKs already know how to report.
            Tenant(Refusal::NotInTenant { .. }) => (403, 40160),
            Tenant(_) => (429, 42910),
        };
        (StatusCode::from_u16(status).expect("a valid status"), code)
    }

    /// In how many seconds the same request may succeed (the `Retry-After` that goes with it).
    fn retry_later(&self) -> Option<u64> {
        match self {
            AblyError::Unavailable(_) | AblyError::Auth(AblyAuthError::TooManyTokenRequests) => {
                Some(crate::engine::RETRY_AFTER_SECS)
            }
            AblyError::Tenant(Refusal::RateLimited { retry_after, .. }) => {
                Some(retry_secs(*retry_after))
            }
            _ => None,
        }
    }

    pub(crate) fn body(&self) -> serde_json::Value {
        let (status, code) = self.status_and_code();
        json!({"error": {
            "code": code,
            "statusCode": status.as_u16(),
            "message": self.to_string(),
            "href": format!("https://help.ably.io/error/{code}"),
        }})
    }
}

/// The request-reading and publishing errors of the rest of the API, in Ably's terms.
impl From<ApiError> for AblyError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::PayloadTooLarge(limit) => AblyError::BodyTooLarge(limit),
            ApiError::InvalidChannel(m) => AblyError::InvalidChannel(m),
            ApiError::InvalidField(m) => AblyError::InvalidParameter(m),
            e @ (ApiError::EngineUnavailable(_)
            | ApiError::ChannelLimit(_)
            | ApiError::ShuttingDown) => AblyError::Unavailable(e.to_string()),
            ApiError::Tenant(r) => AblyError::Tenant(r),
            other => AblyError::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for AblyError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        tracing::debug!(code, "ably request refused");
        let mut response = (status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        headers.insert("x-ably-errorcode", code.into());
        // A header takes visible ASCII only; anything else in the message becomes `?`.
        let message: String = (self.to_string().chars())
            .map(|c| {
                if c == ' ' || c.is_ascii_graphic() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&message) {
            headers.insert("x-ably-errormessage", v);
        }
        if let Some(secs) = self.retry_later() {
            headers.insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_headers_carry_the_ably_code() {
        let e = AblyError::Auth(AblyAuthError::TokenExpired);
        assert_eq!(
            e.body(),
            json!({"error": {"code": 40142, "statusCode": 401,
                "message": "the token has expired; request a new one",
                "href": "https://help.ably.io/error/40142"}})
        );
        let r = e.into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["x-ably-errorcode"], "40142");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
        let r = AblyError::InvalidData("caf\u{e9}\n".into()).into_response();
        assert_eq!(r.headers()["x-ably-errormessage"], "caf??");
        let r = AblyError::Unavailable("engine down".into()).into_response();
        assert_eq!(
            (r.status().as_u16(), &r.headers()["x-ably-errorcode"]),
            (503, &HeaderValue::from(50003))
        );
        assert!(r.headers().get(header::RETRY_AFTER).is_some());
    }
}
