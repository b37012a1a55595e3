//! The one mapping from everything that can go wrong in a request to an HTTP status and a stable
//! error code. Client mistakes are not logged as errors; internals are not leaked.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::pusher_http::PusherError;
use super::vendor_auth::VendorAuthError;
use crate::auth::TokenError;
use crate::core::CoreError;
use crate::tenant::{retry_secs, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown publisher key: send Authorization: Bearer <key> with a key from auth.publisher_keys")]
    Unauthorized,
    #[error("missing or unknown admin token: send Authorization: Bearer <token> with a token from auth.admin_tokens")]
    AdminUnauthorized,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(
        "your token does not cover channel {0:?}; mint a token whose channels claim includes it"
    )]
    ChannelForbidden(String),
    #[error("no such route: {0}; see docs/protocol.md for the API")]
    NotFound(String),
    #[error("no tenant has the id {0:?}; name one of [[tenants]] (or \"default\")")]
    UnknownTenant(String),
    #[error("method not allowed on this route; see docs/protocol.md for the API")]
    MethodNotAllowed,
    #[error("request body is larger than {0} bytes; split it or raise publish.max_body_bytes")]
    PayloadTooLarge(usize),
    #[error("send the body as JSON with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("{0}")]
    InvalidChannel(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidCursor(String),
    #[error("the path could not be read ({0}); percent-encode it as UTF-8")]
    InvalidPath(String),
    #[error("at most {0} channels per publish; split the publish")]
    TooManyChannels(usize),
    #[error("a batch holds 1 to {0} events; split the batch")]
    TooManyEvents(usize),
    #[error("{0}")]
    ChannelLimit(String),
    #[error("this node is shutting down; retry on another node or in a moment")]
    ShuttingDown,
    #[error("too many subscribers are connecting at once (server.max_new_subscribers_per_second); reconnect after retry_after_ms and resume from your position")]
    ReconnectLater(std::time::Duration),
    #[error("the {0} transport is turned off on this server (subscribers.transports); connect with another one")]
    TransportDisabled(&'static str),
    #[error("request body could not be read")]
    BodyUnreadable,
    #[error("the request body did not arrive within {} ms (server.body_read_timeout_ms); send it whole and promptly", .0.as_millis())]
    BodyTimeout(std::time::Duration),
    #[error("{0}")]
    EngineUnavailable(String),
    #[error("the audit trail could not be read; see the server log")]
    AuditUnreadable,
    #[error("the configuration file is invalid ({} problems); nothing was applied and the running configuration stays", .0.len())]
    ConfigInvalid(Vec<String>),
    #[error("this node was started without a configuration file to read again; restart it to change its configuration")]
    ReloadUnavailable,
    #[error("the configuration was applied but the vendor side could not be restarted; see the server log")]
    ReloadFailed,
    #[error(
        "GET /v1/ws is a WebSocket endpoint and {0}; connect with a WebSocket client (RFC 6455)"
    )]
    NotWebSocket(String),
    #[error("the request head is over {0} bytes or 100 headers")]
    HeadTooLarge(usize),
    #[error("{0}")]
    MalformedRequest(String),
    #[error(transparent)]
    VendorAuth(#[from] VendorAuthError),
    #[error(transparent)]
    Pusher(#[from] PusherError),
    /// A tenant's scope or quota.
    #[error(transparent)]
    Tenant(#[from] Refusal),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Unauthorized | AdminUnauthorized | Token(_) => StatusCode::UNAUTHORIZED,
            ChannelForbidden(_) => StatusCode::FORBIDDEN,
            NotFound(_) | UnknownTenant(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidJson(_) | InvalidQuery(_) | InvalidCursor(_) | InvalidPath(_)
            | BodyUnreadable | NotWebSocket(_) | MalformedRequest(_) => StatusCode::BAD_REQUEST,
            HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            InvalidField(_) | InvalidChannel(_) | TooManyChannels(_) | TooManyEvents(_)
            | ConfigInvalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ReloadUnavailable => StatusCode::CONFLICT,
            ChannelLimit(_) | ShuttingDown | ReconnectLater(_) | TransportDisabled(_)
            | EngineUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuditUnreadable | ReloadFailed => StatusCode::INTERNAL_SERVER_ERROR,
            VendorAuth(e) => e.status(),
            Pusher(e) => e.status(),
            // 429 for every quota, channels too: each is a limit on what this client's tenant
            // may do, not a lack of room on the node (507 would say the server is out of space).
            Tenant(Refusal::NotInTenant { .. }) => StatusCode::FORBIDDEN,
            Tenant(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            Unauthorized | AdminUnauthorized => "unauthorized",
            Token(TokenError::Expired) => "token_expired",
            Token(_) => "invalid_token",
            ChannelForbidden(_) => "channel_forbidden",
            NotFound(_) => "not_found",
            UnknownTenant(_) => "unknown_tenant",
            MethodNotAllowed => "method_not_allowed",
            PayloadTooLarge(_) => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            InvalidJson(_) => "invalid_json",
            InvalidField(_) => "invalid_field",
            InvalidChannel(_) => "invalid_channel",
            InvalidQuery(_) => "invalid_query",
            InvalidCursor(_) => "invalid_cursor",
            InvalidPath(_) => "invalid_path",
            TooManyChannels(_) => "too_many_channels",
            TooManyEvents(_) => "too_many_events",
            ChannelLimit(_) => "channel_limit_reached",
            ShuttingDown => "shutting_down",
            ReconnectLater(_) => "reconnect_later",
            TransportDisabled(_) => "transport_disabled",
            BodyUnreadable => "body_unreadable",
            BodyTimeout(_) => "body_timeout",
            AuditUnreadable => "audit_unreadable",
            EngineUnavailable(_) => "engine_unavailable",
            ConfigInvalid(_) => "config_invalid",
            ReloadUnavailable => "reload_unavailable",
            ReloadFailed => "reload_failed",
            NotWebSocket(_) => "not_websocket",
            HeadTooLarge(_) => "request_head_too_large",
            MalformedRequest(_) => "malformed_request",
            VendorAuth(e) => e.code(),
            Pusher(e) => e.code(),
            Tenant(r) => tenant_code(r),
        }
    }

    /// The `{"error":{...}}` body, also used inside batch answers. A refusal about one channel
    /// names it in `channel`, so a client can drop just that channel; a refused configuration
    /// lists every problem in `errors`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        match self {
            ApiError::ChannelForbidden(ch) => body["error"]["channel"] = json!(ch),
            ApiError::ConfigInvalid(errors) => body["error"]["errors"] = json!(errors),
            ApiError::ReconnectLater(wait) => {
                body["error"]["retry_after_ms"] = json!(wait.as_millis() as u64)
            }
            ApiError::Tenant(
                Refusal::NotInTenant { channel, .. } | Refusal::ConnectionsExceeded { channel, .. },
            ) => body["error"]["channel"] = json!(channel),
            ApiError::Tenant(Refusal::RateLimited { retry_after, .. }) => {
                body["error"]["retry_after_ms"] = json!(retry_after.as_millis().max(1) as u64)
            }
            _ => {}
        }
        body
    }
}

/// The stable code of a tenant's refusal, the same on every ingress that answers in JSON.
pub(crate) fn tenant_code(r: &Refusal) -> &'static str {
    match r {
        Refusal::NotInTenant { .. } => "channel_not_in_tenant",
        Refusal::RateLimited { .. } => "tenant_rate_limited",
        Refusal::ChannelsExceeded { .. } => "tenant_channels_exceeded",
        Refusal::ConnectionsExceeded { .. } => "tenant_connections_exceeded",
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        Self::InvalidPath(e.body_text())
    }
}

/// `axum::extract::Path` whose refusals (a segment that is not UTF-8 once decoded, a number that
/// is not one) answer in the JSON error shape like everything else, not axum's plain text.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::InvalidChannel(m) => Self::InvalidChannel(m),
            CoreError::InvalidField(m) => Self::InvalidField(m),
            CoreError::InvalidCursor(m) => Self::InvalidCursor(m),
            e @ CoreError::ChannelLimit(_) => Self::ChannelLimit(e.to_string()),
            e @ CoreError::NotMirrored(_) => Self::EngineUnavailable(e.to_string()),
        }
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(e: crate::engine::EngineError) -> Self {
        match e {
            crate::engine::EngineError::Core(e) => e.into(),
            e @ (crate::engine::EngineError::Unavailable(_)
            | crate::engine::EngineError::Tripped { .. }
            | crate::engine::EngineError::DeadlinePassed) => Self::EngineUnavailable(e.to_string()),
        }
    }
}

impl From<crate::transport::state::ReloadError> for ApiError {
    fn from(e: crate::transport::state::ReloadError) -> Self {
        use crate::transport::state::ReloadError;
        match e {
            ReloadError::NoSource => Self::ReloadUnavailable,
            ReloadError::Invalid(e) => Self::ConfigInvalid(e.0),
            ReloadError::Rebuild(_) => Self::ReloadFailed,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::debug!(code = self.code(), "request refused");
        let mut response = (self.status(), Json(self.body())).into_response();
        let retry_after = match self {
            ApiError::EngineUnavailable(_) => Some(crate::engine::RETRY_AFTER_SECS),
            // Whole seconds, rounded up: a client reading only the header never comes back
            // before `retry_after_ms`.
            ApiError::ReconnectLater(wait) => Some(wait.as_millis().div_ceil(1000).max(1) as u64),
            ApiError::Tenant(Refusal::RateLimited { retry_after, .. }) => {
                Some(retry_secs(retry_after))
            }
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
