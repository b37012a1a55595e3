//! Over the Redis engine: a publish the engine does not answer is refused with Ably's 503 50003
//! and `Retry-After` within the engine's deadline, and the SDK-style retry of the same message
//! ids once Redis is back publishes each message exactly once.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{apps_toml, basic, history, publish_json, APP_KEY, APP_SECRET};
use crate::support::redis::Redis;
use crate::support::*;

const DEADLINE: Duration = Duration::from_millis(1000);

#[tokio::test]
async fn a_frozen_engine_answers_50003_and_a_retry_of_the_same_ids_publishes_once() {
    let redis = Redis::start().await;
    let toml = format!(
        "{}[engine]\nurl = \"{}\"\ntimeout_ms = {}\n",
        apps_toml(),
        redis.url(),
        DEADLINE.as_millis()
    );
    let s = Server::with(&toml).await;
    let key = basic(APP_KEY, APP_SECRET);
    let (status, v) = publish_json(&s, "ward-9", &key, json!({"id": "a:0", "name": "first"})).await;
    assert_eq!(status, 201, "{v}");

    redis.pause();
    let batch = json!([
        {"id": "b:0", "name": "n0", "data": "0"},
        {"id": "b:1", "name": "n1", "data": "1"},
        {"id": "b:2", "name": "n2", "data": "2"}
    ]);
    let started = Instant::now();
    let r = s
        .http
        .post(format!("{}/channels/ward-9/messages", s.base))
        .header("authorization", &key)
        .json(&batch)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    let (status, retry) = (r.status().as_u16(), r.headers().get("retry-after").cloned());
    let code = r.headers().get("x-ably-errorcode").cloned();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (503, json!(50003)),
        "{body}"
    );
    assert_eq!(code.unwrap(), "50003");
    assert_eq!(retry.unwrap(), "1");
    // One deadline for the request, not one per message.
    assert!(took < DEADLINE * 2, "answered after {took:?}");

    redis.resume();
    // What the SDKs do: send the same body (the same ids) again until it is taken.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, v) = publish_json(&s, "ward-9", &key, batch.clone()).await;
        if status == 201 {
            assert_eq!(v["serials"].as_array().unwrap().len(), 3, "{v}");
            break;
        }
        assert_eq!(status, 503, "{v}");
        assert!(Instant::now() < deadline, "the engine never came back: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = history(&s, "ward-9").await;
    let ids: Vec<_> = events.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(
        ids,
        ["a:0", "b:0", "b:1", "b:2"],
        "each message once, in order"
    );
    assert_eq!(seqs(&events), [1, 2, 3, 4]);
}
