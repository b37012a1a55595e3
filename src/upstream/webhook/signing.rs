//! Webhook signing: `X-Understudy-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.

use crate::upstream::pusher::signing::hmac_hex;
use crate::upstream::Secret;

/// The `X-Understudy-Signature` value for `body`.
pub(crate) fn signature(secret: &Secret, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_hmac_sha256_vector() {
        // RFC-style example used by Wikipedia's HMAC article.
        assert_eq!(
            signature(
                &Secret::new("key"),
                b"The quick brown fox jumps over the lazy dog"
            ),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn event_body_vector() {
        // Cross-checked with Python: hmac.new(b"whsec_test", body, hashlib.sha256).hexdigest()
        assert_eq!(
            signature(
                &Secret::new("whsec_test"),
                br#"{"type":"event","channel":"a","seq":1}"#
            ),
            "sha256=e410aea057637580023e7d9dc5132fcd9fa76c1e3cc5112155c07ca880cc2a7e"
        );
    }
}
