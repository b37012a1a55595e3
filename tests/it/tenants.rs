//! Tenants over real sockets: a key or an app publishes only to its tenant's channels on every
//! ingress (`/v1/publish` and batch, the Pusher HTTP API, the Ably REST ingress) and a Pusher
//! socket subscribes only to its app's tenant's channels; refusals are whole and publish
//! nothing. `quotas` holds each quota to its answer; `reload` changes them live.

mod quotas;
mod reload;

use serde_json::{json, Value};
use understudy::upstream::pusher::signing::signed_query;
use understudy::upstream::Secret;

use crate::ably_ingress::basic;
use crate::support::*;

pub(crate) const KEY_A: &str = "key-clinic-a-0123456789";
pub(crate) const KEY_B: &str = "key-clinic-b-0123456789";
pub(crate) const APP_A: (&str, &str, &str) =
    ("a-app", "clinica.app1", "clinic-a-app-secret-0123456789");
pub(crate) const ADMIN: &str = "tenants-admin-token-0123456789";

/// Two tenants, `clinic-a` (its app `a-app`) and `clinic-b`, with `a` and `b` appended to
/// their tables; subscriber auth off.
pub(crate) fn config(a: &str, b: &str) -> String {
    let (id, key, secret) = APP_A;
    format!(
        "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"oncall\", token = \"{ADMIN}\" }}]\n\
         [[apps]]\nid = \"{id}\"\nkey = \"{key}\"\nsecret = \"{secret}\"\nforward = \"none\"\n\
         [[tenants]]\nid = \"clinic-a\"\nchannels = [\"clinic-a.*\"]\npublisher_keys = [\"{KEY_A}\"]\napps = [\"{id}\"]\n{a}\n\
         [[tenants]]\nid = \"clinic-b\"\nchannels = [\"clinic-b.*\"]\npublisher_keys = [\"{KEY_B}\"]\n{b}\n"
    )
}

/// POSTs `body` to the public `path` with `key` as the bearer: status, `Retry-After`, body.
pub(crate) async fn post_as(
    s: &Server,
    key: &str,
    path: &str,
    body: Value,
) -> (u16, Option<String>, Value) {
    let r = (s.http.post(format!("{}{path}", s.base)))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = (r.headers().get("retry-after")).map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn publish_as(
    s: &Server,
    key: &str,
    channel: &str,
) -> (u16, Option<String>, Value) {
    let body = json!({"channel": channel, "name": "n", "data": 1});
    post_as(s, key, "/v1/publish", body).await
}

/// A Pusher HTTP API trigger by app A, signed as the SDKs sign it: status, `Retry-After`, body.
pub(crate) async fn pusher_trigger(s: &Server, body: Value) -> (u16, Option<String>, Value) {
    let (id, key, secret) = APP_A;
    let path = format!("/apps/{id}/events");
    let body = body.to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let query = signed_query(key, &Secret::new(secret), &path, body.as_bytes(), now);
    let r = (s.http.post(format!("{}{path}?{query}", s.base)))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = (r.headers().get("retry-after")).map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

/// An Ably REST publish by app A: status, `X-Ably-ErrorCode`, `Retry-After`, body.
pub(crate) async fn ably_publish(
    s: &Server,
    channel: &str,
) -> (u16, Option<String>, Option<String>, Value) {
    let (_, key, secret) = APP_A;
    let r = (s
        .http
        .post(format!("{}/channels/{channel}/messages", s.base)))
    .header("authorization", basic(key, secret))
    .json(&json!({"name": "n", "data": "d"}))
    .send()
    .await
    .unwrap();
    let status = r.status().as_u16();
    let header = |h: &str| (r.headers().get(h)).map(|v| v.to_str().unwrap().to_owned());
    let (code, retry) = (header("x-ably-errorcode"), header("retry-after"));
    (status, code, retry, r.json().await.unwrap_or(Value::Null))
}

/// The seqs of `channel`'s history, from the start.
pub(crate) async fn history(s: &Server, channel: &str) -> Vec<u64> {
    let (status, v) = s
        .get(&format!("/v1/channels/{channel}/events?since=0"))
        .await;
    assert_eq!(status, 200, "{v}");
    seqs(v["events"].as_array().unwrap())
}

fn not_in_tenant(channel: &str, tenant: &str, by: &str) -> Value {
    json!({"error": {
        "code": "channel_not_in_tenant",
        "message": format!("channel \"{channel}\" belongs to another tenant; this {by} to tenant {tenant}'s channels only"),
        "channel": channel,
    }})
}

#[tokio::test]
async fn a_key_publishes_only_to_its_tenant_s_channels_and_a_refusal_publishes_nothing() {
    let s = Server::with(&config("", "")).await;
    let (status, _, body) = publish_as(&s, KEY_A, "clinic-b.x").await;
    assert_eq!(
        (status, body),
        (
            403,
            not_in_tenant("clinic-b.x", "clinic-a", "key publishes")
        )
    );
    // A multi-channel event with one foreign channel: refused whole.
    let both = json!({"channels": ["clinic-a.x", "clinic-b.x"], "name": "n", "data": 1});
    let (status, _, body) = post_as(&s, KEY_A, "/v1/publish", both).await;
    assert_eq!(
        (status, body),
        (
            403,
            not_in_tenant("clinic-b.x", "clinic-a", "key publishes")
        )
    );
    // A batch with one foreign event among good ones: nothing of it is published.
    let batch = json!({"events": [
        {"channel": "clinic-a.y", "name": "n", "data": 1},
        {"channel": "clinic-b.y", "name": "n", "data": 2},
    ]});
    let (status, _, body) = post_as(&s, KEY_A, "/v1/publish/batch", batch).await;
    assert_eq!(
        (status, body),
        (
            403,
            not_in_tenant("clinic-b.y", "clinic-a", "key publishes")
        )
    );
    // The node's own key is the default tenant's: it owns what no tenant claims, not theirs.
    let (status, _, body) = publish_as(&s, KEY, "clinic-a.x").await;
    assert_eq!(
        (status, body),
        (403, not_in_tenant("clinic-a.x", "default", "key publishes"))
    );
    for channel in ["clinic-a.x", "clinic-a.y", "clinic-b.x", "clinic-b.y"] {
        assert_eq!(history(&s, channel).await, Vec::<u64>::new(), "{channel}");
    }
    // Each key's own channels work, and the server still serves.
    assert_eq!(publish_as(&s, KEY_A, "clinic-a.x").await.0, 202);
    assert_eq!(publish_as(&s, KEY_B, "clinic-b.x").await.0, 202);
    assert_eq!(publish_as(&s, KEY, "lobby").await.0, 202);
    assert_eq!(history(&s, "clinic-a.x").await, [1]);
    assert_eq!(history(&s, "clinic-b.x").await, [1]);
    let a = quotas::usage(&s, "clinic-a").await;
    assert_eq!(a["usage"]["publishes_accepted"], 1);
    assert_eq!(a["usage"]["publishes_refused"]["scope"], 3);
    // The recorder is the process's, shared by tests running at once: the series, not its count.
    let metrics = s.metrics_text().await;
    for series in [
        r#"understudy_tenant_publish_total{tenant="clinic-a",outcome="refused",reason="scope"} "#,
        r#"understudy_tenant_publish_total{tenant="clinic-a",outcome="accepted"} "#,
    ] {
        assert!(metrics.contains(series), "{series} missing from {metrics}");
    }
}

#[tokio::test]
async fn an_app_publishes_and_subscribes_only_within_its_tenant_on_pusher_and_ably() {
    let s = Server::with(&config("", "")).await;
    // Pusher HTTP API: the app's tenant's channels only, a multi-channel event refused whole.
    let event = json!({"name": "e", "channels": ["clinic-a.p", "clinic-b.p"], "data": "x"});
    let (status, _, body) = pusher_trigger(&s, event).await;
    assert_eq!(
        (status, body),
        (
            403,
            not_in_tenant("clinic-b.p", "clinic-a", "app publishes")
        )
    );
    let (status, _, body) = pusher_trigger(
        &s,
        json!({"name": "e", "channel": "clinic-a.p", "data": "x"}),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    // Ably REST: Ably's error shape, 403 with 40160.
    let (status, code, _, body) = ably_publish(&s, "clinic-b.q").await;
    assert_eq!((status, code.as_deref()), (403, Some("40160")), "{body}");
    assert_eq!(
        body["error"]["message"],
        "channel \"clinic-b.q\" belongs to another tenant; this app publishes to tenant clinic-a's channels only"
    );
    assert_eq!(ably_publish(&s, "clinic-a.q").await.0, 201);
    assert_eq!(history(&s, "clinic-b.p").await, Vec::<u64>::new());
    assert_eq!(history(&s, "clinic-b.q").await, Vec::<u64>::new());
    assert_eq!(history(&s, "clinic-a.p").await, [1]);
    assert_eq!(history(&s, "clinic-a.q").await, [1]);

    // A Pusher socket of the app: 4009 for another tenant's channel, its own still served.
    let url = format!(
        "{}/app/{}?protocol=7&client=js&version=8.4.0",
        s.base.replace("http://", "ws://"),
        APP_A.1
    );
    let mut ws = ws_connect(&url).await;
    let hello = pusher_next(&mut ws).await;
    assert_eq!(hello["event"], "pusher:connection_established");
    let subscribe = |c: &str| json!({"event": "pusher:subscribe", "data": {"channel": c}});
    ws_send(&mut ws, subscribe("clinic-b.p")).await;
    let refused = pusher_next(&mut ws).await;
    assert_eq!(
        refused,
        json!({"event": "pusher:error", "channel": "clinic-b.p", "data": {
            "code": 4009,
            "message": "channel \"clinic-b.p\" belongs to another tenant; this app subscribes to tenant clinic-a's channels only",
        }})
    );
    ws_send(&mut ws, subscribe("clinic-a.p")).await;
    let ok = pusher_next(&mut ws).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
}

/// The next Pusher message other than pings.
pub(crate) async fn pusher_next(ws: &mut Ws) -> Value {
    loop {
        let v = ws_next_any(ws).await;
        if v["event"] != "pusher:ping" {
            return v;
        }
    }
}
