//! Every bad input gets its documented status and code, and the server keeps serving afterwards.

use serde_json::{json, Value};

use crate::support::*;

async fn raw_post(
    s: &Server,
    path: &str,
    key: Option<&str>,
    ctype: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = s.http.post(format!("{}{path}", s.base)).body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(c) = ctype {
        req = req.header("content-type", c);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test]
async fn bad_publishes_get_their_documented_errors_and_the_server_keeps_serving() {
    let s = Server::start().await;
    let json_ct = Some("application/json");
    let ok = br#"{"channel":"a","name":"x"}"#.to_vec();
    // (what, publisher key, content type, body, status, code)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("no key", None, json_ct, ok.clone(), 401, "unauthorized"),
        ("wrong key", Some("nope"), json_ct, ok.clone(), 401, "unauthorized"),
        ("no content type", Some(KEY), None, ok.clone(), 415, "unsupported_media_type"),
        ("text content type", Some(KEY), Some("text/plain"), ok.clone(), 415, "unsupported_media_type"),
        ("oversized", Some(KEY), json_ct, format!(r#"{{"channel":"a","name":"x","data":"{}"}}"#, "x".repeat(70_000)).into_bytes(), 413, "payload_too_large"),
        ("syntax", Some(KEY), json_ct, b"{\"channel\": \"a\",\n \"name\": }".to_vec(), 400, "invalid_json"),
        ("trailing junk", Some(KEY), json_ct, br#"{"channel":"a","name":"x"} x"#.to_vec(), 400, "invalid_json"),
        ("missing name", Some(KEY), json_ct, br#"{"channel":"a"}"#.to_vec(), 422, "invalid_field"),
        ("wrong type", Some(KEY), json_ct, br#"{"channel":"a","name":7}"#.to_vec(), 422, "invalid_field"),
        ("unknown field", Some(KEY), json_ct, br#"{"channel":"a","name":"x","chanel":1}"#.to_vec(), 422, "invalid_field"),
        ("no channel", Some(KEY), json_ct, br#"{"name":"x"}"#.to_vec(), 422, "invalid_field"),
        ("both channel forms", Some(KEY), json_ct, br#"{"channel":"a","channels":["b"],"name":"x"}"#.to_vec(), 422, "invalid_field"),
        ("bad channel", Some(KEY), json_ct, br#"{"channel":"a b","name":"x"}"#.to_vec(), 422, "invalid_channel"),
        ("long channel", Some(KEY), json_ct, format!(r#"{{"channel":"{}","name":"x"}}"#, "c".repeat(201)).into_bytes(), 422, "invalid_channel"),
        ("too many channels", Some(KEY), json_ct, serde_json::to_vec(&json!({"channels": (0..101).map(|i| format!("c{i}")).collect::<Vec<_>>(), "name": "x"})).unwrap(), 422, "too_many_channels"),
        ("empty name", Some(KEY), json_ct, br#"{"channel":"a","name":""}"#.to_vec(), 422, "invalid_field"),
        ("channel listed twice", Some(KEY), json_ct, br#"{"channels":["a","b","a"],"name":"x"}"#.to_vec(), 422, "invalid_field"),
    ];
    for (what, key, ctype, body, status, want) in cases {
        let (got, v) = raw_post(&s, "/v1/publish", key, ctype, body).await;
        assert_eq!((got, code(&v)), (status, want), "{what}: {v}");
        assert!(
            v["error"]["message"].as_str().is_some_and(|m| m.len() > 10),
            "{what}: {v}"
        );
    }
    let (_, v) = raw_post(
        &s,
        "/v1/publish",
        Some(KEY),
        json_ct,
        b"{\n\"channel\": ,}".to_vec(),
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2 column"),
        "{v}"
    );
    let (_, v) = raw_post(
        &s,
        "/v1/publish",
        Some(KEY),
        json_ct,
        br#"{"channel":"a","name":7}"#.to_vec(),
    )
    .await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("name"),
        "{v}"
    );

    let (status, v) = s.post("/v1/publish/batch", json!({"events": (0..501).map(|_| json!({"channel":"a","name":"x"})).collect::<Vec<_>>()})).await;
    assert_eq!((status, code(&v)), (422, "too_many_events"));
    let (status, v) = s.get("/v1/nothing-here").await;
    assert_eq!((status, code(&v)), (404, "not_found"));
    let r = s
        .http
        .delete(format!("{}/v1/publish", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // Nothing above was published, and the server still serves correct traffic.
    assert_eq!(s.publish_seq("a", 1).await, 1);
    let (_, v) = s.get("/v1/channels/a/events?since=0").await;
    assert_eq!(seqs(v["events"].as_array().unwrap()), vec![1]);
}

#[tokio::test]
async fn bad_subscribe_requests_get_their_documented_errors() {
    let s = Server::start().await;
    let cases = [
        ("/v1/channels/a%20b/events", 422, "invalid_channel"),
        ("/v1/channels/a/events?since=x", 400, "invalid_query"),
        ("/v1/channels/a/events?limit=0", 400, "invalid_query"),
        ("/v1/channels/a/events?wait_ms=60000", 400, "invalid_query"),
        ("/v1/sse", 400, "invalid_query"),
        ("/v1/sse?channel=a&cursor=garbage", 400, "invalid_cursor"),
        ("/v1/sse?channel=bad!", 422, "invalid_channel"),
        // A plain GET of the WebSocket route, without the handshake headers.
        ("/v1/ws?channel=a", 400, "not_websocket"),
    ];
    for (path, status, want) in cases {
        let (got, v) = s.get(path).await;
        assert_eq!((got, code(&v)), (status, want), "{path}: {v}");
    }
    let r = tokio_tungstenite::connect_async(s.ws_url("?channel=no%2Fslash")).await;
    assert!(r.is_err(), "a bad channel is refused before the upgrade");

    // Bad WebSocket messages get an error message and the connection stays usable.
    let mut ws = ws_connect(&s.ws_url("")).await;
    ws_expect(&mut ws, "welcome").await;
    ws.send_text("not json").await;
    assert_eq!(ws_expect(&mut ws, "error").await["code"], "invalid_message");
    ws_send(&mut ws, json!({"type": "subscribe", "channel": "a b"})).await;
    let e = ws_expect(&mut ws, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["channel"].as_str()),
        (Some("invalid_channel"), Some("a b"))
    );
    ws_send(&mut ws, json!({"type": "subscribe", "channel": "fine"})).await;
    ws_expect(&mut ws, "subscribed").await;
    s.publish_seq("fine", 1).await;
    assert_eq!(ws_expect(&mut ws, "event").await["seq"], 1);
}

trait SendText {
    async fn send_text(&mut self, t: &str);
}

impl SendText for Ws {
    async fn send_text(&mut self, t: &str) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::Text(t.into()))
            .await
            .unwrap();
    }
}
