//! Pusher HTTP API request signing (VENDORS.md §3.1):
//! `auth_signature = hex(HMAC-SHA256(secret, METHOD\npath\nsorted_query))`, where the sorted
//! query holds `auth_key`, `auth_timestamp`, `auth_version=1.0`, `body_md5` and any other
//! parameter, keys lower-cased, values not escaped. Also the private-channel subscription
//! signature, `key:hex(HMAC-SHA256(secret, socket_id:channel))`.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::upstream::Secret;

/// Lower-case hex MD5 of the raw body.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// `METHOD\npath\nk1=v1&k2=v2...`, parameters sorted by lower-cased key. Built in one
/// allocation: the ingress computes this for every Pusher request it checks.
pub fn string_to_sign(method: &str, path: &str, params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(Cow<'_, str>, &str)> = params
        .iter()
        .map(|(k, v)| {
            let key = if k.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(k.to_ascii_lowercase())
            } else {
                Cow::Borrowed(*k)
            };
            (key, *v)
        })
        .collect();
    pairs.sort();
    let len = method.len()
        + path.len()
        + 2
        + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>();
    let mut out = String::with_capacity(len);
    out.extend(method.chars().map(|c| c.to_ascii_uppercase()));
    out.push('\n');
    out.push_str(path);
    out.push('\n');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Lower-case hex HMAC-SHA256 of `message` under `secret`.
pub fn hmac_hex(secret: &Secret, message: &[u8]) -> String {
    hex::encode(
        mac(secret.expose().as_bytes(), message)
            .finalize()
            .into_bytes(),
    )
}

/// Whether `presented` is the lower- or upper-case hex HMAC-SHA256 of `message` under `secret`,
/// compared in constant time (the signature a Pusher HTTP API request carries, checked by the
/// ingress with the app's secret). A presented value that is not 64 hex digits never matches.
pub fn signature_matches(secret: &[u8], message: &[u8], presented: &str) -> bool {
    let Ok(presented) = hex::decode(presented) else {
        return false;
    };
    mac(secret, message).verify_slice(&presented).is_ok()
}

/// HMAC-SHA256 under `key`, fed `message`: the one place both signing and checking compute it.
fn mac(key: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC-SHA256 takes keys of any length");
    mac.update(message);
    mac
}

/// The `auth` value that lets the connection `socket_id` subscribe to the private `channel`
/// (Pusher "channel authorization"): `key:hex(HMAC-SHA256(secret, "socket_id:channel"))`.
pub fn channel_auth(key: &str, secret: &Secret, socket_id: &str, channel: &str) -> String {
    let signature = hmac_hex(secret, format!("{socket_id}:{channel}").as_bytes());
    format!("{key}:{signature}")
}

/// Whether `socket_id` has the shape Pusher servers give out: `digits.digits`. Anything else is
/// refused before signing, so a signature is never made over a string that could carry a
/// second `:`-separated part.
pub fn is_socket_id(socket_id: &str) -> bool {
    let Some((a, b)) = socket_id.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    digits(a) && digits(b)
}

/// The complete signed query string for a `POST` of `body` to `path`.
pub fn signed_query(key: &str, secret: &Secret, path: &str, body: &[u8], timestamp: u64) -> String {
    let timestamp = timestamp.to_string();
    let md5 = body_md5(body);
    let params = [
        ("auth_key", key),
        ("auth_timestamp", timestamp.as_str()),
        ("auth_version", "1.0"),
        ("body_md5", md5.as_str()),
    ];
    let signature = hmac_hex(secret, string_to_sign("POST", path, &params).as_bytes());
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    query.append_pair("auth_signature", &signature);
    query.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pusher's documented worked example (VENDORS.md §3.1).
    const BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;

    #[test]
    fn documented_vector_body_md5() {
        assert_eq!(
            body_md5(BODY.as_bytes()),
            "ec365a775a4cd0599faeb73354201b6f"
        );
    }

    #[test]
    fn documented_vector_string_to_sign_and_signature() {
        let md5 = body_md5(BODY.as_bytes());
        // Deliberately unsorted: the signer sorts.
        let params = [
            ("body_md5", md5.as_str()),
            ("auth_version", "1.0"),
            ("auth_key", "278d425bdf160c739803"),
            ("auth_timestamp", "1353088179"),
        ];
        let sts = string_to_sign("post", "/apps/3/events", &params);
        assert_eq!(
            sts,
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179\
             &auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            hmac_hex(&Secret::new("7ad3773142a6692b25b8"), sts.as_bytes()),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn documented_vector_signed_query() {
        let q = signed_query(
            "278d425bdf160c739803",
            &Secret::new("7ad3773142a6692b25b8"),
            "/apps/3/events",
            BODY.as_bytes(),
            1353088179,
        );
        assert_eq!(
            q,
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn documented_vector_signature_matches_in_either_case_and_nothing_else() {
        let sts = "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179\
                   &auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f";
        let good = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
        let secret = b"7ad3773142a6692b25b8";
        assert!(signature_matches(secret, sts.as_bytes(), good));
        assert!(signature_matches(
            secret,
            sts.as_bytes(),
            &good.to_uppercase()
        ));
        assert!(!signature_matches(
            b"7ad3773142a6692b25b9",
            sts.as_bytes(),
            good
        ));
        assert!(!signature_matches(secret, b"POST\n/apps/4/events", good));
        for bad in ["", &good[..63], &good[..62], "zz", &format!("{good}00")] {
            assert!(!signature_matches(secret, sts.as_bytes(), bad), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_lowercased_and_values_are_not_escaped() {
        let sts = string_to_sign(
            "GET",
            "/apps/3/channels",
            &[("Name", "Something else"), ("auth_key", "k")],
        );
        assert_eq!(sts, "GET\n/apps/3/channels\nauth_key=k&name=Something else");
    }

    #[test]
    fn private_channel_auth_vector() {
        // VENDORS.md §3.1: HMAC-SHA256(secret, "<socket_id>:<channel>").
        assert_eq!(
            hmac_hex(
                &Secret::new("7ad3773142a6692b25b8"),
                b"1234.1234:private-foobar"
            ),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert_eq!(
            channel_auth(
                "278d425bdf160c739803",
                &Secret::new("7ad3773142a6692b25b8"),
                "1234.1234",
                "private-foobar"
            ),
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }

    #[test]
    fn socket_ids_are_digits_dot_digits() {
        for ok in ["1234.1234", "0.1", "123456789.987654321"] {
            assert!(is_socket_id(ok), "{ok}");
        }
        for bad in [
            "", "1234", "1234.", ".1", "1.2.3", "a.1", "1.2:x", " 1.2", "1.2\n", "1.-2",
        ] {
            assert!(!is_socket_id(bad), "{bad:?}");
        }
    }
}
