//! Entry points for the `cargo fuzz` targets in `fuzz/` (compiled only with `--cfg fuzzing`).
//! Each takes arbitrary input, runs one of the parsers that face the network or the operator the
//! way a request would, and asserts what must hold whatever the input: no panic, the limits
//! checked, a round trip where there is one, a JSON error where there is an error, no secret in
//! an error message.

use std::sync::OnceLock;

use axum::http::request::Parts;
use axum::response::IntoResponse;

use crate::auth::token::SubscriberAuth;
use crate::config::{Config, Secret, SubscribeAuth};
use crate::core::channel_name::ChannelName;
use crate::core::cursor::Cursor;
use crate::transport::ApiError;
use crate::upstream::VendorConfig;

/// Cursor items a connection may carry in the fuzz runs (`subscribers.max_channels_per_connection`).
const MAX_ITEMS: usize = 100;

/// `Last-Event-ID` and `?cursor=`: a cursor parses within its item limit, and what it encodes
/// parses back to itself.
pub fn cursor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cursor) = Cursor::parse(text, MAX_ITEMS) {
        let encoded = cursor.encode();
        let again = Cursor::parse(&encoded, MAX_ITEMS).expect("an encoded cursor parses");
        assert_eq!(again, cursor, "{encoded}");
        assert!(encoded.split(',').filter(|i| !i.is_empty()).count() <= MAX_ITEMS);
    }
}

/// Channel names and scope patterns: a name that parses is within the documented alphabet and
/// length and matches itself and `*`; matching never panics.
pub fn channel_names(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (name, pattern) = text.split_once('\n').unwrap_or((text, "*"));
    if let Ok(channel) = ChannelName::parse(name) {
        assert_eq!(channel.as_str(), name);
        assert!(!name.is_empty() && name.len() <= crate::core::channel_name::MAX_CHANNEL_NAME_LEN);
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '-')));
        assert!(channel.matches(name) && channel.matches("*"));
        let _ = channel.matches(pattern);
    }
}

/// Subscriber tokens: nothing that was not signed with the secret is accepted, and checking
/// never panics, whatever the header, claims or signature.
pub fn subscriber_token(data: &[u8]) {
    static AUTH: OnceLock<SubscriberAuth> = OnceLock::new();
    let auth = AUTH.get_or_init(|| {
        SubscriberAuth::new(
            SubscribeAuth::Jwt,
            &Secret::new("fuzz-subscriber-secret-0123456789"),
        )
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert!(
        auth.check(Some(text)).is_err(),
        "an unsigned token was accepted: {text:?}"
    );
}

/// Vendor URLs: parsing never panics, and the secret in the URL's userinfo is never echoed in the
/// error or in the parsed configuration's debug output. Echoed means: the output follows the
/// secret when the secret changes (text that merely happens to equal it, such as words of the
/// error message itself, does not count).
pub fn vendor_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let shown = |text: &str| match VendorConfig::from_url(text) {
        Ok(config) => format!("{config:?}"),
        Err(e) => e.to_string(),
    };
    let output = shown(text);
    let Some(secret) = url::Url::parse(text)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        // A secret that is also spelled elsewhere in the URL may show there.
        .filter(|p| p.len() >= 8 && text.matches(p.as_str()).count() == 1)
    else {
        return;
    };
    if !output.contains(&secret) {
        return;
    }
    let rotated: String = secret
        .chars()
        .map(|c| match c {
            'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(c as u8 + 1),
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            c => c,
        })
        .collect();
    if rotated == secret || text.contains(&rotated) {
        return;
    }
    let changed = shown(&text.replacen(&secret, &rotated, 1));
    assert!(
        !changed.contains(&rotated),
        "the secret is echoed: {output:?}"
    );
}

/// Configuration files: loading never panics and lists at least one problem when it refuses.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::load(Some(text), &|_| None) {
        assert!(!e.0.is_empty() && e.0.iter().all(|m| !m.is_empty()));
    }
}

/// The WebSocket opening handshake: a request head is either refused with the JSON error shape
/// (400 `not_websocket` naming the problem) or reaches the upgrade, never a panic.
pub fn ws_handshake(mut parts: Parts) {
    use axum::extract::FromRequestParts;
    let refused = futures_util::FutureExt::now_or_never(
        crate::transport::ws::FuzzHandshake::from_request_parts(&mut parts, &()),
    )
    .expect("the handshake checks without waiting");
    // There is no connection to upgrade here, so even a valid head ends with a refusal.
    let Err(e) = refused else {
        panic!("a head without a connection was accepted")
    };
    assert_json_error(e);
}

/// The head of a connection that opens with `GET /v1/sse`, read without hyper: a whole head
/// is a request with every header it listed, a refusal is the JSON error shape (400
/// `malformed_request` or 431 `request_head_too_large`), never a panic.
pub fn sse_head(data: &[u8]) {
    match crate::app::serve::sse_socket::fuzz_head(data) {
        Ok(None) => {}
        Ok(Some(request)) => {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut again = httparse::Request::new(&mut headers);
            assert!(matches!(
                again.parse(data),
                Ok(httparse::Status::Complete(_))
            ));
            assert_eq!(request.headers().len(), again.headers.len());
        }
        Err(e) => {
            let status = e.status().as_u16();
            assert!(status == 400 || status == 431, "{status}");
            assert_json_error(e);
        }
    }
}

/// The requests of a connection that opens with a publish, taken off its buffer without hyper:
/// a request taken is its head and exactly its `content-length` of body, with every header
/// it listed, and leaves the bytes after it; a head left to hyper or not yet whole leaves the
/// buffer as it was; a refusal is the JSON error shape (400 `malformed_request`, 431
/// `request_head_too_large`); never a panic.
pub fn publish_head(data: &[u8]) {
    use crate::app::serve::publish_socket::{fuzz_take, FuzzTaken};
    match fuzz_take(data) {
        FuzzTaken::Request {
            headers,
            body,
            left,
        } => {
            let mut parsed = [httparse::EMPTY_HEADER; 100];
            let mut again = httparse::Request::new(&mut parsed);
            let Ok(httparse::Status::Complete(head)) = again.parse(data) else {
                panic!("a request was taken from a head that is not whole")
            };
            assert_eq!(headers, again.headers.len());
            assert_eq!(again.method, Some("POST"));
            let length: usize = again
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .expect("a request taken has a content-length");
            assert_eq!(body.len(), length);
            assert_eq!(&body[..], &data[head..head + length]);
            assert_eq!(left, data.len() - head - length);
        }
        FuzzTaken::Nothing { left } => assert_eq!(left, data.len()),
        FuzzTaken::Refused(e) => {
            let status = e.status().as_u16();
            assert!(status == 400 || status == 431, "{status}");
            assert_json_error(e);
        }
    }
}

/// Server event frames: see `transport::ws::fuzz_frames`.
pub fn ws_frames(data: &[u8]) {
    crate::transport::ws::fuzz_frames(data);
}

/// A publish body, parsed and published on a node of its own (memory engine, no vendor): every
/// refusal is the JSON error shape; every acceptance publishes each channel once.
pub fn publish_body(data: &[u8]) {
    static NODE: OnceLock<(tokio::runtime::Runtime, crate::transport::AppState)> = OnceLock::new();
    let (rt, state) = NODE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let state = rt.block_on(async {
            let config = Config::load(Some("[auth]\nsubscribe = \"none\"\n"), &|_| None)
                .expect("the fuzz configuration is valid");
            crate::transport::AppState::new(config, &crate::app::Background::default())
                .expect("a node starts")
        });
        (rt, state)
    });
    let item = match crate::transport::body::parse_json::<crate::transport::wire::PublishBody>(data)
    {
        Ok(item) => item,
        Err(e) => return assert_json_error(e),
    };
    match rt.block_on(crate::transport::publish::publish_item(state, item)) {
        Ok(answer) => assert!(answer.is_object(), "{answer}"),
        Err(e) => assert_json_error(e),
    }
}

fn assert_json_error(e: ApiError) {
    let response = e.into_response();
    let status = response.status();
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status}"
    );
    assert_eq!(
        response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{status}"
    );
}

/// The Ably REST ingress's message bodies (the first byte picks JSON or msgpack): a body that
/// decodes holds 1 to the allowed number of messages, whatever is stored is JSON within the
/// name limit, and every refusal is one of Ably's codes with its status.
pub fn ably_body(data: &[u8]) {
    use crate::transport::ably_rest::{message, Format};
    const MAX: usize = 50;
    static KEY: OnceLock<crate::auth::ably::Credential> = OnceLock::new();
    let credential = KEY.get_or_init(|| crate::auth::ably::Credential {
        app: std::sync::Arc::new(ably_app()),
        capability: None,
        client_id: Some("kiosk-1".into()),
    });
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let format = if first & 1 == 1 {
        Format::Msgpack
    } else {
        Format::Json
    };
    let outcome = message::decode(format, body, MAX).and_then(|messages| {
        assert!(!messages.is_empty() && messages.len() <= MAX);
        message::prepare(messages, credential)
    });
    match outcome {
        Ok(prepared) => {
            for p in prepared {
                serde_json::from_str::<serde_json::Value>(p.data.get())
                    .expect("stored data is JSON");
                assert!(p.name.chars().count() <= 200);
            }
        }
        Err(e) => {
            let (status, code) = e.status_and_code();
            assert!((40000..60000).contains(&code) && u32::from(status.as_u16()) == code / 100);
            assert_eq!(e.body()["error"]["code"], code);
        }
    }
}

/// Ably credentials: any `Authorization` header, and any token request body (JSON or msgpack),
/// is answered without a panic, and no refusal quotes the secret.
pub fn ably_auth(data: &[u8]) {
    use crate::auth::ably::{authenticate, Nonces, TokenRequestBody};
    static APPS: OnceLock<(crate::auth::Apps, Nonces)> = OnceLock::new();
    let (apps, nonces) = APPS.get_or_init(|| {
        (
            crate::auth::Apps::new(&[ably_app()]),
            Nonces::with_capacity(64),
        )
    });
    let now = 1_700_000_000_000;
    let check = |e: crate::auth::ably::AblyAuthError| {
        let text = format!("{e} {e:?}");
        assert!(!text.contains(ABLY_SECRET), "{text}");
    };
    if let Ok(header) = std::str::from_utf8(data) {
        if let Err(e) = authenticate(apps, Some(header), now) {
            check(e);
        }
    }
    let request = serde_json::from_slice::<TokenRequestBody>(data)
        .ok()
        .or_else(|| rmp_serde::from_slice::<TokenRequestBody>(data).ok());
    if let Some(request) = request {
        let app = apps.by_key(ABLY_KEY).expect("the app");
        match request.check_signed(&app, nonces, now) {
            Ok(grant) => assert!(grant.ttl_ms >= 1),
            Err(e) => check(e),
        }
    }
}

const ABLY_KEY: &str = "clinic.app1";
const ABLY_SECRET: &str = "fuzz-secret-0123456789";

fn ably_app() -> crate::config::AppConfig {
    crate::config::AppConfig {
        id: "1".into(),
        key: ABLY_KEY.into(),
        secret: Secret::new(ABLY_SECRET),
        forward: crate::config::Forward::None,
    }
}
