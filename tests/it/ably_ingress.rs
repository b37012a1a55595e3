//! The Ably REST ingress (`POST /channels/{channel}/messages`, `POST /keys/{keyName}/requestToken`)
//! over real sockets: every refusal answers Ably's status, code and body and publishes nothing;
//! message ids are idempotency keys. `sdk` drives the official Ably SDKs against it; `forward`
//! checks what reaches a real vendor; `engine` a Redis engine that does not answer;
//! `token` the `requestToken` exchange.

mod engine;
mod forward;
mod sdk;
mod token;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::*;

pub(crate) const APP_KEY: &str = "clinic.app1";
pub(crate) const APP_SECRET: &str = "s3cretS3cretS3cret_x";

/// A server with two apps: `clinic.app1` (forwarded as published) and `quiet.app` (not
/// forwarded), subscriber auth off.
pub(crate) fn apps_toml() -> String {
    format!(
        "[auth]\nsubscribe = \"none\"\n\
         [[apps]]\nid = \"clinic\"\nkey = \"{APP_KEY}\"\nsecret = \"{APP_SECRET}\"\n\
         [[apps]]\nid = \"quiet\"\nkey = \"quiet.app\"\nsecret = \"quietQuietQuiet_0123\"\nforward = \"none\"\n"
    )
}

pub(crate) fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An Ably JWT for `key`, signed with `secret`.
pub(crate) fn ably_jwt(key: &str, secret: &str, capability: &str, iat: u64, exp: u64) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.to_owned());
    jsonwebtoken::encode(
        &header,
        &json!({"iat": iat, "exp": exp, "x-ably-capability": capability}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub(crate) fn basic(key: &str, secret: &str) -> String {
    let raw = format!("{key}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A POST with `auth` as the Authorization header and a body of `content_type`.
pub(crate) async fn post(
    s: &Server,
    path: &str,
    auth: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value, Option<String>) {
    let mut req = s
        .http
        .post(format!("{}{path}", s.base))
        .header("content-type", content_type)
        .body(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let code = (r.headers().get("x-ably-errorcode")).map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap_or(Value::Null), code)
}

pub(crate) async fn publish_json(
    s: &Server,
    channel: &str,
    auth: &str,
    body: Value,
) -> (u16, Value) {
    let path = format!("/channels/{channel}/messages");
    let (status, v, _) = post(
        s,
        &path,
        Some(auth),
        "application/json",
        body.to_string().into(),
    )
    .await;
    (status, v)
}

/// The events of `channel` in history, from the start.
pub(crate) async fn history(s: &Server, channel: &str) -> Vec<Value> {
    let (status, polled) = s
        .get(&format!("/v1/channels/{channel}/events?since=0"))
        .await;
    assert_eq!(status, 200, "{polled}");
    polled["events"].as_array().unwrap().clone()
}

/// Asserts `got` is Ably's error answer with `status` and `code`, and names nothing secret.
pub(crate) fn assert_refused(
    what: &str,
    got: (u16, Value, Option<String>),
    status: u16,
    code: u64,
) {
    let (st, body, header) = got;
    assert_eq!(
        (st, body["error"]["code"].as_u64()),
        (status, Some(code)),
        "{what}: {body}"
    );
    assert_eq!(body["error"]["statusCode"], status, "{what}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}"
    );
    assert_eq!(header, Some(code.to_string()), "{what}: X-Ably-ErrorCode");
    assert!(
        !body.to_string().contains(APP_SECRET),
        "{what}: the secret was echoed"
    );
}

#[tokio::test]
async fn each_refusal_answers_ablys_code_and_publishes_nothing() {
    let s = Server::with(&apps_toml()).await;
    let now = now_s();
    let key = basic(APP_KEY, APP_SECRET);
    let path = "/channels/ward-1/messages";
    let one = json!({"name": "n", "data": "d"}).to_string().into_bytes();
    let bearer = |t: String| format!("Bearer {t}");
    let expired = bearer(ably_jwt(
        APP_KEY,
        APP_SECRET,
        r#"{"*":["*"]}"#,
        now - 7200,
        now - 3600,
    ));
    let subscribe_only = bearer(ably_jwt(
        APP_KEY,
        APP_SECRET,
        r#"{"*":["subscribe"]}"#,
        now,
        now + 600,
    ));
    let other_channel = bearer(ably_jwt(
        APP_KEY,
        APP_SECRET,
        r#"{"ward-2":["publish"]}"#,
        now,
        now + 600,
    ));
    let forged = bearer(ably_jwt(
        APP_KEY,
        "not-the-secret-0123",
        r#"{"*":["*"]}"#,
        now,
        now + 600,
    ));
    let json = "application/json";
    for (what, auth, body, status, code) in [
        ("no credentials", None, one.clone(), 401, 40101),
        (
            "wrong secret",
            Some(basic(APP_KEY, "s3cretS3cretS3cret_y")),
            one.clone(),
            401,
            40101,
        ),
        (
            "unknown key",
            Some(basic("other.key", APP_SECRET)),
            one.clone(),
            401,
            40101,
        ),
        (
            "expired token",
            Some(expired.clone()),
            one.clone(),
            401,
            40142,
        ),
        (
            "no publish capability",
            Some(subscribe_only.clone()),
            one.clone(),
            403,
            40160,
        ),
        (
            "capability for another channel",
            Some(other_channel),
            one.clone(),
            403,
            40160,
        ),
        (
            "token of another secret",
            Some(forged),
            one.clone(),
            401,
            40140,
        ),
        (
            "garbage token",
            Some("Bearer x.y".into()),
            one.clone(),
            401,
            40144,
        ),
        (
            "invalid JSON",
            Some(key.clone()),
            b"{\"name\":".to_vec(),
            400,
            40000,
        ),
        (
            "a number as data",
            Some(key.clone()),
            br#"{"data":5}"#.to_vec(),
            400,
            40013,
        ),
        (
            "encrypted data",
            Some(key.clone()),
            br#"[{"data":"x"},{"data":"eA==","encoding":"cipher+aes-256-cbc/base64"}]"#.to_vec(),
            400,
            40013,
        ),
        (
            "over 64 KiB",
            Some(key.clone()),
            json!({"data": "x".repeat(65537)}).to_string().into(),
            413,
            40009,
        ),
        (
            "over the body limit",
            Some(key.clone()),
            vec![b' '; 600 * 1024],
            413,
            40009,
        ),
        (
            "a bad id",
            Some(key.clone()),
            br#"[{"data":"x","id":"a:0"},{"data":"y","id":""}]"#.to_vec(),
            400,
            40003,
        ),
    ] {
        assert_refused(
            what,
            post(&s, path, auth.as_deref(), json, body).await,
            status,
            code,
        );
    }
    let (st, _, code) = post(&s, path, Some(&key), "text/plain", one.clone()).await;
    assert_eq!((st, code.as_deref()), (400, Some("40000")), "text/plain");
    let bad_name = post(
        &s,
        "/channels/a%20b/messages",
        Some(&key),
        json,
        one.clone(),
    )
    .await;
    assert_refused("a channel understudy cannot hold", bad_name, 400, 40010);
    let r = s
        .http
        .get(format!("{}{path}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["x-ably-errorcode"], "40500");

    assert!(
        history(&s, "ward-1").await.is_empty(),
        "a refused request published nothing"
    );
    // The server still serves, through the same route and the others.
    let (status, ok) = publish_json(&s, "ward-1", &key, json!({"name": "n", "data": "d"})).await;
    assert_eq!(status, 201, "{ok}");
    assert_eq!(history(&s, "ward-1").await.len(), 1);
    assert_eq!(s.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn a_message_id_publishes_once_and_the_answer_has_a_serial_per_message() {
    let s = Server::with(&apps_toml()).await;
    let key = basic(APP_KEY, APP_SECRET);
    let mut ws = ws_connect(&s.ws_url("?channel=ward-3")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    let batch = json!([
        {"id": "b:0", "name": "a", "data": "1"},
        {"id": "b:1", "name": "b", "data": "{\"x\":2}", "encoding": "json"}
    ]);
    let (status, first) = publish_json(&s, "ward-3", &key, batch.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["channel"], "ward-3");
    assert_eq!(first["messageId"], "b:0");
    let serials = first["serials"].as_array().unwrap().clone();
    assert_eq!(serials.len(), 2);
    let (status, again) = publish_json(&s, "ward-3", &key, batch).await;
    assert_eq!(
        (status, &again["serials"]),
        (201, &json!(serials)),
        "a retry answers the same serials"
    );
    let (_, next) = publish_json(&s, "ward-3", &key, json!({"name": "c"})).await;
    let events = history(&s, "ward-3").await;
    let got: Vec<_> = events
        .iter()
        .map(|e| (e["seq"].clone(), e["id"].clone(), e["data"].clone()))
        .collect();
    assert_eq!(
        got[..2],
        [
            (json!(1), json!("b:0"), json!("1")),
            (json!(2), json!("b:1"), json!({"x": 2}))
        ]
    );
    assert_eq!(
        got.len(),
        3,
        "the retried messages were not published again: {events:?}"
    );
    assert_eq!(events[2]["name"], "c");
    assert_eq!(events[2]["data"], Value::Null);
    let epoch = events[0]["epoch"].as_str().unwrap();
    assert_eq!(next["serials"], json!([format!("{epoch}:3")]));
    for want in &events {
        assert_eq!(&ws_expect(&mut ws, "event").await, want);
    }
}
