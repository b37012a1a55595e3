//! `POST /v1/vendor/auth` (and `GET`): the one place a subscriber's understudy token becomes a
//! vendor credential. Pusher clients get the `auth` signature of one private channel; Ably
//! clients get a signed TokenRequest for exactly the token's channels, subscribe only, ending no
//! later than the token. The vendor secret never leaves the server. docs/protocol.md, "Vendor
//! channel authorization".
//!
//! With `app_key`, it signs instead for an `[[apps]]` app on understudy's own Pusher-protocol
//! socket (`/app/{key}`), with the app's secret: for pages that have no auth endpoint of their own.
//!
//! The request is what the vendor SDKs send by default: pusher-js `channelAuthorization` posts a
//! form (`socket_id`, `channel_name`, plus its `params`); ably-js `authUrl` sends `authParams`
//! as a query (GET) or a form (POST). JSON bodies are accepted too. The token comes as
//! `Authorization: Bearer <jwt>` or a `token` parameter, as on the other subscribe transports.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::subscriber::query_pairs;
use super::ApiError;
use crate::auth::TokenScope;
use crate::core::ChannelName;
use crate::transport::AppState;
use crate::upstream::ably::token_request::{subscribe_capability, TokenRequest};
use crate::upstream::pusher::{self, signing};
use crate::upstream::{ably::AblyConfig, pusher::PusherConfig, VendorConfig, HEARTBEAT_CHANNEL};

/// Largest request body read: a socket id, a channel name and a few parameters.
const MAX_BODY: usize = 8 * 1024;
/// Longest life of an Ably token made here, even for a long-lived understudy token.
const MAX_TTL_MS: u64 = 60 * 60 * 1000;

/// Why a vendor credential was refused, beyond the token and scope errors every transport has.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VendorAuthError {
    #[error("no realtime vendor is configured; subscribe through understudy's own transports")]
    NoVendor,
    #[error("no vendor named {0:?} is configured; name one from vendors.urls (name or kind)")]
    UnknownVendor(String),
    #[error("no app has the key {0:?}; name one of [[apps]]")]
    UnknownApp(String),
    #[error("vendor {0:?} has no realtime subscriptions to authorize")]
    NotSubscribable(String),
    #[error("missing parameter {0}; send it in the form or JSON body, or in the query")]
    MissingParam(&'static str),
    #[error("socket_id {0:?} is not a Pusher socket id (digits.digits)")]
    InvalidSocketId(String),
    #[error("channel {0:?} is not a private channel; only private-<channel> is authorized here")]
    NotPrivate(String),
    #[error("send the parameters as application/x-www-form-urlencoded or application/json")]
    UnsupportedBody,
    #[error("request body is larger than {MAX_BODY} bytes")]
    BodyTooLarge,
}

impl VendorAuthError {
    pub fn status(&self) -> StatusCode {
        use VendorAuthError::*;
        match self {
            NoVendor | UnknownVendor(_) | UnknownApp(_) => StatusCode::NOT_FOUND,
            NotSubscribable(_) => StatusCode::CONFLICT,
            MissingParam(_) | InvalidSocketId(_) | NotPrivate(_) => StatusCode::BAD_REQUEST,
            UnsupportedBody => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    pub fn code(&self) -> &'static str {
        use VendorAuthError::*;
        match self {
            NoVendor => "no_vendor",
            UnknownVendor(_) => "unknown_vendor",
            UnknownApp(_) => "unknown_app",
            NotSubscribable(_) => "vendor_not_subscribable",
            MissingParam(_) => "missing_param",
            InvalidSocketId(_) => "invalid_socket_id",
            NotPrivate(_) => "not_private_channel",
            UnsupportedBody => "unsupported_media_type",
            BodyTooLarge => "payload_too_large",
        }
    }
}

/// The request's parameters: query first, then the body's, repeated keys kept.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn require(&self, key: &'static str) -> Result<&str, VendorAuthError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or(VendorAuthError::MissingParam(key))
    }
}

pub(crate) async fn authorize(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut params = query_pairs(uri.query());
    params.extend(read_params(&headers, body).await?);
    let params = Params(params);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // A `token` parameter wins over the header, as on the other subscribe transports.
    let scope = state
        .subscribers
        .load()
        .check(params.get("token").or(bearer))?;
    if let Some(app_key) = params.get("app_key").filter(|k| !k.is_empty()) {
        let answer = app_auth(&state, app_key, &scope, &params)?;
        return Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response());
    }
    let tenant = tenant_of(&state, &params);
    let vendor = choose(&state, &tenant, params.get("vendor"))?;
    let answer = match &vendor {
        VendorConfig::Pusher(c) => pusher_auth(c, &scope, &params)?,
        VendorConfig::Ably(c) => ably_token_request(c, &scope)?,
        VendorConfig::Webhook(c) => {
            return Err(VendorAuthError::NotSubscribable(c.name.clone()).into())
        }
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// Reads a form or JSON body (an empty body is no parameters).
async fn read_params(headers: &HeaderMap, body: Body) -> Result<Vec<(String, String)>, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        if e.into_inner()
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            ApiError::from(VendorAuthError::BodyTooLarge)
        } else {
            ApiError::BodyUnreadable
        }
    })?;
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match kind.as_str() {
        "application/x-www-form-urlencoded" => {
            Ok(form_urlencoded::parse(&bytes).into_owned().collect())
        }
        "application/json" => {
            let value: Value = super::parse_json(&bytes)?;
            let Value::Object(map) = value else {
                return Err(ApiError::InvalidField(
                    "the body must be a JSON object of parameters".into(),
                ));
            };
            Ok(map
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    Value::Number(n) => Some((k, n.to_string())),
                    _ => None,
                })
                .collect())
        }
        _ => Err(VendorAuthError::UnsupportedBody.into()),
    }
}

/// Whose vendor signs: the owner of the channel asked for, else the tenant named by `tenant`
/// (the heartbeat channel, an Ably token), else the default tenant.
fn tenant_of(state: &AppState, params: &Params) -> crate::tenant::TenantId {
    let tenants = state.tenants.load();
    let channel = params
        .get("channel_name")
        .and_then(pusher::understudy_channel_of_private)
        .filter(|c| c != HEARTBEAT_CHANNEL);
    if let Some(channel) = channel {
        return tenants.of_channel(&channel).id.clone();
    }
    params
        .get("tenant")
        .and_then(|t| tenants.get(t))
        .map(|t| t.id.clone())
        .unwrap_or_default()
}

/// Among `tenant`'s vendors (its own, else `[vendors]`): the one named by `vendor` (its name, or
/// its kind), else the one its clients are routed to (or were last), else the first one with
/// realtime subscriptions.
fn choose(
    state: &AppState,
    tenant: &crate::tenant::TenantId,
    named: Option<&str>,
) -> Result<VendorConfig, VendorAuthError> {
    let config = state.config.load();
    let own = (config.tenants.iter())
        .find(|t| t.id == *tenant)
        .and_then(|t| t.vendors.as_ref())
        .filter(|v| !v.is_empty())
        .map(|v| crate::upstream::own_vendors(tenant, v));
    let vendors = own.as_ref().unwrap_or(&config.vendors.vendors);
    if let Some(named) = named.filter(|n| !n.is_empty()) {
        return vendors
            .iter()
            .find(|v| v.name() == named)
            .or_else(|| vendors.iter().find(|v| v.kind().as_str() == named))
            .cloned()
            .ok_or_else(|| VendorAuthError::UnknownVendor(named.chars().take(64).collect()));
    }
    let routed = state
        .failover
        .route_for(tenant)
        .forward_to
        .and_then(|i| state.failover.vendor_names_for(tenant).get(i).cloned());
    routed
        .and_then(|name| vendors.iter().find(|v| v.name() == name))
        .or_else(|| {
            vendors
                .iter()
                .find(|v| !matches!(v, VendorConfig::Webhook(_)))
        })
        .cloned()
        .ok_or(VendorAuthError::NoVendor)
}

/// `{"auth":"key:signature"}` for one private channel inside the token's scope. The heartbeat
/// channel is open to every valid token: it carries no data, and the vendor path listens to it.
fn pusher_auth(
    config: &PusherConfig,
    scope: &TokenScope,
    params: &Params,
) -> Result<Value, ApiError> {
    let socket_id = params.require("socket_id")?;
    if !signing::is_socket_id(socket_id) {
        return Err(VendorAuthError::InvalidSocketId(socket_id.chars().take(40).collect()).into());
    }
    let wire = params.require("channel_name")?;
    let name = pusher::understudy_channel_of_private(wire)
        .ok_or_else(|| VendorAuthError::NotPrivate(wire.chars().take(200).collect()))?;
    let channel = ChannelName::parse(&name)?;
    if channel.as_str().len() > pusher::max_understudy_channel_len(true) {
        return Err(ApiError::InvalidChannel(format!(
            "channel {name:?} is too long for Pusher; its events are not forwarded to the vendor"
        )));
    }
    if channel.as_str() != HEARTBEAT_CHANNEL && !scope.allows(&channel) {
        return Err(ApiError::ChannelForbidden(channel.to_string()));
    }
    let auth = signing::channel_auth(&config.key, &config.secret, socket_id, wire);
    Ok(json!({ "auth": auth }))
}

/// `{"auth":"key:signature"}` for a private channel of an app on `/app/{key}`, signed with the
/// app's secret. There the channel's understudy name is the Pusher name itself (`private-`
/// included), so that is the name the token must cover.
fn app_auth(
    state: &AppState,
    app_key: &str,
    scope: &TokenScope,
    params: &Params,
) -> Result<Value, ApiError> {
    let app = state
        .apps
        .load()
        .by_key(app_key)
        .ok_or_else(|| VendorAuthError::UnknownApp(app_key.chars().take(64).collect()))?;
    let socket_id = params.require("socket_id")?;
    if !signing::is_socket_id(socket_id) {
        return Err(VendorAuthError::InvalidSocketId(socket_id.chars().take(40).collect()).into());
    }
    let wire = params.require("channel_name")?;
    if !wire.starts_with("private-") || wire.starts_with("private-encrypted-") {
        return Err(VendorAuthError::NotPrivate(wire.chars().take(200).collect()).into());
    }
    let channel = ChannelName::parse(wire)?;
    if !scope.allows(&channel) {
        return Err(ApiError::ChannelForbidden(channel.to_string()));
    }
    let auth = super::pusher_ws::channel_auth::sign(&app, socket_id, wire);
    Ok(json!({ "auth": auth }))
}

/// A TokenRequest for the token's channels (and the heartbeat), subscribe only, ending no later
/// than the understudy token.
fn ably_token_request(config: &AblyConfig, scope: &TokenScope) -> Result<Value, ApiError> {
    let now = crate::upstream::unix_ms();
    let ttl = match scope.expires_at() {
        None => MAX_TTL_MS,
        Some(exp) => exp
            .saturating_mul(1000)
            .checked_sub(now)
            .filter(|left| *left > 0)
            .ok_or(crate::auth::TokenError::Expired)?
            .min(MAX_TTL_MS),
    };
    let capability = subscribe_capability(scope.patterns(), &[HEARTBEAT_CHANNEL]);
    let nonce = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let request = TokenRequest::sign(
        &config.key_name,
        &config.key_secret,
        ttl,
        capability,
        now,
        nonce,
    );
    Ok(serde_json::to_value(request).expect("a token request serialises"))
}
