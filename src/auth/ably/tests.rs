use base64::Engine as _;

use super::*;
use crate::config::apps::Forward;
use crate::config::secret::Secret;

const KEY: &str = "xVLyHw.mDYnFA";
const SECRET: &str = "secretSECRETsecret";
/// VENDORS.md §1.2's worked example: iat 1700000000, exp 1700003600, capability {"*":["*"]}.
const DOC_JWT: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiIsImtpZCI6InhWTHlIdy5tRFluRkEifQ.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwieC1hYmx5LWNhcGFiaWxpdHkiOiJ7XCIqXCI6W1wiKlwiXX0ifQ.ygK40hyVWJYz9HS1kHnXkgqpKb0q_6PFTK7Xvhx30x0";
const BEFORE_EXP: u64 = 1_700_000_001_000;
const AT_EXP: u64 = 1_700_003_600_000;

fn apps() -> Apps {
    Apps::new(&[AppConfig {
        id: "1".into(),
        key: KEY.into(),
        secret: Secret::new(SECRET),
        forward: Forward::AsPublished,
    }])
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn ch(name: &str) -> ChannelName {
    ChannelName::parse(name).unwrap()
}

#[test]
fn basic_auth_takes_the_apps_key_name_and_secret_only() {
    let apps = apps();
    // VENDORS.md §1.2's worked Basic header.
    let c = authenticate(
        &apps,
        Some("Basic eFZMeUh3Lm1EWW5GQTpzZWNyZXRTRUNSRVRzZWNyZXQ="),
        0,
    )
    .unwrap();
    assert_eq!(c.app.key, KEY);
    assert!(c.capability.is_none() && c.check_publish(&ch("any")).is_ok());
    assert!(authenticate(
        &apps,
        Some(&format!("basic {}", b64(&format!("{KEY}:{SECRET}")))),
        0
    )
    .is_ok());
    for bad in [
        b64(&format!("{KEY}:secretSECRETsecreT")),
        b64(&format!("{KEY}:")),
        b64(&format!("other.key:{SECRET}")),
        b64(&format!("{KEY}{SECRET}")),
        "not base64!".to_owned(),
        b64("\u{0}\u{ff}"),
    ] {
        assert_eq!(
            authenticate(&apps, Some(&format!("Basic {bad}")), 0).unwrap_err(),
            AblyAuthError::InvalidCredentials,
            "{bad}"
        );
    }
}

#[test]
fn no_or_unknown_scheme_is_missing_credentials() {
    let apps = apps();
    for header in [
        None,
        Some(""),
        Some("Basic"),
        Some("Bearer "),
        Some("Token abc"),
    ] {
        assert_eq!(
            authenticate(&apps, header, 0).unwrap_err(),
            AblyAuthError::Missing,
            "{header:?}"
        );
    }
}

#[test]
fn the_documented_jwt_is_accepted_raw_and_base64_until_it_expires() {
    let apps = apps();
    for presented in [DOC_JWT.to_owned(), b64(DOC_JWT)] {
        let c = authenticate(&apps, Some(&format!("Bearer {presented}")), BEFORE_EXP).unwrap();
        assert_eq!(c.app.key, KEY);
        assert!(c.check_publish(&ch("anything")).is_ok());
        assert_eq!(
            authenticate(&apps, Some(&format!("Bearer {presented}")), AT_EXP).unwrap_err(),
            AblyAuthError::TokenExpired
        );
    }
}

#[test]
fn tokens_of_other_keys_or_secrets_are_unrecognised_and_garbage_is_malformed() {
    let apps = apps();
    let other_secret = AppConfig {
        id: "1".into(),
        key: KEY.into(),
        secret: Secret::new("another-secret-0123"),
        forward: Forward::None,
    };
    let cap = Capability::parse("").unwrap();
    let forged = issue_token(&other_secret, &cap, None, 1, u64::MAX / 2000);
    assert_eq!(
        verify_token(&apps, &forged, BEFORE_EXP).unwrap_err(),
        AblyAuthError::UnrecognisedToken
    );
    let other_key = AppConfig {
        key: "other.key".into(),
        secret: Secret::new(SECRET),
        ..other_secret
    };
    let stranger = issue_token(&other_key, &cap, None, 1, u64::MAX / 2000);
    assert_eq!(
        verify_token(&apps, &stranger, BEFORE_EXP).unwrap_err(),
        AblyAuthError::UnrecognisedToken
    );
    for garbage in ["abc", "a.b.c", "!!!", &b64("not a jwt")] {
        assert!(
            matches!(
                verify_token(&apps, garbage, BEFORE_EXP),
                Err(AblyAuthError::MalformedToken(_))
            ),
            "{garbage}"
        );
    }
    // No kid, another algorithm, no exp.
    let secret = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"iat": 1, "exp": 4_000_000_000u64}),
        &secret,
    )
    .unwrap();
    let mut hs512 = Header::new(Algorithm::HS512);
    hs512.kid = Some(KEY.into());
    let hs512 = jsonwebtoken::encode(
        &hs512,
        &serde_json::json!({"iat": 1, "exp": 4_000_000_000u64}),
        &secret,
    )
    .unwrap();
    let mut kid = Header::new(Algorithm::HS256);
    kid.kid = Some(KEY.into());
    let no_exp = jsonwebtoken::encode(&kid, &serde_json::json!({"iat": 1}), &secret).unwrap();
    for bad in [no_kid, hs512, no_exp] {
        assert!(
            matches!(
                verify_token(&apps, &bad, BEFORE_EXP),
                Err(AblyAuthError::MalformedToken(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_token_publishes_only_where_its_capability_says() {
    let apps = apps();
    let app = apps.by_key(KEY).unwrap();
    let cap = Capability::parse(r#"{"clinic-42:*":["publish"],"lobby":["subscribe"]}"#).unwrap();
    let token = issue_token(&app, &cap, Some("kiosk-7"), 1_700_000_000, 1_700_000_060);
    let c = verify_token(&apps, &token, BEFORE_EXP).unwrap();
    assert_eq!(c.client_id.as_deref(), Some("kiosk-7"));
    assert!(c.check_publish(&ch("clinic-42:room")).is_ok());
    assert_eq!(
        c.check_publish(&ch("lobby")).unwrap_err(),
        AblyAuthError::Forbidden("lobby".into())
    );
    assert_eq!(
        verify_token(&apps, &token, 1_700_000_060_000).unwrap_err(),
        AblyAuthError::TokenExpired
    );
}

#[test]
fn errors_never_quote_the_secret_or_the_token() {
    let apps = apps();
    let header = format!("Basic {}", b64(&format!("{KEY}:{SECRET}x")));
    let err = authenticate(&apps, Some(&header), 0).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(SECRET) && !text.contains(&header[6..]),
        "{text}"
    );
    let err = verify_token(&apps, DOC_JWT, AT_EXP).unwrap_err();
    assert!(!format!("{err} {err:?}").contains(DOC_JWT));
}
