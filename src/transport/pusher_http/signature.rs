//! The Pusher HTTP API's request signature, checked in full and without a clock of its own
//! (VENDORS.md §3.1): `auth_key` names the app's key, `auth_version` is `1.0`,
//! `auth_timestamp` is within [`MAX_SKEW_SECS`] of now, `body_md5` is the MD5 of the body, and
//! `auth_signature` is `hex(HMAC-SHA256(secret, "POST\n{path}\n{sorted query}"))`, compared in
//! constant time. The HMAC and the string to sign are the vendor adapter's own
//! (`upstream::pusher::signing`), so signing and checking cannot drift apart.

use std::borrow::Cow;

use crate::upstream::pusher::signing;

/// How far `auth_timestamp` may be from the server's clock, either way (Pusher's 600 s).
pub(crate) const MAX_SKEW_SECS: u64 = 600;

/// Why a request's signature is refused (401). No message quotes the secret or the expected
/// signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the query has no {0}: sign the request as Pusher's HTTP API requires (auth_key, auth_timestamp, auth_version, body_md5, auth_signature)")]
    Missing(&'static str),
    #[error("the query gives {0} more than once; give each parameter once")]
    Repeated(String),
    #[error("auth_key is not this app's key; use the key of the app in the path")]
    WrongKey,
    #[error("auth_version must be 1.0")]
    Version,
    #[error("auth_timestamp must be whole seconds since the Unix epoch")]
    BadTimestamp,
    #[error("auth_timestamp is {skew} s away from the server's clock, over the {MAX_SKEW_SECS} s allowed; check the publisher's clock")]
    Expired { skew: u64 },
    #[error("body_md5 is not the MD5 of the body; sign the body exactly as it is sent")]
    BodyMd5,
    #[error(
        "auth_signature does not match: check the app secret and that the path is signed as sent"
    )]
    Signature,
}

/// One request as signed: the method, the path as it was on the wire (`/apps/3/events`), the
/// raw query string and the body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) body: &'a [u8],
}

/// Checks `request` against the app's `key` and `secret` at `now` (seconds since the Unix
/// epoch). The cheap, public checks come first; the HMAC is computed only for a request that
/// passes them.
pub(crate) fn check(
    request: SignedRequest<'_>,
    key: &str,
    secret: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    // Decoded values: the string to sign holds them unescaped (VENDORS.md §3.1). They borrow
    // from the query unless they had escapes.
    let mut params: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::with_capacity(6);
    for (k, v) in url::form_urlencoded::parse(request.query.as_bytes()) {
        if params.iter().any(|(seen, _)| *seen == k) {
            return Err(SignatureError::Repeated(k.chars().take(40).collect()));
        }
        params.push((k, v));
    }
    let get = |name: &'static str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
            .ok_or(SignatureError::Missing(name))
    };
    let presented = get("auth_signature")?;
    if get("auth_key")? != key {
        return Err(SignatureError::WrongKey);
    }
    if get("auth_version")? != "1.0" {
        return Err(SignatureError::Version);
    }
    let timestamp: u64 = get("auth_timestamp")?
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now.abs_diff(timestamp);
    if skew > MAX_SKEW_SECS {
        return Err(SignatureError::Expired { skew });
    }
    // Pusher asks for body_md5 on every request with a body; these requests all have one.
    if !get("body_md5")?.eq_ignore_ascii_case(&signing::body_md5(request.body)) {
        return Err(SignatureError::BodyMd5);
    }
    let signed: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    let message = signing::string_to_sign(request.method, request.path, &signed);
    if signing::signature_matches(secret, message.as_bytes(), presented) {
        Ok(())
    } else {
        Err(SignatureError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pusher's documented worked example (VENDORS.md §3.1).
    const BODY: &[u8] = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &[u8] = b"7ad3773142a6692b25b8";
    const AT: u64 = 1353088179;
    const SIGNATURE: &str = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
    const QUERY: &str = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
                         &body_md5=ec365a775a4cd0599faeb73354201b6f\
                         &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";

    fn req<'a>(query: &'a str, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest {
            method: "POST",
            path: "/apps/3/events",
            query,
            body,
        }
    }

    #[test]
    fn the_documented_vector_passes_within_600_seconds_either_way() {
        for now in [AT, AT + 600, AT - 600] {
            assert_eq!(check(req(QUERY, BODY), KEY, SECRET, now), Ok(()), "{now}");
        }
        // Parameters in any order, the signature in upper case.
        let shuffled = format!(
            "auth_signature={}&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_version=1.0\
             &auth_timestamp=1353088179&auth_key=278d425bdf160c739803",
            SIGNATURE.to_uppercase()
        );
        assert_eq!(check(req(&shuffled, BODY), KEY, SECRET, AT), Ok(()));
    }

    #[test]
    fn each_refusal_names_its_cause() {
        let without = |name: &str| {
            QUERY
                .split('&')
                .filter(|p| !p.starts_with(&format!("{name}=")))
                .collect::<Vec<_>>()
                .join("&")
        };
        let swap = |from: &str, to: &str| QUERY.replace(from, to);
        let cases: Vec<(String, &[u8], u64, SignatureError)> = vec![
            (
                without("auth_signature"),
                BODY,
                AT,
                SignatureError::Missing("auth_signature"),
            ),
            (
                without("auth_key"),
                BODY,
                AT,
                SignatureError::Missing("auth_key"),
            ),
            (
                without("auth_timestamp"),
                BODY,
                AT,
                SignatureError::Missing("auth_timestamp"),
            ),
            (
                without("auth_version"),
                BODY,
                AT,
                SignatureError::Missing("auth_version"),
            ),
            (
                without("body_md5"),
                BODY,
                AT,
                SignatureError::Missing("body_md5"),
            ),
            (
                format!("{QUERY}&auth_key=other"),
                BODY,
                AT,
                SignatureError::Repeated("auth_key".into()),
            ),
            (
                swap("auth_key=278d425bdf160c739803", "auth_key=other"),
                BODY,
                AT,
                SignatureError::WrongKey,
            ),
            (
                swap("auth_version=1.0", "auth_version=2.0"),
                BODY,
                AT,
                SignatureError::Version,
            ),
            (
                swap("auth_timestamp=1353088179", "auth_timestamp=soon"),
                BODY,
                AT,
                SignatureError::BadTimestamp,
            ),
            (
                QUERY.into(),
                BODY,
                AT + 601,
                SignatureError::Expired { skew: 601 },
            ),
            (
                QUERY.into(),
                BODY,
                AT - 601,
                SignatureError::Expired { skew: 601 },
            ),
            (
                QUERY.into(),
                b"{\"name\":\"foo\"}",
                AT,
                SignatureError::BodyMd5,
            ),
            // A changed parameter the signature covers.
            (
                format!("{QUERY}&info=subscription_count"),
                BODY,
                AT,
                SignatureError::Signature,
            ),
            (
                swap(SIGNATURE, &SIGNATURE.replace('d', "e")),
                BODY,
                AT,
                SignatureError::Signature,
            ),
            (
                swap(SIGNATURE, "not-hex"),
                BODY,
                AT,
                SignatureError::Signature,
            ),
        ];
        for (query, body, now, want) in cases {
            assert_eq!(
                check(req(&query, body), KEY, SECRET, now),
                Err(want.clone()),
                "{query}"
            );
        }
        // The same request signed for another path or with another secret.
        let other_path = SignedRequest {
            path: "/apps/4/events",
            ..req(QUERY, BODY)
        };
        assert_eq!(
            check(other_path, KEY, SECRET, AT),
            Err(SignatureError::Signature)
        );
        assert_eq!(
            check(req(QUERY, BODY), KEY, b"7ad3773142a6692b25b9", AT),
            Err(SignatureError::Signature)
        );
    }

    #[test]
    fn extra_parameters_are_signed_unescaped_and_sorted() {
        let body = br#"{"name":"e","channel":"c","data":"x"}"#;
        let md5 = signing::body_md5(body);
        let params = [
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", md5.as_str()),
            ("info", "subscription_count,user_count"),
        ];
        let sts = signing::string_to_sign("POST", "/apps/3/events", &params);
        let signature = signing::hmac_hex(
            &crate::upstream::Secret::new(std::str::from_utf8(SECRET).unwrap()),
            sts.as_bytes(),
        );
        let query = format!(
            "info=subscription_count%2Cuser_count&auth_key={KEY}&auth_timestamp=1353088179\
             &auth_version=1.0&body_md5={md5}&auth_signature={signature}"
        );
        assert_eq!(check(req(&query, body), KEY, SECRET, AT), Ok(()));
    }

    #[test]
    fn no_refusal_quotes_the_expected_signature() {
        let wrong = QUERY.replace(SIGNATURE, &"0".repeat(64));
        let err = check(req(&wrong, BODY), KEY, SECRET, AT).unwrap_err();
        assert!(!err.to_string().contains(SIGNATURE), "{err}");
    }
}
