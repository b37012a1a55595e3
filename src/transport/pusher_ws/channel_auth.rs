//! Socket ids and the authorisation of private channels, as Pusher defines them: a private
//! channel's `auth` is `"{app key}:{hex HMAC-SHA256(app secret, "{socket_id}:{channel}")}"`,
//! which the team's existing auth endpoint (a Pusher server SDK's `authorizeChannel`) already
//! produces with the same secret.

use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::AppConfig;

/// Counts sockets in this process, so that no two get the same id.
static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// A new socket id, `\d+\.\d+` as Pusher's: a random number (so ids are not guessable from one
/// another, nor repeated by a restarted process) and a per-process counter (so they are unique).
pub(crate) fn new_socket_id() -> String {
    let n = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    format!("{}.{n}", rand::random::<u32>())
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum AuthError {
    #[error("private channel {0:?} needs an auth signature (\"key:signature\"); none was given")]
    Missing(String),
    #[error("the auth for {0:?} is signed for another app key")]
    OtherKey(String),
    #[error("invalid signature for {0:?}: expected the hex HMAC-SHA256 of \"socket_id:channel\" with the app secret")]
    BadSignature(String),
}

/// The `auth` value Pusher expects for `channel` on `socket_id` (what `POST /v1/vendor/auth`
/// answers for an app).
pub(crate) fn sign(app: &AppConfig, socket_id: &str, channel: &str) -> String {
    format!("{}:{}", app.key, hex::encode(mac(app, socket_id, channel)))
}

fn mac(app: &AppConfig, socket_id: &str, channel: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(app.secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(socket_id.as_bytes());
    mac.update(b":");
    mac.update(channel.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Checks a private channel's `auth`. The signature is compared in constant time; nothing of the
/// secret or the expected signature is ever put in the error.
pub(crate) fn check(
    app: &AppConfig,
    socket_id: &str,
    channel: &str,
    auth: Option<&str>,
) -> Result<(), AuthError> {
    let auth = auth
        .filter(|a| !a.is_empty())
        .ok_or_else(|| AuthError::Missing(channel.to_string()))?;
    let (key, signature) = auth
        .split_once(':')
        .ok_or_else(|| AuthError::BadSignature(channel.to_string()))?;
    if key != app.key {
        return Err(AuthError::OtherKey(channel.to_string()));
    }
    let presented =
        hex::decode(signature).map_err(|_| AuthError::BadSignature(channel.to_string()))?;
    let expected = mac(app, socket_id, channel);
    if bool::from(expected.ct_eq(&presented)) {
        Ok(())
    } else {
        Err(AuthError::BadSignature(channel.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Forward, Secret};

    fn app() -> AppConfig {
        AppConfig {
            id: "1".into(),
            key: "278d425bdf160c739803".into(),
            secret: Secret::new("7ad3773142a6692b25b8"),
            forward: Forward::AsPublished,
        }
    }

    #[test]
    fn signs_as_pusher_documents_it() {
        // The worked example of Pusher's channel authorisation reference.
        assert_eq!(
            sign(&app(), "1234.1234", "private-foobar"),
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }

    #[test]
    fn only_the_right_signature_for_this_socket_and_channel_passes() {
        let app = app();
        let good = sign(&app, "1.2", "private-a");
        assert_eq!(check(&app, "1.2", "private-a", Some(&good)), Ok(()));
        let bad = |e: fn(String) -> AuthError| Err(e("private-a".into()));
        assert_eq!(
            check(&app, "1.3", "private-a", Some(&good)),
            bad(AuthError::BadSignature)
        );
        assert_eq!(
            check(&app, "1.2", "private-a", None),
            bad(AuthError::Missing)
        );
        assert_eq!(
            check(&app, "1.2", "private-a", Some("")),
            bad(AuthError::Missing)
        );
        let other_key = good.replacen("278d", "xxxx", 1);
        assert_eq!(
            check(&app, "1.2", "private-a", Some(&other_key)),
            bad(AuthError::OtherKey)
        );
        assert_eq!(
            check(&app, "1.2", "private-a", Some("278d425bdf160c739803:zz")),
            bad(AuthError::BadSignature)
        );
        assert_eq!(
            check(&app, "1.2", "private-a", Some("nocolon")),
            bad(AuthError::BadSignature)
        );
    }

    #[test]
    fn socket_ids_are_unique_and_shaped_as_pusher_s() {
        let a = new_socket_id();
        let b = new_socket_id();
        assert_ne!(a, b);
        for id in [a, b] {
            let (l, r) = id.split_once('.').unwrap();
            assert!(
                !l.is_empty() && l.bytes().all(|c| c.is_ascii_digit()),
                "{id}"
            );
            assert!(
                !r.is_empty() && r.bytes().all(|c| c.is_ascii_digit()),
                "{id}"
            );
        }
    }
}
