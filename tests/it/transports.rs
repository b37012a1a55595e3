//! `subscribers.transports`: a transport left out answers 503 `transport_disabled` before any
//! stream starts, and the others keep working.

use serde_json::json;

use crate::support::*;

const SSE_AND_POLL: &str =
    "[auth]\nsubscribe = \"none\"\n[subscribers]\ntransports = [\"sse\", \"poll\"]\n";

#[tokio::test]
async fn a_left_out_transport_is_refused_with_a_clear_503() {
    let s = Server::with(SSE_AND_POLL).await;
    let err = tokio_tungstenite::connect_async(s.ws_url("?channel=room"))
        .await
        .expect_err("the upgrade is refused");
    let tokio_tungstenite::tungstenite::Error::Http(answer) = err else {
        panic!("expected an HTTP refusal, got {err}");
    };
    assert_eq!(answer.status(), 503);
    let body: serde_json::Value =
        serde_json::from_slice(answer.body().as_deref().unwrap_or_default()).unwrap();
    assert_eq!(body["error"]["code"], "transport_disabled");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("WebSocket") && message.contains("subscribers.transports"));

    let mut sse = Sse::open(&s, "?channel=room", None).await;
    sse.expect("subscribed").await;
    s.publish_seq("room", 1).await;
    assert_eq!(sse.expect("event").await["seq"], 1);
    let (status, polled) = s.get("/v1/channels/room/events?since=0").await;
    assert_eq!(
        (status, polled["events"][0]["seq"].clone()),
        (200, json!(1))
    );
}

#[tokio::test]
async fn polling_alone_refuses_sse_and_both_poll_routes_answer() {
    let s = Server::with("[auth]\nsubscribe = \"none\"\n[subscribers]\ntransports = [\"poll\"]\n")
        .await;
    let r = s
        .http
        .get(format!("{}/v1/sse?channel=room", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "transport_disabled");
    s.publish_seq("room", 1).await;
    let (status, many) = s
        .post(
            "/v1/poll",
            json!({"channels": [{"channel": "room", "since": 0}]}),
        )
        .await;
    assert_eq!(status, 200, "{many}");
    assert_eq!(many["results"][0]["events"][0]["seq"], 1);
}

#[tokio::test]
async fn without_polling_both_poll_routes_are_refused() {
    let s =
        Server::with("[auth]\nsubscribe = \"none\"\n[subscribers]\ntransports = [\"ws\"]\n").await;
    let (status, one) = s.get("/v1/channels/room/events").await;
    assert_eq!(
        (status, one["error"]["code"].clone()),
        (503, json!("transport_disabled"))
    );
    let (status, many) = s
        .post("/v1/poll", json!({"channels": [{"channel": "room"}]}))
        .await;
    assert_eq!(
        (status, many["error"]["code"].clone()),
        (503, json!("transport_disabled"))
    );
    let mut ws = ws_connect(&s.ws_url("?channel=room")).await;
    ws_expect(&mut ws, "welcome").await;
}
