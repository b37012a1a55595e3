//! The admin API: authenticated by named tokens, status, and operator modes that change the route
//! every client sees.

use serde_json::{json, Value};

use crate::support::*;

const ADMIN: &str = "test-admin-token-0123456789";

async fn admin(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = s.http.request(method, format!("{}{path}", s.admin));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn config() -> String {
    format!("[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"alice\", token = \"{ADMIN}\" }}]\n")
}

#[tokio::test]
async fn admin_calls_need_a_known_token() {
    let s = Server::with(&config()).await;
    for token in [None, Some("wrong-token-0123456789")] {
        let (status, v) = admin(&s, reqwest::Method::GET, "/admin/status", token, None).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );
    }
    let (status, v) = admin(&s, reqwest::Method::GET, "/admin/status", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["route"]["route"], "self");
    assert_eq!(v["route"]["reason"], "no vendor configured");
    assert_eq!(v["mode"]["mode"], "auto");
    // The admin API is not on the public listener.
    let (status, _) = s.get("/admin/status").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_forced_mode_changes_the_route_for_every_client_and_records_who() {
    let s = Server::with(&config()).await;
    let (_, route) = s.get("/v1/route").await;
    assert_eq!(
        (route["route"].as_str(), route["vendor"].clone()),
        (Some("self"), Value::Null)
    );

    let mut ws = ws_connect(&s.ws_url("?channel=a")).await;
    let mut sse = Sse::open(&s, "?channel=a", None).await;
    sse.expect("subscribed").await;
    // The WebSocket announces the route right after welcome.
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(ws_next_any(&mut ws).await);
    }
    assert_eq!(first[1]["type"], "route", "{first:?}");

    let (status, v) = admin(
        &s,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(ADMIN),
        Some(json!({"mode": "poll", "reason": "kiosk proxy kills websockets", "expires_in": "2h"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["route"]["route"], "poll");
    assert_eq!(v["mode"]["set_by"], "alice");

    let pushed = loop {
        let m = ws_next_any(&mut ws).await;
        if m["type"] == "route" {
            break m;
        }
    };
    assert_eq!(
        (pushed["route"].as_str(), pushed["mode"].as_str()),
        (Some("poll"), Some("poll"))
    );
    assert_eq!(sse.expect("route").await["route"], "poll");
    let (_, route) = s.get("/v1/route").await;
    assert_eq!(route["route"], "poll");

    let (status, v) = admin(
        &s,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(ADMIN),
        Some(json!({"mode": "self", "reason": "x"})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_field"))
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expires_in"));

    let (status, v) = admin(
        &s,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(ADMIN),
        Some(json!({"mode": "auto", "reason": "incident over"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["route"]["route"], "self");
}
