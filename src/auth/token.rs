//! Subscriber tokens: HS256 JWTs with `exp` and a `channels` claim of names and prefix patterns.

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::secret::Secret;
use crate::core::ChannelName;

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("a subscriber token is required: pass ?token=<jwt> or Authorization: Bearer <jwt>")]
    Missing,
    #[error("the subscriber token has expired; fetch a fresh one from your backend")]
    Expired,
    #[error("the subscriber token is not valid ({0}); it must be an HS256 JWT with exp and channels claims, signed with the configured secret")]
    Invalid(String),
}

/// The channels a token grants: exact names, or prefixes written `prefix*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScope {
    patterns: Option<Vec<String>>,
    /// The token's `exp` (Unix seconds); `None` when subscriber auth is off.
    expires_at: Option<u64>,
}

impl TokenScope {
    /// The scope when subscriber auth is off: everything.
    pub fn everything() -> Self {
        Self {
            patterns: None,
            expires_at: None,
        }
    }

    /// The token's channel patterns as written; `None` means every channel (auth off).
    pub fn patterns(&self) -> Option<&[String]> {
        self.patterns.as_deref()
    }

    /// When the token expires (Unix seconds); `None` when subscriber auth is off. A grant
    /// derived from the token (a vendor token) must not outlive it.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    /// How long the token is still good for, from `now_ms` (Unix milliseconds); `None` when it
    /// never expires (auth off). An open connection is closed then: it was checked only at
    /// connect before, and kept subscribing after its token expired.
    pub fn remaining(&self, now_ms: u64) -> Option<std::time::Duration> {
        self.expires_at.map(|at| {
            std::time::Duration::from_millis((at.saturating_mul(1000)).saturating_sub(now_ms))
        })
    }

    pub fn allows(&self, channel: &ChannelName) -> bool {
        let Some(patterns) = &self.patterns else {
            return true;
        };
        patterns.iter().any(|p| channel.matches(p))
    }
}

#[derive(Deserialize)]
struct Claims {
    channels: Vec<String>,
    exp: u64,
}

/// Checks subscriber tokens, or lets everyone in when auth is off.
#[derive(Clone)]
pub struct SubscriberAuth {
    key: Option<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for SubscriberAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberAuth")
            .field("enabled", &self.key.is_some())
            .finish()
    }
}

impl SubscriberAuth {
    pub fn new(mode: SubscribeAuth, secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = 5;
        Self {
            key: (mode == SubscribeAuth::Jwt)
                .then(|| DecodingKey::from_secret(secret.expose().as_bytes())),
            validation,
        }
    }

    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// The scope `token` grants.
    pub fn check(&self, token: Option<&str>) -> Result<TokenScope, TokenError> {
        let Some(key) = &self.key else {
            return Ok(TokenScope::everything());
        };
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::InvalidSignature => TokenError::Invalid("bad signature".into()),
                    ErrorKind::MissingRequiredClaim(c) => {
                        TokenError::Invalid(format!("missing claim {c}"))
                    }
                    ErrorKind::Json(_) => {
                        TokenError::Invalid("claims are not {exp, channels: [..]}".into())
                    }
                    _ => TokenError::Invalid("malformed token".into()),
                }
            })?;
        Ok(TokenScope {
            patterns: Some(data.claims.channels),
            expires_at: Some(data.claims.exp),
        })
    }
}

/// How subscribers prove who they are (`auth.subscribe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeAuth {
    Jwt,
    None,
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "a-secret-of-sixteen-plus";

    fn mint(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn auth() -> SubscriberAuth {
        SubscriberAuth::new(SubscribeAuth::Jwt, &Secret::new(SECRET))
    }

    fn ch(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    fn in_an_hour() -> u64 {
        crate::core::event::now_ms() / 1000 + 3600
    }

    #[test]
    fn scope_covers_names_and_prefixes() {
        let t = mint(
            json!({"exp": in_an_hour(), "channels": ["clinic-42.*", "lobby"]}),
            SECRET,
        );
        let scope = auth().check(Some(&t)).unwrap();
        assert!(scope.allows(&ch("clinic-42.waiting-room")));
        assert!(scope.allows(&ch("lobby")));
        assert!(!scope.allows(&ch("lobby2")));
        assert!(!scope.allows(&ch("clinic-43.waiting-room")));
        assert_eq!(
            scope.patterns(),
            Some(&["clinic-42.*".to_owned(), "lobby".to_owned()][..])
        );
        assert!(scope
            .expires_at()
            .is_some_and(|exp| exp >= in_an_hour() - 5));
    }

    #[test]
    fn refuses_expired_forged_missing_and_malformed() {
        let expired = mint(json!({"exp": 1000, "channels": ["*"]}), SECRET);
        assert_eq!(auth().check(Some(&expired)), Err(TokenError::Expired));
        let forged = mint(
            json!({"exp": in_an_hour(), "channels": ["*"]}),
            "another-secret-xxxx",
        );
        assert!(
            matches!(auth().check(Some(&forged)), Err(TokenError::Invalid(m)) if m.contains("signature"))
        );
        assert_eq!(auth().check(None), Err(TokenError::Missing));
        assert!(matches!(
            auth().check(Some("x.y.z")),
            Err(TokenError::Invalid(_))
        ));
        let no_exp = mint(json!({"channels": ["*"]}), SECRET);
        assert!(
            matches!(auth().check(Some(&no_exp)), Err(TokenError::Invalid(m)) if m.contains("exp"))
        );
        let no_channels = mint(json!({"exp": in_an_hour()}), SECRET);
        assert!(matches!(
            auth().check(Some(&no_channels)),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn off_means_everything() {
        let a = SubscriberAuth::new(SubscribeAuth::None, &Secret::new(""));
        let scope = a.check(None).unwrap();
        assert!(scope.allows(&ch("anything")));
        assert_eq!((scope.patterns(), scope.expires_at()), (None, None));
    }
}
