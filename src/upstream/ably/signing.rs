//! Ably REST authentication: `Authorization: Basic base64(keyName:keySecret)` (VENDORS.md §1.2).
//! Ably accepts Basic auth over TLS only; Ably-compatible test servers accept it over plain HTTP.

use base64::Engine;

use crate::upstream::Secret;

/// The `Authorization` header value for an API key.
pub fn basic_authorization(key_name: &str, key_secret: &Secret) -> String {
    let raw = format!("{key_name}:{}", key_secret.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_basic_header() {
        assert_eq!(
            basic_authorization("xVLyHw.mDYnFA", &Secret::new("secretSECRETsecret")),
            "Basic eFZMeUh3Lm1EWW5GQTpzZWNyZXRTRUNSRVRzZWNyZXQ="
        );
    }
}
