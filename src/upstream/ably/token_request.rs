//! Signed Ably TokenRequests (VENDORS.md §1.2): what `POST /v1/vendor/auth` hands an Ably client
//! (ably-js `authUrl`), which exchanges it at `/keys/{keyName}/requestToken` for a token. The
//! request is signed with the key secret, which stays on the server:
//! `mac = base64(HMAC-SHA256(secret, keyName\nttl\ncapability\nclientId\ntimestamp\nnonce\n))`.
//!
//! The capability is subscribe-only and names exactly the channels a subscriber token grants
//! (plus the heartbeat channel): an exact name stays a name, a prefix pattern `prefix*` becomes
//! the resource `prefix*`. Ably reads `*` as a wildcard over whole `:`-separated segments, so on
//! Ably's cloud a prefix pattern works when it ends at a `:` (`clinic-42:*`) or is `*` itself;
//! Ably-compatible servers such as sockudo match any trailing `*` as a prefix.

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::upstream::Secret;

/// The one operation a subscriber is given.
const SUBSCRIBE: &str = "subscribe";

/// A signed TokenRequest, serialised as Ably clients expect it (camelCase, times in ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    pub key_name: String,
    /// Lifetime of the token, in milliseconds.
    pub ttl: u64,
    /// The capability JSON, as a string (Ably signs the exact text).
    pub capability: String,
    /// Empty: subscribers are anonymous on the vendor.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// Milliseconds since the Unix epoch; Ably accepts it within a few minutes of its clock.
    pub timestamp: u64,
    /// Single use: Ably refuses a second request with the same nonce.
    pub nonce: String,
    pub mac: String,
}

impl TokenRequest {
    /// Signs a request for `capability` (see [`subscribe_capability`]).
    pub fn sign(
        key_name: &str,
        secret: &Secret,
        ttl_ms: u64,
        capability: String,
        timestamp_ms: u64,
        nonce: String,
    ) -> TokenRequest {
        let client_id = String::new();
        let ttl = ttl_ms.to_string();
        let text = signed_text(
            key_name,
            &ttl,
            &capability,
            &client_id,
            timestamp_ms,
            &nonce,
        );
        let mac = mac(secret.expose(), &text);
        TokenRequest {
            key_name: key_name.to_owned(),
            ttl: ttl_ms,
            capability,
            client_id,
            timestamp: timestamp_ms,
            nonce,
            mac,
        }
    }
}

/// The text a TokenRequest's `mac` signs: every field followed by `\n`, an absent `ttl`,
/// `capability` or `clientId` as the empty string. The one canonical form, used to sign requests
/// for the vendor here and to check the requests Ably SDKs send to understudy's own
/// `/keys/{keyName}/requestToken` (`auth::ably`).
pub fn signed_text(
    key_name: &str,
    ttl: &str,
    capability: &str,
    client_id: &str,
    timestamp_ms: u64,
    nonce: &str,
) -> String {
    format!("{key_name}\n{ttl}\n{capability}\n{client_id}\n{timestamp_ms}\n{nonce}\n")
}

/// `base64(HMAC-SHA256(secret, text))`, the `mac` of a TokenRequest.
pub fn mac(secret: &str, text: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 takes keys of any length");
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The capability JSON that lets a client subscribe to `patterns` and `extra` names, nothing
/// else. `None` patterns (subscriber auth off) give every channel (`*`). A pattern with a `*`
/// anywhere but at its end names no understudy channel (`*` is not a channel character) and is
/// left out, so the vendor cannot read it as a wider wildcard. Resources are sorted, so the
/// same scope always gives the same text.
pub fn subscribe_capability(patterns: Option<&[String]>, extra: &[&str]) -> String {
    let mut resources: BTreeMap<&str, [&str; 1]> = BTreeMap::new();
    match patterns {
        None => {
            resources.insert("*", [SUBSCRIBE]);
        }
        Some(patterns) => {
            for p in patterns {
                let body = p.strip_suffix('*').unwrap_or(p);
                if !p.is_empty() && !body.contains('*') {
                    resources.insert(p, [SUBSCRIBE]);
                }
            }
            for name in extra {
                resources.insert(name, [SUBSCRIBE]);
            }
        }
    }
    serde_json::to_string(&resources).expect("a map of strings serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VENDORS.md §1.2's worked example.
    #[test]
    fn documented_mac_vector() {
        let r = TokenRequest::sign(
            "xVLyHw.mDYnFA",
            &Secret::new("secretSECRETsecret"),
            3_600_000,
            r#"{"*":["*"]}"#.into(),
            1_700_000_000_000,
            "0123456789abcdef".into(),
        );
        assert_eq!(r.mac, "ssXcWeF4d11Xd3ywYljwl+t2MOqKgpry4H+EiZrGKMc=");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"keyName":"xVLyHw.mDYnFA","ttl":3600000,"capability":"{\"*\":[\"*\"]}","timestamp":1700000000000,"nonce":"0123456789abcdef","mac":"ssXcWeF4d11Xd3ywYljwl+t2MOqKgpry4H+EiZrGKMc="}"#
        );
    }

    #[test]
    fn capability_names_exactly_the_scope_subscribe_only() {
        let patterns = ["clinic-42.*".to_owned(), "lobby".to_owned()];
        assert_eq!(
            subscribe_capability(Some(&patterns), &["understudy.heartbeat"]),
            r#"{"clinic-42.*":["subscribe"],"lobby":["subscribe"],"understudy.heartbeat":["subscribe"]}"#
        );
        assert_eq!(
            subscribe_capability(None, &["understudy.heartbeat"]),
            r#"{"*":["subscribe"]}"#
        );
        let odd = [
            "a*b".to_owned(),
            "*x*".to_owned(),
            String::new(),
            "*".to_owned(),
        ];
        assert_eq!(
            subscribe_capability(Some(&odd), &[]),
            r#"{"*":["subscribe"]}"#,
            "only a trailing * is a wildcard; anything else is dropped, never widened"
        );
        assert_eq!(subscribe_capability(Some(&[]), &[]), "{}");
    }
}
