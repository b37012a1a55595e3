use super::*;
use crate::auth::ably::{verify_token, Nonces};
use crate::auth::Apps;
use crate::config::apps::Forward;
use crate::config::secret::Secret;
use crate::core::ChannelName;

const KEY: &str = "xVLyHw.mDYnFA";
const SECRET: &str = "secretSECRETsecret";
const NOW: u64 = 1_700_000_000_000;

fn app() -> AppConfig {
    AppConfig {
        id: "1".into(),
        key: KEY.into(),
        secret: Secret::new(SECRET),
        forward: Forward::AsPublished,
    }
}

/// VENDORS.md §1.2's worked TokenRequest, as ably-js sends it (numbers as numbers).
const DOC_REQUEST: &str = r#"{"keyName":"xVLyHw.mDYnFA","ttl":3600000,"capability":"{\"*\":[\"*\"]}","timestamp":1700000000000,"nonce":"0123456789abcdef","mac":"ssXcWeF4d11Xd3ywYljwl+t2MOqKgpry4H+EiZrGKMc="}"#;

fn parse(json: &str) -> TokenRequestBody {
    serde_json::from_str(json).unwrap()
}

#[test]
fn the_documented_request_is_accepted_once() {
    let nonces = Nonces::default();
    let req = parse(DOC_REQUEST);
    assert!(req.is_signed());
    let grant = req.check_signed(&app(), &nonces, NOW + 5).unwrap();
    assert_eq!(grant.ttl_ms, 3_600_000);
    assert_eq!(grant.capability.as_str(), r#"{"*":["*"]}"#);
    assert_eq!(
        req.check_signed(&app(), &nonces, NOW + 6).unwrap_err(),
        AblyAuthError::NonceReplayed
    );
}

#[test]
fn python_style_nulls_and_string_numbers_sign_the_same_text() {
    // ably-python sends every field, absent ones as null; a mac over empty ttl and capability.
    let text = signed_text(KEY, "", "", "", NOW, "fedcba9876543210");
    let body = format!(
        r#"{{"keyName":"{KEY}","clientId":null,"ttl":null,"nonce":"fedcba9876543210","capability":null,"timestamp":"{NOW}","mac":"{}"}}"#,
        mac(SECRET, &text)
    );
    let grant = parse(&body)
        .check_signed(&app(), &Nonces::default(), NOW)
        .unwrap();
    assert_eq!(grant.ttl_ms, DEFAULT_TTL_MS);
    assert_eq!(grant.capability.as_str(), r#"{"*":["*"]}"#);
    assert_eq!(grant.client_id, None);
}

#[test]
fn msgpack_bodies_read_the_same() {
    let value: serde_json::Value = serde_json::from_str(DOC_REQUEST).unwrap();
    let packed = rmp_serde::to_vec_named(&value).unwrap();
    let req: TokenRequestBody = rmp_serde::from_slice(&packed).unwrap();
    req.check_signed(&app(), &Nonces::default(), NOW).unwrap();
}

#[test]
fn each_refusal_of_a_signed_request() {
    let nonces = Nonces::default();
    let mut other = app();
    other.key = "other.key".into();
    assert_eq!(
        parse(DOC_REQUEST)
            .check_signed(&other, &nonces, NOW)
            .unwrap_err(),
        AblyAuthError::KeyMismatch
    );
    let tampered = DOC_REQUEST.replace("3600000", "86400000");
    assert_eq!(
        parse(&tampered)
            .check_signed(&app(), &nonces, NOW)
            .unwrap_err(),
        AblyAuthError::InvalidMac
    );
    let mut wrong_secret = app();
    wrong_secret.secret = Secret::new("secretSECRETsecreT");
    assert_eq!(
        parse(DOC_REQUEST)
            .check_signed(&wrong_secret, &nonces, NOW)
            .unwrap_err(),
        AblyAuthError::InvalidMac
    );
    assert_eq!(
        parse(DOC_REQUEST)
            .check_signed(&app(), &nonces, NOW + 3 * 60 * 1000)
            .unwrap_err(),
        AblyAuthError::StaleTimestamp
    );
    assert!(nonces.is_empty(), "refused requests take no room");
    let short = DOC_REQUEST.replace("0123456789abcdef", "0123");
    assert!(matches!(
        parse(&short).check_signed(&app(), &nonces, NOW),
        Err(AblyAuthError::InvalidTokenRequest(_))
    ));
}

#[test]
fn params_are_checked() {
    let grant = |json: &str| parse(json).grant();
    assert_eq!(grant(r#"{"ttl":""}"#).unwrap().ttl_ms, DEFAULT_TTL_MS);
    assert_eq!(grant(r#"{"ttl":86400000}"#).unwrap().ttl_ms, MAX_TTL_MS);
    for bad in [
        r#"{"ttl":0}"#,
        r#"{"ttl":86400001}"#,
        r#"{"ttl":"soon"}"#,
        r#"{"ttl":-5}"#,
    ] {
        assert!(
            matches!(grant(bad), Err(AblyAuthError::InvalidTokenRequest(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        grant(r#"{"capability":"[1]"}"#),
        Err(AblyAuthError::InvalidCapability(_))
    ));
    assert!(serde_json::from_str::<TokenRequestBody>(r#"{"ttl":[1]}"#).is_err());
    assert!(serde_json::from_str::<TokenRequestBody>(r#"{"ttl":1.5}"#).is_err());
}

#[test]
fn the_issued_token_is_the_ably_jwt_that_authenticates() {
    let app = app();
    let grant = parse(r#"{"ttl":1500,"capability":"{\"lobby\":[\"publish\"]}","clientId":"k-1"}"#)
        .grant()
        .unwrap();
    let details = grant.issue(&app, NOW + 400);
    assert_eq!(details.issued, NOW);
    assert_eq!(
        details.expires,
        NOW + 2000,
        "1.5 s rounds up to whole seconds"
    );
    assert_eq!(details.key_name, KEY);
    assert_eq!(details.client_id.as_deref(), Some("k-1"));
    let header = jsonwebtoken::decode_header(&details.token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(KEY));
    let apps = Apps::new(&[app]);
    let c = verify_token(&apps, &details.token, NOW + 1999).unwrap();
    assert!(c
        .check_publish(&ChannelName::parse("lobby").unwrap())
        .is_ok());
    assert!(c
        .check_publish(&ChannelName::parse("other").unwrap())
        .is_err());
    assert_eq!(
        verify_token(&apps, &details.token, NOW + 2000).unwrap_err(),
        AblyAuthError::TokenExpired
    );
    let json = serde_json::to_value(&details).unwrap();
    let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "capability",
            "clientId",
            "expires",
            "issued",
            "keyName",
            "token"
        ]
    );
}
