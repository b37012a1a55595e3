//! Several nodes on one real Redis: one sequence, one history and one fan-out per channel, and
//! what happens when Redis or a node goes away.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::support::redis::Redis;
use crate::support::{
    seqs, ws_connect, ws_expect, ws_frame, ws_next, ws_send, Server, Sse, Ws, PATIENCE,
};

/// A node on `redis` with subscriber auth off and a short engine deadline.
async fn node(redis: &Redis) -> Server {
    node_with(redis, "").await
}

async fn node_with(redis: &Redis, extra: &str) -> Server {
    Server::with(&format!(
        "[auth]\nsubscribe = \"none\"\n[engine]\nurl = \"{}\"\ntimeout_ms = 300\n{extra}",
        redis.url()
    ))
    .await
}

/// Subscribes over WebSocket and returns the socket and the `subscribed` message.
async fn subscribe(s: &Server, ch: &str, since: Option<Value>) -> (Ws, Value) {
    let mut ws = ws_connect(&s.ws_url("")).await;
    ws_expect(&mut ws, "welcome").await;
    let mut msg = json!({"type": "subscribe", "channel": ch});
    if let Some(since) = since {
        msg["since"] = since;
    }
    ws_send(&mut ws, msg).await;
    let first = ws_next(&mut ws).await;
    (ws, first)
}

/// Waits for the server to close the socket (a close frame), failing with `what` otherwise.
async fn closed(ws: &mut Ws, what: &str) {
    let frame = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(frame) = msg {
                return frame;
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: no close within the test's patience"));
    assert!(
        frame.is_some(),
        "{what}: the socket ended without a close frame"
    );
}

/// The next `n` events.
async fn events(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v = ws_next(ws).await;
        assert_eq!(v["type"], "event", "{v}");
        out.push(v);
    }
    out
}

#[tokio::test]
async fn an_event_published_on_one_node_reaches_subscribers_on_every_node_with_one_sequence() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (mut on_a, sa) = subscribe(&a, "room", None).await;
    let (mut on_b, sb) = subscribe(&b, "room", None).await;
    assert_eq!(sa["type"], "subscribed");
    assert_eq!(sa["epoch"], sb["epoch"], "one epoch, kept in Redis");
    let mut published = Vec::new();
    for i in 0..10u64 {
        let via = if i % 2 == 0 { &a } else { &b };
        published.push(via.publish_seq("room", i).await);
    }
    assert_eq!(published, (1..=10).collect::<Vec<_>>());
    for ws in [&mut on_a, &mut on_b] {
        let got = events(ws, 10).await;
        assert_eq!(seqs(&got), (1..=10).collect::<Vec<_>>());
        let data: Vec<u64> = got
            .iter()
            .map(|e| e["data"]["n"].as_u64().unwrap())
            .collect();
        assert_eq!(data, (0..10).collect::<Vec<_>>());
    }
    // History is shared: a poll on either node reads the same events.
    let (status, v) = b.get("/v1/channels/room/events?since=0").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn an_idempotency_key_holds_across_nodes() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let body = json!({"channel": "c", "name": "n", "data": 1, "id": "order-17"});
    let (s1, first) = a.publish(body.clone()).await;
    let (s2, again) = b.publish(body).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["seq"], again["seq"]);
    assert_eq!(first["epoch"], again["epoch"]);
    assert_eq!(b.publish_seq("c", 2).await, 2, "the duplicate used no seq");
}

/// A node as its own process (so it can be killed outright), answering its public base URL.
fn spawn_node(redis_url: &str) -> (std::process::Child, String) {
    let dir = crate::support::scratch_dir("node");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_understudy"));
    cmd.arg("serve")
        .env_clear()
        .env("UNDERSTUDY_LISTEN", "127.0.0.1:0")
        .env("UNDERSTUDY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("UNDERSTUDY_ENGINE_URL", redis_url)
        .env("UNDERSTUDY_SUBSCRIBE_AUTH", "none")
        .env("UNDERSTUDY_PUBLISHER_KEYS", crate::support::KEY)
        .env("UNDERSTUDY_AUDIT_DIR", dir.join("audit"))
        .env("UNDERSTUDY_LOG", "warn");
    crate::support::spawn_serving(cmd)
}

#[tokio::test]
async fn a_killed_nodes_clients_resume_on_another_node_with_nothing_lost() {
    let redis = Redis::start().await;
    let b = node(&redis).await;
    let url = redis.url();
    let (mut a, a_base) = tokio::task::spawn_blocking(move || spawn_node(&url))
        .await
        .unwrap();
    let mut ws = ws_connect(&format!("{}/v1/ws", a_base.replace("http://", "ws://"))).await;
    ws_expect(&mut ws, "welcome").await;
    ws_send(&mut ws, json!({"type": "subscribe", "channel": "r"})).await;
    let sub = ws_expect(&mut ws, "subscribed").await;
    let epoch = sub["epoch"].clone();
    for i in 0..5 {
        b.publish_seq("r", i).await;
    }
    let got = events(&mut ws, 5).await;
    assert_eq!(seqs(&got), vec![1, 2, 3, 4, 5]);
    // Node A dies without a goodbye; events keep coming through node B.
    a.kill().unwrap();
    a.wait().unwrap();
    for i in 5..10 {
        b.publish_seq("r", i).await;
    }
    let since = json!({"epoch": epoch, "seq": 5});
    let (mut ws, sub) = subscribe(&b, "r", Some(since)).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    b.publish_seq("r", 10).await;
    let got = events(&mut ws, 6).await;
    assert_eq!(seqs(&got), vec![6, 7, 8, 9, 10, 11]);
}

#[tokio::test]
async fn two_nodes_publishing_concurrently_give_every_subscriber_one_contiguous_order() {
    const PER_NODE: u64 = 20_000 / 2;
    const RATE: u64 = 1_000;
    let redis = Redis::start().await;
    // Test clients on a loaded machine may read slower than 2,000 events/s for a moment; a
    // deep buffer keeps them from being cut off as slow, which is not what this test is about.
    // A short heartbeat puts server pings between the events, as a run that outlasts the
    // default heartbeat on a busy machine would: the collectors must read past them.
    let deep =
        "[subscribers]\nbuffer_events = 25000\nbuffer_bytes = 67108864\nheartbeat_ms = 250\n";
    let (a, b) = (node_with(&redis, deep).await, node_with(&redis, deep).await);
    let (ws_a, sa) = subscribe(&a, "hot", None).await;
    let (ws_b, sb) = subscribe(&b, "hot", None).await;
    assert_eq!(
        (&sa["type"], &sb["type"]),
        (&json!("subscribed"), &json!("subscribed"))
    );
    let mut sse_b = Sse::open(&b, "?channel=hot", None).await;
    sse_b.expect("subscribed").await;
    // Each node: 4 publishers of RATE/4 events per second each, for PER_NODE/RATE seconds.
    let started = Instant::now();
    let mut publishers = Vec::new();
    for (node, server) in [(0u64, &a), (1, &b)] {
        for lane in 0..4u64 {
            let (http, url) = (server.http.clone(), format!("{}/v1/publish", server.base));
            publishers.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_micros(4_000_000 / RATE));
                let mut seqs = Vec::new();
                for i in 0..PER_NODE / 4 {
                    tick.tick().await;
                    let r = http
                        .post(&url)
                        .bearer_auth(crate::support::KEY)
                        .json(&json!({"channel": "hot", "name": "n", "data": [node, lane, i]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    let v: Value = r.json().await.unwrap();
                    seqs.push(v["seq"].as_u64().unwrap());
                }
                seqs
            }));
        }
    }
    let collect_ws = |mut ws: Ws| {
        tokio::spawn(async move {
            let mut got: Vec<(u64, Value)> = Vec::new();
            while got.len() < 20_000 {
                let msg = tokio::time::timeout(PATIENCE, ws_frame(&mut ws))
                    .await
                    .unwrap();
                if let Some(Ok(Message::Text(t))) = msg {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "event" {
                        got.push((v["seq"].as_u64().unwrap(), v["data"].clone()));
                    }
                } else {
                    panic!("socket ended: {msg:?}");
                }
            }
            got
        })
    };
    let (ra, rb) = (collect_ws(ws_a), collect_ws(ws_b));
    let rs = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 20_000 {
            let v = sse_b.next().await.expect("stream open");
            if v["type"] == "event" {
                got.push((v["seq"].as_u64().unwrap(), v["data"].clone()));
            }
        }
        got
    });
    let mut assigned = Vec::new();
    for p in publishers {
        assigned.extend(p.await.unwrap());
    }
    let took = started.elapsed();
    assigned.sort_unstable();
    assert_eq!(
        assigned,
        (1..=20_000).collect::<Vec<_>>(),
        "no duplicate, no skip"
    );
    let reference = ra.await.unwrap();
    assert_eq!(
        reference.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=20_000).collect::<Vec<_>>()
    );
    assert_eq!(
        rb.await.unwrap(),
        reference,
        "node B's WebSocket saw the same order"
    );
    assert_eq!(
        rs.await.unwrap(),
        reference,
        "node B's SSE saw the same order"
    );
    eprintln!("20,000 events from two nodes in {took:?}");
}

#[tokio::test]
async fn a_node_that_loses_its_pubsub_connection_fills_the_gap_from_history() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (mut ws, sub) = subscribe(&b, "g", None).await;
    assert_eq!(sub["type"], "subscribed");
    let publisher = {
        let (http, url) = (a.http.clone(), format!("{}/v1/publish", a.base));
        tokio::spawn(async move {
            for i in 0..300u64 {
                let r = http
                    .post(&url)
                    .bearer_auth(crate::support::KEY)
                    .json(&json!({"channel": "g", "name": "n", "data": i}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // Cut every pub/sub connection a few times while events flow, each time once both nodes
    // have subscribed again.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (_, n): (String, u64) = redis
                .cmd(redis::cmd("PUBSUB").arg("NUMSUB").arg("understudy:control"))
                .await;
            if n == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "nodes did not resubscribe");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let killed: u64 = redis
            .cmd(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"))
            .await;
        assert_eq!(killed, 2, "both nodes' pub/sub connections");
    }
    publisher.await.unwrap();
    let got = events(&mut ws, 300).await;
    assert_eq!(seqs(&got), (1..=300).collect::<Vec<_>>());
}

#[tokio::test]
async fn with_redis_down_publishes_fail_fast_subscribers_stay_and_a_new_epoch_resets_them() {
    let mut redis = Redis::start().await;
    let s = node(&redis).await;
    let (mut ws, sub) = subscribe(&s, "d", None).await;
    let epoch = sub["epoch"].as_str().unwrap().to_string();
    s.publish_seq("d", 0).await;
    assert_eq!(events(&mut ws, 1).await[0]["seq"], 1);

    redis.stop();
    let started = Instant::now();
    let (status, v) = s
        .publish(json!({"channel": "d", "name": "n", "data": 1}))
        .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "engine_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The subscriber is still connected, and a channel this node does not hold yet is refused
    // with the same clear error rather than a hang.
    ws_send(&mut ws, json!({"type": "subscribe", "channel": "other"})).await;
    let refused = ws_expect(&mut ws, "error").await;
    assert_eq!(refused["code"], "engine_unavailable", "{refused}");
    assert_eq!(refused["channel"], "other");

    // Redis comes back empty: the channel's history is gone, so a new epoch begins, and the
    // subscriber is cut off to resume and learn it must reset.
    redis.restart().await;
    let deadline = Instant::now() + PATIENCE;
    let v = loop {
        let (status, v) = s
            .publish(json!({"channel": "d", "name": "n", "data": 2}))
            .await;
        if status == 202 {
            break v;
        }
        assert!(Instant::now() < deadline, "publishing did not recover: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(
        v["epoch"],
        epoch.as_str(),
        "Redis lost the data: a new epoch"
    );
    assert_eq!(v["seq"], 1);
    // The old connection is cut off once the node has resubscribed and found the new epoch.
    closed(&mut ws, "the old connection is told to resume").await;
    crate::support::eventually("the engine to be up", || s.state.engine.is_up()).await;
    let (mut ws, sub) = subscribe(&s, "d", Some(json!({"epoch": epoch, "seq": 1}))).await;
    assert_eq!(sub["type"], "reset", "{sub}");
    assert_eq!(sub["reason"], "epoch_changed");
    s.publish_seq("d", 3).await;
    assert_eq!(seqs(&events(&mut ws, 1).await), vec![2]);
}

#[tokio::test]
async fn a_frozen_redis_makes_publishes_fail_within_the_deadline_not_hang() {
    let redis = Redis::start().await;
    let s = node(&redis).await;
    assert_eq!(s.publish_seq("f", 0).await, 1);
    redis.pause();
    let started = Instant::now();
    let body = json!({"channel": "f", "name": "n", "data": 1, "id": "retry-me"});
    let (status, v) = s.publish(body.clone()).await;
    let took = started.elapsed();
    redis.resume();
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "engine_unavailable");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // A deadline means the outcome is unknown (Redis may run the queued call when it thaws): the
    // publisher retries with the same id and gets one event, never two.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, v) = s.publish(body.clone()).await;
        if status == 202 {
            assert_eq!(
                v["seq"], 2,
                "one event for the id, whether or not the first try ran"
            );
            break;
        }
        assert!(Instant::now() < deadline, "did not recover: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const ADMIN: &str = "test-admin-token-0123456789";

/// A node on `redis` with an admin token.
async fn admin_node(redis: &Redis) -> Server {
    admin_node_with(redis, "").await
}

async fn admin_node_with(redis: &Redis, extra: &str) -> Server {
    Server::with(&format!(
        "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"alice\", token = \"{ADMIN}\" }}]\n\
         [engine]\nurl = \"{}\"\ntimeout_ms = 300\n{extra}",
        redis.url()
    ))
    .await
}

async fn admin_call(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    s.admin_call(method, path, Some(ADMIN), body).await
}

/// Waits until `node`'s status satisfies `check`.
async fn status_until(node: &Server, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, v) = admin_call(node, reqwest::Method::GET, "/admin/status", None).await;
        if check(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_operator_mode_set_on_one_node_holds_on_every_node_and_on_nodes_that_join_later() {
    let redis = Redis::start().await;
    let (a, b) = (admin_node(&redis).await, admin_node(&redis).await);
    status_until(&b, "node B's engine up", |v| v["engine"]["up"] == true).await;
    let (status, v) = admin_call(
        &a,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(json!({"mode": "poll", "reason": "proxy kills websockets", "expires_in": "1h"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["shared"], true);
    let on_b = status_until(&b, "node B in poll mode", |v| v["mode"]["mode"] == "poll").await;
    assert_eq!(on_b["mode"]["set_by"], "alice");
    assert_eq!(on_b["mode"]["reason"], "proxy kills websockets");
    let (_, route) = b.get("/v1/route").await;
    assert_eq!(route["mode"], "poll", "{route}");
    let c = admin_node(&redis).await;
    status_until(&c, "a node started later in poll mode", |v| {
        v["mode"]["mode"] == "poll"
    })
    .await;
    // Back to auto from another node.
    let (status, _) = admin_call(
        &c,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(json!({"mode": "auto", "reason": "incident over"})),
    )
    .await;
    assert_eq!(status, 200);
    status_until(&a, "node A back to auto", |v| v["mode"]["mode"] == "auto").await;
}

#[tokio::test]
async fn a_maintenance_window_scheduled_on_one_node_is_on_every_node_and_cancelled_from_any() {
    let redis = Redis::start().await;
    let (a, b) = (admin_node(&redis).await, admin_node(&redis).await);
    status_until(&b, "node B's engine up", |v| v["engine"]["up"] == true).await;
    let window = json!({"start": "2099-01-01T02:00:00Z", "end": "2099-01-01T03:00:00Z", "mode": "self", "reason": "vendor upgrade"});
    let (status, v) =
        admin_call(&a, reqwest::Method::PUT, "/admin/maintenance", Some(window)).await;
    assert_eq!(status, 201, "{v}");
    let id = v["window"]["id"].as_u64().unwrap();
    // Overlap is judged against the shared schedule, whichever node is asked.
    let overlapping = json!({"start": "2099-01-01T02:30:00Z", "end": "2099-01-01T04:00:00Z", "mode": "self", "reason": "x"});
    let (status, v) = admin_call(
        &b,
        reqwest::Method::PUT,
        "/admin/maintenance",
        Some(overlapping),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("overlaps"),
        "{v}"
    );
    status_until(&b, "node B to list the window", |v| {
        v["maintenance"][0]["id"] == id
    })
    .await;
    let (_, route) = b.get("/v1/route").await;
    assert_eq!(route["maintenance"].as_array().unwrap().len(), 1, "{route}");
    let (status, v) = admin_call(
        &b,
        reqwest::Method::DELETE,
        &format!("/admin/maintenance/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    status_until(&a, "node A to drop the window", |v| {
        v["maintenance"].as_array().is_some_and(|w| w.is_empty())
    })
    .await;
}

#[tokio::test]
async fn one_node_at_a_time_runs_the_canary_and_every_node_sees_its_verdict() {
    let redis = Redis::start().await;
    let sockudo = crate::support::sockudo::Sockudo::start().await;
    let vendor = format!(
        "[vendors]\nurls = [\"{}\"]\n{}canary_interval_ms = 200\n",
        sockudo.pusher_url(),
        crate::support::tls::ca_file_toml()
    );
    let mut nodes = vec![
        admin_node_with(&redis, &vendor).await,
        admin_node_with(&redis, &vendor).await,
    ];
    let arrived = |v: &Value| v["vendors"][0]["last_canary"]["result"]["outcome"] == "arrived";
    let mut leases = Vec::new();
    for node in &nodes {
        let v = status_until(node, "a canary verdict on every node", arrived).await;
        leases.push(v["engine"]["canary_lease"].as_bool().unwrap());
    }
    // The lease holder is stable once taken; read both again to compare.
    let mut holders = Vec::new();
    for node in &nodes {
        let (_, v) = admin_call(node, reqwest::Method::GET, "/admin/status", None).await;
        holders.push(v["engine"]["canary_lease"] == true);
    }
    assert_eq!(
        holders.iter().filter(|h| **h).count(),
        1,
        "{holders:?} {leases:?}"
    );
    // The holder goes away: the other node takes the lease once it lapses, and probes.
    let holder = holders.iter().position(|h| *h).unwrap();
    nodes.remove(holder).shutdown().await.unwrap().unwrap();
    let other = &nodes[0];
    status_until(other, "the other node to take the canary lease", |v| {
        v["engine"]["canary_lease"] == true
    })
    .await;
    let (_, before) = admin_call(other, reqwest::Method::GET, "/admin/status", None).await;
    let at = before["vendors"][0]["last_canary"]["at"].as_u64().unwrap();
    status_until(other, "a fresh canary from the new holder", |v| {
        arrived(v) && v["vendors"][0]["last_canary"]["at"].as_u64().unwrap() > at
    })
    .await;
}

#[tokio::test]
async fn a_redis_that_goes_back_in_time_under_the_same_epoch_starts_a_new_epoch() {
    let redis = Redis::start().await;
    let s = node(&redis).await;
    let (mut ws, sub) = subscribe(&s, "t", None).await;
    let epoch = sub["epoch"].as_str().unwrap().to_string();
    for i in 0..5 {
        s.publish_seq("t", i).await;
    }
    assert_eq!(seqs(&events(&mut ws, 5).await), vec![1, 2, 3, 4, 5]);
    // As if Redis were restored from a snapshot taken after seq 2: same epoch, older head.
    let meta = "understudy:{t}:meta";
    let hist = "understudy:{t}:hist";
    let _: () = redis
        .cmd(redis::cmd("HSET").arg(meta).arg("seq").arg(2))
        .await;
    let _: () = redis
        .cmd(redis::cmd("ZREMRANGEBYSCORE").arg(hist).arg(3).arg("+inf"))
        .await;
    // The node notices when it next reconnects (here: its pub/sub connection is cut).
    let _: u64 = redis
        .cmd(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"))
        .await;
    closed(&mut ws, "the connection is told to resume").await;
    let (_, resumed) = subscribe(&s, "t", Some(json!({"epoch": epoch, "seq": 5}))).await;
    assert_eq!(resumed["type"], "reset", "{resumed}");
    assert_eq!(resumed["reason"], "epoch_changed");
    let (_, v) = s
        .publish(json!({"channel": "t", "name": "n", "data": 0}))
        .await;
    assert_ne!(v["epoch"], epoch.as_str());
    assert_eq!(v["seq"], 1);
}
