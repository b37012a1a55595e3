//! `POST /keys/{keyName}/requestToken`: the body an Ably SDK sends to exchange for a token, and
//! the TokenDetails it gets back.
//!
//! Two kinds of body (VENDORS.md §1.2): a TokenRequest signed with the key secret (`mac`,
//! `nonce`, `timestamp`: no `Authorization` header, the SDK's `useTokenAuth` with a key), or
//! plain TokenParams (`ttl`, `capability`, `clientId`) sent with the key's Basic auth. The SDKs
//! write fields loosely (ably-js a number, ably-python `null` for an absent field), so every field
//! is read as text whatever its JSON or msgpack type, and the `mac` is checked against exactly
//! the text that was signed (the canonical string is `upstream::ably::token_request`'s).

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{issue_token, AblyAuthError, Capability, Nonces};
use crate::config::apps::AppConfig;
use crate::upstream::ably::token_request::{mac, signed_text};

/// Token lifetime when the request names none: Ably's default, one hour.
pub(crate) const DEFAULT_TTL_MS: u64 = 60 * 60 * 1000;
/// Longest token lifetime: Ably's limit, 24 hours.
pub(crate) const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Shortest nonce accepted (Ably: "at least 16 characters").
pub(crate) const MIN_NONCE_LEN: usize = 16;

/// A TokenRequest or TokenParams body. Unknown fields are ignored, as Ably does.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct TokenRequestBody {
    #[serde(deserialize_with = "text")]
    pub key_name: Option<String>,
    #[serde(deserialize_with = "text")]
    pub ttl: Option<String>,
    #[serde(deserialize_with = "text")]
    pub capability: Option<String>,
    #[serde(deserialize_with = "text")]
    pub client_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub timestamp: Option<String>,
    #[serde(deserialize_with = "text")]
    pub nonce: Option<String>,
    #[serde(deserialize_with = "text")]
    pub mac: Option<String>,
}

/// What a token will grant, once its request has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub ttl_ms: u64,
    pub capability: Capability,
    pub client_id: Option<String>,
}

/// What `requestToken` answers (Ably's TokenDetails; times in Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenDetails {
    pub token: String,
    pub key_name: String,
    pub issued: u64,
    pub expires: u64,
    pub capability: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl TokenRequestBody {
    /// Whether this is a signed TokenRequest (else TokenParams that need Basic auth).
    pub(crate) fn is_signed(&self) -> bool {
        self.mac.is_some()
    }

    /// Checks a signed request for `app` (named by the path): key name, mac, then timestamp
    /// and nonce (only a correctly signed request takes room in `nonces`).
    pub(crate) fn check_signed(
        &self,
        app: &AppConfig,
        nonces: &Nonces,
        now_ms: u64,
    ) -> Result<Grant, AblyAuthError> {
        let invalid = |why: &str| AblyAuthError::InvalidTokenRequest(why.to_owned());
        if self.key_name.as_deref() != Some(app.key.as_str()) {
            return Err(AblyAuthError::KeyMismatch);
        }
        let nonce = self.nonce.as_deref().unwrap_or_default();
        if nonce.chars().count() < MIN_NONCE_LEN {
            return Err(invalid("nonce must be at least 16 characters"));
        }
        let timestamp = (self.timestamp.as_deref())
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| invalid("timestamp must be Unix milliseconds"))?;
        let text = signed_text(
            &app.key,
            self.ttl.as_deref().unwrap_or_default(),
            self.capability.as_deref().unwrap_or_default(),
            self.client_id.as_deref().unwrap_or_default(),
            timestamp,
            nonce,
        );
        let expected = mac(app.secret.expose(), &text);
        let given = self.mac.as_deref().unwrap_or_default();
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(AblyAuthError::InvalidMac);
        }
        let grant = self.grant()?;
        nonces.admit(&app.key, nonce, timestamp, now_ms)?;
        Ok(grant)
    }

    /// The token these parameters ask for (defaults: one hour, everything the key may do).
    pub(crate) fn grant(&self) -> Result<Grant, AblyAuthError> {
        let ttl_ms = match self.ttl.as_deref().filter(|t| !t.is_empty()) {
            None => DEFAULT_TTL_MS,
            Some(t) => t
                .parse::<u64>()
                .ok()
                .filter(|ttl| (1..=MAX_TTL_MS).contains(ttl))
                .ok_or_else(|| {
                    AblyAuthError::InvalidTokenRequest(format!(
                        "ttl must be 1 to {MAX_TTL_MS} milliseconds"
                    ))
                })?,
        };
        Ok(Grant {
            ttl_ms,
            capability: Capability::parse(self.capability.as_deref().unwrap_or_default())?,
            client_id: self.client_id.clone().filter(|c| !c.is_empty()),
        })
    }
}

impl Grant {
    /// Issues the token for `app` at `now_ms`. JWT times are whole seconds, so the lifetime is
    /// rounded up to one; `issued` and `expires` are exactly the token's.
    pub(crate) fn issue(&self, app: &AppConfig, now_ms: u64) -> TokenDetails {
        let iat = now_ms / 1000;
        let exp = iat + self.ttl_ms.div_ceil(1000);
        TokenDetails {
            token: issue_token(app, &self.capability, self.client_id.as_deref(), iat, exp),
            key_name: app.key.clone(),
            issued: iat * 1000,
            expires: exp * 1000,
            capability: self.capability.as_str().to_owned(),
            client_id: self.client_id.clone(),
        }
    }
}

/// Reads a string, a number or nothing as text: `3600000` and `"3600000"` both give
/// `Some("3600000")`, `null` gives `None`.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Text;
    impl<'de> Visitor<'de> for Text {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string, an integer or null")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // A JS number is a double; a whole one prints without a fraction, as JS prints it.
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(Some((v as i64).to_string()))
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(Text)
        }
    }
    d.deserialize_any(Text)
}

#[cfg(test)]
mod tests;
