//! Resume: a subscriber leaves, events are published, and it comes back with its position on
//! each transport while a publisher keeps publishing. It must get exactly the missed events, then
//! the live ones: no gap, no duplicate, in order. Void positions get a reset.

use serde_json::{json, Value};

use crate::support::*;

const BEFORE: u64 = 5;
const MISSED: u64 = 200;
const DURING: u64 = 100;
const TOTAL: u64 = BEFORE + MISSED + DURING;

/// Publishes BEFORE events, returns the epoch.
async fn prologue(s: &Server, ch: &str) -> String {
    for n in 1..=BEFORE {
        s.publish_seq(ch, n).await;
    }
    let (_, v) = s.get(&format!("/v1/channels/{ch}/events?since=0")).await;
    v["epoch"].as_str().unwrap().to_string()
}

/// Publishes MISSED events, then starts a task publishing DURING more.
async fn miss_then_keep_publishing(s: &Server, ch: &str) -> tokio::task::JoinHandle<()> {
    for n in 0..MISSED {
        s.publish_seq(ch, BEFORE + n + 1).await;
    }
    let (http, base, ch) = (s.http.clone(), s.base.clone(), ch.to_string());
    tokio::spawn(async move {
        for n in 0..DURING {
            let r = http
                .post(format!("{base}/v1/publish"))
                .bearer_auth(KEY)
                .json(&json!({"channel": ch, "name": "n", "data": {"n": n}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
    })
}

fn expected_after(seq: u64) -> Vec<u64> {
    (seq + 1..=TOTAL).collect()
}

#[tokio::test]
async fn websocket_resume_is_lossless_during_concurrent_publishing() {
    let s = Server::start().await;
    let epoch = prologue(&s, "r").await;
    let held = 3;
    let publisher = miss_then_keep_publishing(&s, "r").await;
    let mut ws = ws_connect(&s.ws_url("")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "channel": "r", "since": {"epoch": epoch, "seq": held}}),
    )
    .await;
    let sub = ws_expect(&mut ws, "subscribed").await;
    assert_eq!(sub["epoch"], epoch.as_str());
    let mut got = Vec::new();
    while got.len() < expected_after(held).len() {
        got.push(ws_expect(&mut ws, "event").await);
    }
    publisher.await.unwrap();
    assert_eq!(seqs(&got), expected_after(held));
}

#[tokio::test]
async fn sse_resume_with_last_event_id_is_lossless_during_concurrent_publishing() {
    let s = Server::start().await;
    let epoch = prologue(&s, "r").await;
    // A first SSE session that sees everything so far, then leaves holding its last id.
    let mut first = Sse::open(
        &s,
        "?channel=r&channel=other",
        Some(&format!("r~{epoch}~0")),
    )
    .await;
    first.expect("subscribed").await;
    for _ in 0..BEFORE {
        first.expect("event").await;
    }
    first.expect("subscribed").await; // "other" starts live
    let last_id = first.last_id.clone().unwrap();
    assert!(
        last_id.starts_with(&format!("r~{epoch}~{BEFORE},other~")),
        "{last_id}"
    );
    drop(first);

    let publisher = miss_then_keep_publishing(&s, "r").await;
    let mut sse = Sse::open(&s, "?channel=r&channel=other", Some(&last_id)).await;
    let mut got = Vec::new();
    let mut subscribed = 0;
    while got.len() < expected_after(BEFORE).len() {
        let v = sse.next().await.expect("stream open");
        match v["type"].as_str() {
            Some("event") => got.push(v),
            Some("subscribed") => subscribed += 1,
            _ => panic!("unexpected {v}"),
        }
    }
    assert_eq!(subscribed, 2);
    publisher.await.unwrap();
    assert_eq!(seqs(&got), expected_after(BEFORE));
    assert!(sse
        .last_id
        .unwrap()
        .starts_with(&format!("r~{epoch}~{TOTAL}")));
}

#[tokio::test]
async fn poll_resume_is_lossless_during_concurrent_publishing() {
    let s = Server::start().await;
    let epoch = prologue(&s, "r").await;
    let publisher = miss_then_keep_publishing(&s, "r").await;
    let mut position = json!({"epoch": epoch, "seq": 2});
    let mut got: Vec<Value> = Vec::new();
    while got.len() < expected_after(2).len() {
        let (status, v) = s
            .get(&format!(
                "/v1/channels/r/events?epoch={}&since={}&limit=50&wait_ms=5000",
                position["epoch"].as_str().unwrap(),
                position["seq"]
            ))
            .await;
        assert_eq!(status, 200);
        assert_eq!(v["reset"], false);
        got.extend(v["events"].as_array().unwrap().iter().cloned());
        position = v["next"].clone();
    }
    publisher.await.unwrap();
    assert_eq!(seqs(&got), expected_after(2));
}

#[tokio::test]
async fn switching_transport_mid_stream_keeps_the_position() {
    let s = Server::start().await;
    let epoch = prologue(&s, "sw").await;
    // Poll the first events, continue on WebSocket, then on SSE.
    let (_, v) = s
        .get(&format!(
            "/v1/channels/sw/events?epoch={epoch}&since=0&limit=2"
        ))
        .await;
    let mut got = v["events"].as_array().unwrap().clone();
    let mut ws = ws_connect(&s.ws_url("")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "channel": "sw", "since": v["next"]}),
    )
    .await;
    ws_expect(&mut ws, "subscribed").await;
    got.push(ws_expect(&mut ws, "event").await);
    drop(ws);
    let at = got.last().unwrap()["seq"].as_u64().unwrap();
    let mut sse = Sse::open(&s, &format!("?channel=sw&cursor=sw~{epoch}~{at}"), None).await;
    sse.expect("subscribed").await;
    while got.len() < BEFORE as usize {
        got.push(sse.expect("event").await);
    }
    assert_eq!(seqs(&got), (1..=BEFORE).collect::<Vec<_>>());
}

#[tokio::test]
async fn void_positions_get_a_reset_on_every_transport() {
    let s = Server::with("[auth]\nsubscribe = \"none\"\n[history]\nmax_events = 10\n").await;
    let epoch = prologue(&s, "v").await;
    for n in 0..20 {
        s.publish_seq("v", n).await;
    }
    let head = BEFORE + 20;
    // Too old: seq 1 left history (it holds 16..=25).
    let mut ws = ws_connect(&s.ws_url("")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "channel": "v", "since": {"epoch": epoch, "seq": 1}}),
    )
    .await;
    let reset = ws_expect(&mut ws, "reset").await;
    assert_eq!(
        reset,
        json!({"type": "reset", "channel": "v", "epoch": epoch, "seq": head, "reason": "history_exceeded"})
    );
    // Another epoch.
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "channel": "v", "since": {"epoch": "oldepoch", "seq": 24}}),
    )
    .await;
    assert_eq!(ws_expect(&mut ws, "reset").await["reason"], "epoch_changed");
    // After a reset the subscription is live from the head.
    s.publish_seq("v", 99).await;
    assert_eq!(ws_expect(&mut ws, "event").await["seq"], head + 1);

    let mut sse = Sse::open(&s, "?channel=v", Some("v~oldepoch~3")).await;
    let r = sse.expect("reset").await;
    assert_eq!(
        (r["reason"].as_str(), r["seq"].as_u64()),
        (Some("epoch_changed"), Some(head + 1))
    );
    assert_eq!(
        sse.last_id.as_deref(),
        Some(format!("v~{epoch}~{}", head + 1).as_str())
    );

    let (_, p) = s
        .get(&format!("/v1/channels/v/events?epoch={epoch}&since=2"))
        .await;
    assert_eq!(
        (p["reset"].clone(), p["reason"].clone()),
        (json!(true), json!("history_exceeded"))
    );
    assert_eq!(p["events"], json!([]));
    assert_eq!(p["next"], json!({"epoch": epoch, "seq": head + 1}));
    let (_, p) = s
        .get(&format!("/v1/channels/v/events?epoch={epoch}&since=999"))
        .await;
    assert_eq!(p["reason"], "ahead_of_head");
}
