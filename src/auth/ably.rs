//! Who may publish through the Ably REST ingress: an app's key (`Authorization: Basic
//! base64(keyName:keySecret)`, keyName being the app's `key`) or an Ably token (`Authorization:
//! Bearer <token>`, the token raw or base64-encoded as the Ably SDKs send it). Tokens are Ably
//! JWTs: HS256 signed with the app's secret, header `kid` = key name, claims `iat`, `exp` and
//! optionally `x-ably-capability` (a JSON string; absent: everything the key may do) and
//! `x-ably-clientId`. `/keys/{keyName}/requestToken` issues them (see `token_request`).
//!
//! # Layout
//! - `capability`: the `{"resource":["operation"]}` text and whether it grants `publish`.
//! - `token_request`: TokenRequests and TokenParams as the SDKs send them, checked, and the
//!   TokenDetails answered.
//! - `nonces`: the recently used TokenRequest nonces, bounded.

pub(crate) mod capability;
pub(crate) mod nonces;
pub(crate) mod token_request;

use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub(crate) use capability::Capability;
pub(crate) use nonces::Nonces;
pub(crate) use token_request::TokenRequestBody;

use super::Apps;
use crate::config::apps::AppConfig;
use crate::core::ChannelName;

/// Why an Ably credential was refused. Messages never quote a secret, a token or a mac.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AblyAuthError {
    #[error("no credentials: send Authorization: Basic base64(keyName:keySecret) or Authorization: Bearer <token>")]
    Missing,
    #[error("invalid credentials: the key name and secret do not match an app in [[apps]]")]
    InvalidCredentials,
    #[error("the token is not an Ably JWT understudy can read ({0})")]
    MalformedToken(&'static str),
    #[error("the token was not issued for a key of this server, or its signature does not match")]
    UnrecognisedToken,
    #[error("the token has expired; request a new one")]
    TokenExpired,
    #[error("the credentials do not grant publish on channel {0:?}")]
    Forbidden(String),
    #[error("invalid capability: {0}")]
    InvalidCapability(String),
    #[error("invalid token request: {0}")]
    InvalidTokenRequest(String),
    #[error("the token request is signed for another key than the path names")]
    KeyMismatch,
    #[error("the token request's mac does not match; sign it with this key's secret")]
    InvalidMac,
    #[error("the token request's timestamp is more than 2 minutes from the server's clock; check the clock or ask for a new request")]
    StaleTimestamp,
    #[error("this token request was already used (nonce replayed); sign a new one")]
    NonceReplayed,
    #[error("too many token requests in the last 2 minutes; retry in a moment")]
    TooManyTokenRequests,
}

/// Who is publishing: an app, through its key or a token issued for it.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub app: Arc<AppConfig>,
    /// A token's capability; `None` for the key itself, which may do everything.
    pub capability: Option<Capability>,
    /// A token's client id, which the messages it publishes may not contradict.
    pub client_id: Option<String>,
}

impl Credential {
    /// Whether this credential may publish on `channel`.
    pub(crate) fn check_publish(&self, channel: &ChannelName) -> Result<(), AblyAuthError> {
        match &self.capability {
            Some(c) if !c.allows_publish(channel) => {
                Err(AblyAuthError::Forbidden(channel.as_str().to_owned()))
            }
            _ => Ok(()),
        }
    }
}

/// Reads the `Authorization` header. `now_ms`: Unix milliseconds, for token expiry.
pub(crate) fn authenticate(
    apps: &Apps,
    authorization: Option<&str>,
    now_ms: u64,
) -> Result<Credential, AblyAuthError> {
    let header = authorization.map(str::trim).unwrap_or_default();
    if let Some(basic) = strip_scheme(header, "Basic") {
        let app = check_basic(apps, basic)?;
        return Ok(Credential {
            app,
            capability: None,
            client_id: None,
        });
    }
    if let Some(token) = strip_scheme(header, "Bearer") {
        return verify_token(apps, token, now_ms);
    }
    Err(AblyAuthError::Missing)
}

/// The rest of `header` after `scheme ` (scheme case-insensitive, as HTTP has it).
fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|r| !r.is_empty())
}

/// The app whose key name and secret `encoded` (base64 of `keyName:keySecret`) holds.
pub(crate) fn check_basic(apps: &Apps, encoded: &str) -> Result<Arc<AppConfig>, AblyAuthError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| AblyAuthError::InvalidCredentials)?;
    let raw = String::from_utf8(raw).map_err(|_| AblyAuthError::InvalidCredentials)?;
    let (name, secret) = raw
        .split_once(':')
        .ok_or(AblyAuthError::InvalidCredentials)?;
    match apps.by_key(name) {
        Some(app) if app.secret_is(secret) => Ok(app),
        _ => Err(AblyAuthError::InvalidCredentials),
    }
}

/// The claims of an Ably JWT.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// Issued at, Unix seconds.
    iat: u64,
    /// Expires at, Unix seconds.
    exp: u64,
    #[serde(
        rename = "x-ably-capability",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    capability: Option<String>,
    #[serde(
        rename = "x-ably-clientId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    client_id: Option<String>,
}

/// Checks an Ably JWT, given raw or base64-encoded (a JWT always holds `.`, base64 text never).
pub(crate) fn verify_token(
    apps: &Apps,
    presented: &str,
    now_ms: u64,
) -> Result<Credential, AblyAuthError> {
    let decoded;
    let token = if presented.contains('.') {
        presented
    } else {
        decoded = base64::engine::general_purpose::STANDARD
            .decode(presented)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(AblyAuthError::MalformedToken(
                "neither a JWT nor base64 of one",
            ))?;
        decoded.as_str()
    };
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| AblyAuthError::MalformedToken("its header is not a JWT header"))?;
    if header.alg != Algorithm::HS256 {
        return Err(AblyAuthError::MalformedToken("it must be signed HS256"));
    }
    let kid = header.kid.ok_or(AblyAuthError::MalformedToken(
        "its header has no kid (key name)",
    ))?;
    let app = apps.by_key(&kid).ok_or(AblyAuthError::UnrecognisedToken)?;
    let mut validation = Validation::new(Algorithm::HS256);
    // Expiry is checked below against `now_ms`, so that tests can set the clock.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(app.secret.expose().as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => AblyAuthError::UnrecognisedToken,
        _ => AblyAuthError::MalformedToken("its claims must hold iat and exp in seconds"),
    })?
    .claims;
    if claims.exp.saturating_mul(1000) <= now_ms {
        return Err(AblyAuthError::TokenExpired);
    }
    let capability = Capability::parse(claims.capability.as_deref().unwrap_or_default())?;
    Ok(Credential {
        app,
        capability: Some(capability),
        client_id: claims.client_id.filter(|c| !c.is_empty()),
    })
}

/// Issues an Ably JWT for `app`, valid from `iat` to `exp` (Unix seconds).
pub(crate) fn issue_token(
    app: &AppConfig,
    capability: &Capability,
    client_id: Option<&str>,
    iat: u64,
    exp: u64,
) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(app.key.clone());
    let claims = Claims {
        iat,
        exp,
        capability: Some(capability.as_str().to_owned()),
        client_id: client_id.map(str::to_owned),
    };
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(app.secret.expose().as_bytes()),
    )
    .expect("HS256 signs any claims that serialise")
}

#[cfg(test)]
mod tests;
