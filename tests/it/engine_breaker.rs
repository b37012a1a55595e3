//! A stuck Redis never makes a publisher wait twice: a batch has one deadline for all its items,
//! and after one unanswered call the breaker answers publishes at once until Redis answers a
//! probe; then publishing resumes with nothing lost or duplicated.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::redis::Redis;
use crate::support::{seqs, ws_connect, ws_expect, ws_next, ws_send, Server, Ws, KEY, PATIENCE};

const ADMIN: &str = "test-admin-token-0123456789";
/// The engine's deadline in these tests: the default, the one the fault was filed with.
const DEADLINE: Duration = Duration::from_millis(1000);

async fn node(redis: &Redis) -> Server {
    Server::with(&format!(
        "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"alice\", token = \"{ADMIN}\" }}]\n\
         [engine]\nurl = \"{}\"\ntimeout_ms = {}\n",
        redis.url(),
        DEADLINE.as_millis()
    ))
    .await
}

/// POSTs `body` to `path`, answering status, `Retry-After` and the JSON body.
async fn post(s: &Server, path: &str, body: &Value) -> (u16, Option<String>, Value) {
    let r = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = (r.headers().get("retry-after")).map(|v| v.to_str().unwrap().to_string());
    (status, retry, r.json().await.unwrap())
}

fn item(ch: &str, id: &str) -> Value {
    json!({"channel": ch, "name": "n", "data": id, "id": id})
}

/// Publishes `items` as a batch, and what a batch's deadline left unpublished again, as a
/// publisher following the docs does, until every item is published.
async fn publish_every_item(s: &Server, items: &[Value]) {
    let deadline = Instant::now() + PATIENCE;
    let mut left = items.to_vec();
    while !left.is_empty() {
        let (status, _, v) = post(s, "/v1/publish/batch", &json!({"events": left})).await;
        assert_eq!(status, 200, "{v}");
        let results = v["results"].as_array().unwrap();
        let published = results.iter().take_while(|r| r["status"] == 202).count();
        // Only the deadline refuses, and it refuses the rest of the batch: the order holds.
        assert!(
            results[published..]
                .iter()
                .all(|r| r["error"]["code"] == "engine_unavailable"),
            "{v}"
        );
        left.drain(..published);
        assert!(Instant::now() < deadline, "still unpublished: {v}");
    }
}

async fn breaker(s: &Server) -> Value {
    let (status, v) = s
        .admin_call(reqwest::Method::GET, "/admin/status", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{v}");
    v["engine"]["breaker"].clone()
}

/// The next `n` events' ids, in order.
async fn event_ids(ws: &mut Ws, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v = ws_next(ws).await;
        assert_eq!(v["type"], "event", "{v}");
        out.push((
            v["seq"].as_u64().unwrap(),
            v["id"].as_str().unwrap().to_string(),
        ));
    }
    out
}

#[tokio::test]
async fn a_frozen_redis_costs_a_batch_one_deadline_then_publishes_fail_fast_until_it_thaws() {
    let redis = Redis::start().await;
    let s = node(&redis).await;
    let mut ws = ws_connect(&s.ws_url("")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_send(&mut ws, json!({"type": "subscribe", "channel": "b"})).await;
    ws_expect(&mut ws, "subscribed").await;
    assert_eq!(s.publish_seq("b", 0).await, 1);
    assert_eq!(event_ids(&mut ws, 1).await[0].0, 1);
    assert_eq!(breaker(&s).await["state"], "healthy");

    redis.pause();
    // Without one deadline per batch and the breaker, every item waits its own deadline: 500 s.
    let batch: Vec<Value> = (0..500).map(|i| item("b", &format!("b-{i}"))).collect();
    let started = Instant::now();
    let (status, retry, v) = post(&s, "/v1/publish/batch", &json!({"events": batch})).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{v}");
    eprintln!("a 500-item batch against a frozen Redis answered in {took:?}");
    assert!(took < DEADLINE * 2, "a 500-item batch took {took:?}");
    assert_eq!(
        (v["published"].as_u64(), v["failed"].as_u64()),
        (Some(0), Some(500))
    );
    let results = v["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .all(|r| r["status"] == 503 && r["error"]["code"] == "engine_unavailable"),
        "{v}"
    );
    assert_eq!(retry.as_deref(), Some("1"), "the batch says when to retry");
    // The first item waited out the deadline; the breaker answered every other one untried.
    let tripped = |r: &Value| {
        let m = r["error"]["message"].as_str().unwrap_or("");
        m.contains("publishes are refused at once")
    };
    assert!(results[1..].iter().all(tripped), "{v}");

    // A job publishing one by one: without the breaker each waits a full deadline.
    let singles: Vec<String> = (0..10).map(|i| format!("s-{i}")).collect();
    let mut slowest = Duration::ZERO;
    for id in &singles {
        let started = Instant::now();
        let (status, retry, v) = post(&s, "/v1/publish", &item("b", id)).await;
        let took = started.elapsed();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (503, Some("engine_unavailable"))
        );
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(
            took < DEADLINE / 2,
            "a publish behind the breaker took {took:?}"
        );
        slowest = slowest.max(took);
    }
    eprintln!("10 publishes behind the breaker, the slowest in {slowest:?}");
    let b = breaker(&s).await;
    assert_eq!(
        (b["state"].as_str(), b["reason"].as_str()),
        (Some("tripped"), Some("no_answer")),
        "{b}"
    );
    assert!(b["refused"].as_u64().unwrap() >= 509, "{b}");

    redis.resume();
    // The probe waiting on the frozen Redis is answered when it thaws: publishing resumes.
    let deadline = Instant::now() + PATIENCE;
    while breaker(&s).await["state"] != "healthy" {
        assert!(Instant::now() < deadline, "the breaker did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every refused item again, with its id: each is published once, whatever Redis ran when it
    // thawed (the first item's call was sent before the deadline).
    publish_every_item(&s, &batch).await;
    for id in &singles {
        let (status, _, v) = post(&s, "/v1/publish", &item("b", id)).await;
        assert_eq!(status, 202, "{v}");
    }
    // The subscriber connected before the freeze is still there and sees every event once, in
    // order, with contiguous seqs.
    let want: Vec<String> = (0..500).map(|i| format!("b-{i}")).chain(singles).collect();
    let got = event_ids(&mut ws, want.len()).await;
    let (got_seqs, got_ids): (Vec<u64>, Vec<String>) = got.into_iter().unzip();
    assert_eq!(got_seqs, (2..=511).collect::<Vec<_>>());
    assert_eq!(got_ids, want);
    let (_, poll) = s.get("/v1/channels/b/events?since=0&limit=1000").await;
    assert_eq!(
        seqs(poll["events"].as_array().unwrap()),
        (1..=511).collect::<Vec<_>>()
    );
}

/// A script that keeps Redis busy `ARGV[1]` ms at a time: every call waits behind it, each
/// answered well within the deadline, so no call times out and the breaker stays healthy.
const HOG: &str = "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
     repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) * 1000 \
     return 0";

#[tokio::test]
async fn a_slow_redis_costs_a_batch_one_deadline_and_the_rest_is_refused_untried() {
    let redis = Redis::start().await;
    let s = node(&redis).await;
    assert_eq!(s.publish_seq("w", 0).await, 1);
    let stop = tokio_util::sync::CancellationToken::new();
    let hog = {
        let (url, stop) = (redis.url(), stop.clone());
        tokio::spawn(async move {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let hog = redis::Script::new(HOG);
            // Bounded: at most 40 s of hogging even if the test never says stop.
            for _ in 0..200 {
                if stop.is_cancelled() {
                    break;
                }
                let _: i64 = hog.arg(200).invoke_async(&mut conn).await.unwrap();
            }
        })
    };
    let batch: Vec<Value> = (0..100).map(|i| item("w", &format!("w-{i}"))).collect();
    let started = Instant::now();
    let (status, retry, v) = post(&s, "/v1/publish/batch", &json!({"events": batch})).await;
    let took = started.elapsed();
    stop.cancel();
    hog.await.unwrap();
    assert_eq!(status, 200, "{v}");
    // Item by item, each waiting up to 200 ms behind the script, this batch would take 10 s or
    // more; with one deadline it is answered soon after that deadline.
    eprintln!(
        "a 100-item batch against a slow Redis answered in {took:?}, {} published",
        v["published"]
    );
    assert!(took < DEADLINE * 2, "a 100-item batch took {took:?}");
    let failed = v["failed"].as_u64().unwrap();
    assert!(failed > 0, "the batch outlasted its deadline: {v}");
    let results = v["results"].as_array().unwrap();
    let refused = results
        .iter()
        .filter(|r| {
            let m = r["error"]["message"].as_str().unwrap_or("");
            m.contains("deadline passed before this event was published")
        })
        .count();
    assert!(
        refused > 0,
        "items after the deadline are refused untried: {v}"
    );
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(
        breaker(&s).await["state"],
        "healthy",
        "no call lacked an answer"
    );
    // Retried with their ids, every item is published once, in order.
    publish_every_item(&s, &batch).await;
    let (_, poll) = s.get("/v1/channels/w/events?since=1&limit=1000").await;
    let events = poll["events"].as_array().unwrap();
    assert_eq!(seqs(events), (2..=101).collect::<Vec<_>>());
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let want: Vec<String> = (0..100).map(|i| format!("w-{i}")).collect();
    assert_eq!(ids, want);
}

/// The metrics are process-wide, so the node runs as its own process: no other test's node can
/// set the figures checked here.
#[tokio::test]
async fn the_breaker_state_and_its_transitions_are_in_the_nodes_metrics() {
    let redis = Redis::start().await;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_understudy"));
    cmd.arg("serve")
        .env_clear()
        .env("UNDERSTUDY_LISTEN", "127.0.0.1:0")
        .env("UNDERSTUDY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("UNDERSTUDY_ENGINE_URL", redis.url())
        .env("UNDERSTUDY_SUBSCRIBE_AUTH", "none")
        .env("UNDERSTUDY_PUBLISHER_KEYS", KEY)
        .env(
            "UNDERSTUDY_AUDIT_DIR",
            crate::support::scratch_dir("breaker").join("audit"),
        )
        .env("UNDERSTUDY_LOG", "warn");
    let (mut node, base, admin) =
        tokio::task::spawn_blocking(move || crate::support::spawn_serving_both(cmd))
            .await
            .unwrap();
    let http = reqwest::Client::new();
    let publish = |id: &'static str| {
        let (http, url) = (http.clone(), format!("{base}/v1/publish"));
        async move {
            let r = http
                .post(url)
                .bearer_auth(KEY)
                .json(&item("m", id))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    let metrics = || {
        let (http, url) = (http.clone(), format!("{admin}/metrics"));
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    // Published once Redis is connected (the node connects lazily).
    let deadline = Instant::now() + PATIENCE;
    while publish("m-0").await != 202 {
        assert!(Instant::now() < deadline, "the node never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = metrics().await;
    assert!(
        m.contains("understudy_engine_breaker{state=\"healthy\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("understudy_engine_breaker{state=\"tripped\"} 0"),
        "{m}"
    );

    redis.pause();
    assert_eq!(publish("m-1").await, 503);
    assert_eq!(publish("m-2").await, 503);
    let m = metrics().await;
    redis.resume();
    assert!(
        m.contains("understudy_engine_breaker{state=\"tripped\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("understudy_engine_breaker{state=\"healthy\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("understudy_engine_breaker_transitions_total{to=\"tripped\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("understudy_engine_breaker_refused_total 1"),
        "{m}"
    );

    let deadline = Instant::now() + PATIENCE;
    loop {
        let m = metrics().await;
        if m.contains("understudy_engine_breaker{state=\"healthy\"} 1") {
            assert!(
                m.contains("understudy_engine_breaker_transitions_total{to=\"healthy\"} 1"),
                "{m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never healthy again: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.kill().unwrap();
    node.wait().unwrap();
}
