//! Subscriber tokens: expired, badly signed, missing, and scoped to other channels.

use serde_json::json;

use crate::support::*;

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test]
async fn tokens_are_checked_on_every_transport() {
    let s = Server::with("").await; // the default: auth.subscribe = "jwt"
    let good = token(&["clinic-42.*"], 3600, SECRET);
    let expired = token(&["clinic-42.*"], -3600, SECRET);
    let forged = token(&["clinic-42.*"], 3600, "some-other-secret-0123456789");

    let ch = "clinic-42.waiting-room";
    let poll = |t: &str| format!("/v1/channels/{ch}/events?token={t}");
    let (status, v) = s.get(&poll(&good)).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.get(&poll(&expired)).await;
    assert_eq!((status, code(&v)), (401, "token_expired"));
    let (status, v) = s.get(&poll(&forged)).await;
    assert_eq!((status, code(&v)), (401, "invalid_token"));
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("signature"));
    let (status, v) = s.get(&format!("/v1/channels/{ch}/events")).await;
    assert_eq!((status, code(&v)), (401, "invalid_token"));
    let (status, v) = s
        .get(&format!("/v1/channels/clinic-43.room/events?token={good}"))
        .await;
    assert_eq!((status, code(&v)), (403, "channel_forbidden"));
    assert_eq!(v["error"]["channel"], "clinic-43.room");

    // Authorization header works as well as ?token=.
    let r = s
        .http
        .get(format!("{}/v1/channels/{ch}/events", s.base))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // SSE: refused before the stream starts.
    let r = s
        .http
        .get(format!("{}/v1/sse?channel={ch}&token={expired}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .http
        .get(format!("{}/v1/sse?channel=lobby&token={good}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // WebSocket: a bad token is refused at the upgrade; an out-of-scope channel gets an error
    // message while the in-scope subscription keeps working.
    assert!(
        tokio_tungstenite::connect_async(s.ws_url(&format!("?token={forged}")))
            .await
            .is_err()
    );
    let mut ws = ws_connect(&s.ws_url(&format!("?token={good}&channel={ch}"))).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    ws_send(&mut ws, json!({"type": "subscribe", "channel": "lobby"})).await;
    let e = ws_expect(&mut ws, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["channel"].as_str()),
        (Some("channel_forbidden"), Some("lobby"))
    );
    s.publish_seq(ch, 1).await;
    assert_eq!(ws_expect(&mut ws, "event").await["channel"], ch);
}
