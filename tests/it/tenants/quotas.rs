//! Each tenant quota held to its answer over real sockets: the publish rate (429 with
//! Retry-After on every ingress, the other tenant untouched), channels, subscriber connections
//! and history bytes.

use std::time::Duration;

use serde_json::{json, Value};
use understudy::core::ChannelName;

use super::*;

/// The events of one tenant's usage in `GET /admin/tenants`.
pub(crate) async fn usage(s: &Server, tenant: &str) -> Value {
    let (status, v) = s
        .admin_call(reqwest::Method::GET, "/admin/tenants", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{v}");
    let found = (v["tenants"].as_array().unwrap().iter()).find(|t| t["id"] == tenant);
    found.expect("the tenant is listed").clone()
}

#[tokio::test]
async fn over_its_rate_a_tenant_gets_429_with_retry_after_on_every_ingress_and_the_other_does_not()
{
    // One event a second with a burst of 2. A stalled machine refills a token a second, so each
    // ingress publishes until its first refusal (bounded) and the events it got through are
    // counted: what matters is the refusal's answer and that nothing refused was published.
    let rate = "publish_per_second = 1\npublish_burst = 2";
    let s = Server::with(&config(rate, rate)).await;
    let batch = json!({"events": [
        {"channel": "clinic-a.r", "name": "n", "data": 1},
        {"channel": "clinic-a.r", "name": "n", "data": 2},
    ]});
    let (status, _, body) = post_as(&s, KEY_A, "/v1/publish/batch", batch.clone()).await;
    assert_eq!(
        (status, body["published"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    let mut accepted = 2;
    let (status, retry, body) = loop {
        let answer = publish_as(&s, KEY_A, "clinic-a.r").await;
        if answer.0 != 202 || accepted > 12 {
            break answer;
        }
        accepted += 1;
    };
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "{body}");
    assert_eq!(body["error"]["code"], "tenant_rate_limited");
    assert_eq!(
        body["error"]["message"],
        "tenant clinic-a is over its publish rate (1/s, bursts of 2); nothing was published: retry after 1 s"
    );
    let wait = body["error"]["retry_after_ms"].as_u64().unwrap();
    assert!((1..=1000).contains(&wait), "{body}");
    // A batch is refused whole (its two events wait for two), and so are the tenant's app's
    // publishes on both ingresses.
    let (status, retry) = loop {
        let (status, retry, body) = post_as(&s, KEY_A, "/v1/publish/batch", batch.clone()).await;
        if status != 200 || accepted > 12 {
            break (status, retry);
        }
        assert_eq!(body["published"], 2, "{body}");
        accepted += 2;
    };
    assert_eq!(status, 429);
    assert!(matches!(retry.as_deref(), Some("1" | "2")), "{retry:?}");
    let (status, retry, body) = loop {
        let trigger = json!({"name": "e", "channel": "clinic-a.r", "data": "x"});
        let answer = pusher_trigger(&s, trigger).await;
        if answer.0 != 200 || accepted > 12 {
            break answer;
        }
        accepted += 1;
    };
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "{body}");
    assert_eq!(body["error"]["code"], "tenant_rate_limited");
    let (status, code, retry, body) = loop {
        let answer = ably_publish(&s, "clinic-a.r").await;
        if answer.0 != 201 || accepted > 12 {
            break answer;
        }
        accepted += 1;
    };
    assert_eq!(
        (status, code.as_deref(), retry.as_deref()),
        (429, Some("42910"), Some("1")),
        "{body}"
    );
    assert_eq!(
        history(&s, "clinic-a.r").await,
        (1..=accepted).collect::<Vec<u64>>(),
        "nothing refused was published"
    );

    // Tenant B in the same second: its own full bucket.
    for _ in 0..2 {
        assert_eq!(publish_as(&s, KEY_B, "clinic-b.r").await.0, 202);
    }
    assert_eq!(history(&s, "clinic-b.r").await, [1, 2]);

    // After Retry-After, A publishes again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(publish_as(&s, KEY_A, "clinic-a.r").await.0, 202);
    assert_eq!(
        history(&s, "clinic-a.r").await,
        (1..=accepted + 1).collect::<Vec<u64>>()
    );
    let a = usage(&s, "clinic-a").await;
    assert_eq!(a["usage"]["publishes_accepted"], accepted + 1);
    assert_eq!(
        a["usage"]["publishes_refused"],
        json!({"channels": 0, "connections": 0, "rate": 4, "scope": 0})
    );
    // The recorder is the process's, shared by tests running at once: the series, not its count.
    let metrics = s.metrics_text().await;
    let refused =
        r#"understudy_tenant_publish_total{tenant="clinic-a",outcome="refused",reason="rate"} "#;
    assert!(metrics.contains(refused), "{metrics}");
}

/// POSTs `body` as raw bytes (not JSON) with `key` as the bearer: status, `Retry-After`, body.
async fn post_raw_as(
    s: &Server,
    key: &str,
    path: &str,
    body: &'static str,
) -> (u16, Option<String>, Value) {
    let r = (s.http.post(format!("{}{path}", s.base)))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = (r.headers().get("retry-after")).map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_tenant_with_an_empty_bucket_is_refused_before_its_body_is_read() {
    let rate = "publish_per_second = 1\npublish_burst = 1";
    let s = Server::with(&config(rate, "")).await;
    let refused = json!({"error": {
        "code": "tenant_rate_limited",
        "message": "tenant clinic-a is over its publish rate (1/s, bursts of 1); nothing was published: retry after 1 s",
    }});
    // Empty the bucket, then send a body that does not parse: refused for the rate, so it was
    // never parsed. A stalled machine may refill a token in between; then try again (bounded).
    let mut answers = Vec::new();
    for _ in 0..5 {
        while publish_as(&s, KEY_A, "clinic-a.r").await.0 == 202 {}
        let (status, retry, mut body) = post_raw_as(&s, KEY_A, "/v1/publish", "{not json").await;
        let (batch_status, batch_retry, mut batch_body) =
            post_raw_as(&s, KEY_A, "/v1/publish/batch", "{not json").await;
        for b in [&mut body, &mut batch_body] {
            if let Some(e) = b["error"].as_object_mut() {
                e.remove("retry_after_ms");
            }
        }
        answers.push((status, retry, body, batch_status, batch_retry, batch_body));
        if answers.last().unwrap().0 == 429 && answers.last().unwrap().3 == 429 {
            break;
        }
    }
    let last = answers.last().unwrap().clone();
    assert_eq!(
        last,
        (
            429,
            Some("1".into()),
            refused.clone(),
            429,
            Some("1".into()),
            refused
        ),
        "{answers:?}"
    );
    // The other tenant's bodies are read as always.
    let (status, _, body) = post_raw_as(&s, KEY_B, "/v1/publish", "{not json").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_json")),
        "{body}"
    );
    let metrics = s.metrics_text().await;
    let series =
        r#"understudy_tenant_publish_total{tenant="clinic-a",outcome="refused",reason="rate"} "#;
    assert!(metrics.contains(series), "{metrics}");
}

#[tokio::test]
async fn a_tenant_at_its_channel_limit_publishes_to_the_channels_it_has_only() {
    let s = Server::with(&config("max_channels = 2", "")).await;
    for channel in ["clinic-a.1", "clinic-a.2"] {
        assert_eq!(publish_as(&s, KEY_A, channel).await.0, 202);
    }
    let (status, retry, body) = publish_as(&s, KEY_A, "clinic-a.3").await;
    assert_eq!(
        (status, retry, body),
        (
            429,
            None,
            json!({"error": {
                "code": "tenant_channels_exceeded",
                "message": "tenant clinic-a has its limit of 2 channels on this node; nothing was published: publish to channels it has, or once idle ones are reclaimed",
            }})
        )
    );
    let registry = s.state.engine.registry();
    assert!(registry
        .head_of(&ChannelName::parse("clinic-a.3").unwrap())
        .is_none());
    // Its channels still take events; another tenant's channels are not its count.
    assert_eq!(publish_as(&s, KEY_A, "clinic-a.1").await.0, 202);
    for i in 0..3 {
        assert_eq!(publish_as(&s, KEY_B, &format!("clinic-b.{i}")).await.0, 202);
    }
    assert_eq!(usage(&s, "clinic-a").await["usage"]["channels"], 2);
    assert_eq!(usage(&s, "clinic-b").await["usage"]["channels"], 3);
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains(r#"understudy_tenant_channels{tenant="clinic-a"} "#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_tenant_s_connections_are_capped_per_channel_while_a_socket_s_other_channels_go_on() {
    let s = Server::with(&config("max_connections = 1", "")).await;
    let mut first = ws_connect(&s.ws_url("?channel=clinic-a.c")).await;
    ws_expect(&mut first, "welcome").await;
    ws_expect(&mut first, "subscribed").await;
    // A second socket: its clinic-a channel is refused, its other channel served.
    let mut second = ws_connect(&s.ws_url("?channel=lobby&channel=clinic-a.c")).await;
    ws_expect(&mut second, "welcome").await;
    ws_expect(&mut second, "subscribed").await;
    let refused = ws_next(&mut second).await;
    let message = "tenant clinic-a has its limit of 1 subscriber connections on this node; channel \"clinic-a.c\" was not subscribed";
    assert_eq!(
        refused,
        json!({"type": "error", "code": "tenant_connections_exceeded", "message": message, "channel": "clinic-a.c"})
    );
    s.publish_seq("lobby", 1).await;
    assert_eq!(ws_expect(&mut second, "event").await["channel"], "lobby");
    // SSE and a poll are refused before anything streams.
    let sse_body = |c: &str| {
        json!({"error": {
            "code": "tenant_connections_exceeded",
            "message": format!("tenant clinic-a has its limit of 1 subscriber connections on this node; channel \"{c}\" was not subscribed"),
            "channel": c,
        }})
    };
    assert_eq!(
        s.get("/v1/sse?channel=clinic-a.d").await,
        (429, sse_body("clinic-a.d"))
    );
    assert_eq!(
        s.get("/v1/channels/clinic-a.e/events?since=0").await,
        (429, sse_body("clinic-a.e"))
    );
    // A Pusher socket of the tenant's app: 4100 for that channel, the socket stays.
    let url = format!(
        "{}/app/{}?protocol=7&client=js&version=8.4.0",
        s.base.replace("http://", "ws://"),
        APP_A.1
    );
    let mut pusher = ws_connect(&url).await;
    pusher_next(&mut pusher).await;
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": "clinic-a.c"}});
    ws_send(&mut pusher, subscribe).await;
    assert_eq!(
        pusher_next(&mut pusher).await,
        json!({"event": "pusher:error", "channel": "clinic-a.c", "data": {"code": 4100, "message": message}})
    );
    // Letting its last clinic-a channel go gives the seat back.
    ws_send(
        &mut first,
        json!({"type": "unsubscribe", "channel": "clinic-a.c"}),
    )
    .await;
    ws_expect(&mut first, "unsubscribed").await;
    let mut sse = Sse::open(&s, "?channel=clinic-a.d", None).await;
    sse.expect("subscribed").await;
    assert_eq!(usage(&s, "clinic-a").await["usage"]["connections"], 1);
    // The stream ending gives it back too.
    drop(sse);
    let mut freed = false;
    for _ in 0..100 {
        if usage(&s, "clinic-a").await["usage"]["connections"] == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "the seat of a closed stream is given back");
    ws_send(
        &mut second,
        json!({"type": "subscribe", "channel": "clinic-a.c"}),
    )
    .await;
    ws_expect(&mut second, "subscribed").await;
}

#[tokio::test]
async fn a_tenant_s_channels_keep_at_most_its_history_bytes() {
    let s = Server::with(&config("history_max_bytes = 2000", "")).await;
    let data = "x".repeat(400);
    for (key, channel) in [(KEY_A, "clinic-a.h"), (KEY_B, "clinic-b.h")] {
        for _ in 0..20 {
            let body = json!({"channel": channel, "name": "n", "data": data});
            assert_eq!(post_as(&s, key, "/v1/publish", body).await.0, 202);
        }
    }
    let a = history(&s, "clinic-a.h").await;
    assert!(
        (1..5).contains(&a.len()) && a.last() == Some(&20),
        "clinic-a keeps the newest events within 2000 bytes: {a:?}"
    );
    let b = history(&s, "clinic-b.h").await;
    assert_eq!(
        b,
        (1..=20).collect::<Vec<u64>>(),
        "clinic-b keeps the node's history"
    );
}
