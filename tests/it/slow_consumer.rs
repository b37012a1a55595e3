//! A subscriber that stops reading must not stall publishers or other subscribers, and must not
//! hold more than its buffer: it is cut off and told to resume from its position.

use futures_util::StreamExt;
use serde_json::json;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const EVENTS: u64 = 3000;

#[tokio::test]
async fn a_stuck_subscriber_is_cut_off_and_nobody_else_waits_for_it() {
    let s = Server::with(
        "[auth]\nsubscribe = \"none\"\n[subscribers]\nbuffer_events = 32\nbuffer_bytes = 65536\nwrite_timeout_ms = 300\n[history]\nmax_events = 5000\n",
    )
    .await;
    // The stuck client: a small receive buffer, subscribes, then never reads again.
    let addr = s.base.trim_start_matches("http://").parse().unwrap();
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let (mut stuck, _) = tokio_tungstenite::client_async(s.ws_url("?channel=big"), stream)
        .await
        .unwrap();
    ws_expect(&mut stuck, "welcome").await;
    ws_expect(&mut stuck, "subscribed").await;

    // A healthy subscriber reads everything in a task of its own.
    let mut healthy = ws_connect(&s.ws_url("?channel=big")).await;
    ws_expect(&mut healthy, "welcome").await;
    ws_expect(&mut healthy, "subscribed").await;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while (got.len() as u64) < EVENTS {
            got.push(
                ws_expect(&mut healthy, "event").await["seq"]
                    .as_u64()
                    .unwrap(),
            );
        }
        got
    });

    let pad = "x".repeat(4096);
    let publishing = async {
        for n in 1..=EVENTS {
            let (status, _) = s
                .publish(json!({"channel": "big", "name": "n", "data": {"n": n, "pad": pad}}))
                .await;
            assert_eq!(status, 202);
        }
    };
    // The stuck client reads again as soon as it is cut, while publishing goes on: it is owed its
    // frames and its close for as long as it keeps taking bytes, but not while it stays silent,
    // so it must not wait for the rest of the test (slow on a busy machine) before reading.
    let cut_then_read = async {
        // The stuck subscriber was dropped by the server, freeing its share of the channel.
        eventually("the stuck subscriber to be cut off", || {
            s.state.engine.registry().subscriber_count_of("big") == 1
        })
        .await;
        // When it reads again it finds whole events, then the slow-consumer close frame: never a
        // frame cut short, never a bare end of the connection.
        let mut seen = Vec::new();
        let code = loop {
            match tokio::time::timeout(PATIENCE, stuck.next()).await {
                Ok(Some(Ok(Message::Close(Some(frame))))) => break frame.code,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "event" {
                        seen.push(v["seq"].as_u64().unwrap());
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("expected whole frames then a 4008 close, got {other:?}"),
            }
        };
        (code, seen)
    };
    let ((), (code, seen)) = tokio::join!(publishing, cut_then_read);
    let got = tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        (1..=EVENTS).collect::<Vec<_>>(),
        "the healthy subscriber got everything in order"
    );

    assert_eq!(code, CloseCode::from(4008));
    assert!(
        !seen.is_empty() && (seen.len() as u64) < EVENTS,
        "it fell behind"
    );
    assert_eq!(
        seen,
        (1..=seen.len() as u64).collect::<Vec<_>>(),
        "what it got is in order, without a gap"
    );
    // It resumes from its position and gets the rest from history: nothing lost.
    let last = *seen.last().unwrap();
    let mut again = ws_connect(&s.ws_url("")).await;
    ws_expect(&mut again, "welcome").await;
    let big = understudy::core::ChannelName::parse("big").unwrap();
    let epoch = s.state.engine.registry().head_of(&big).unwrap().epoch;
    ws_send(
        &mut again,
        json!({"type": "subscribe", "channel": "big", "since": {"epoch": epoch.as_str(), "seq": last}}),
    )
    .await;
    ws_expect(&mut again, "subscribed").await;
    for seq in last + 1..=EVENTS {
        assert_eq!(ws_expect(&mut again, "event").await["seq"], seq);
    }
}

#[tokio::test]
async fn a_lagging_sse_subscriber_is_told_to_resume_and_loses_nothing() {
    // The write deadline is far off: this test is about the lag (4 events of buffer), and the
    // stream is not read until every event is published, which on a busy machine can outlast the
    // default 10 s, after which a stream that takes nothing is dropped without its message.
    let s = Server::with("[auth]\nsubscribe = \"none\"\n[subscribers]\nbuffer_events = 4\nwrite_timeout_ms = 120000\n[history]\nmax_events = 5000\n").await;
    let mut sse = Sse::open(&s, "?channel=lag", None).await;
    sse.expect("subscribed").await;
    // The stream is not read while far more than the socket buffers hold is published.
    let pad = "x".repeat(4096);
    for n in 1..=EVENTS {
        let (status, _) = s
            .publish(json!({"channel": "lag", "name": "n", "data": {"n": n, "pad": pad}}))
            .await;
        assert_eq!(status, 202);
    }
    let mut seen = Vec::new();
    let reconnect = loop {
        let v = sse
            .next()
            .await
            .expect("a reconnect message before the end");
        if v["type"] == "event" {
            seen.push(v["seq"].as_u64().unwrap());
        } else {
            break v;
        }
    };
    assert_eq!(reconnect["type"], "reconnect");
    assert_eq!(reconnect["reason"], "slow_consumer");
    assert!(
        sse.next().await.is_none(),
        "the stream ends after the reconnect message"
    );
    assert!(
        (seen.len() as u64) < EVENTS,
        "the subscriber really fell behind"
    );
    // Resuming from the last id fills the rest from history: nothing lost, nothing twice.
    let mut again = Sse::open(&s, "?channel=lag", sse.last_id.as_deref()).await;
    again.expect("subscribed").await;
    while (seen.len() as u64) < EVENTS {
        seen.push(again.expect("event").await["seq"].as_u64().unwrap());
    }
    assert_eq!(seen, (1..=EVENTS).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_silent_websocket_client_is_closed_and_an_answering_one_is_kept() {
    // Two heartbeats without a pong close a client. A second each, not less: the answering
    // client's reader must get a turn within that window on a busy machine.
    let s =
        Server::with("[auth]\nsubscribe = \"none\"\n[subscribers]\nheartbeat_ms = 1000\n").await;
    // tungstenite answers pings while it is being read; this client is read, the other is not.
    let mut alive = ws_connect(&s.ws_url("?channel=hb")).await;
    ws_expect(&mut alive, "welcome").await;
    ws_expect(&mut alive, "subscribed").await;
    let mut silent = ws_connect(&s.ws_url("?channel=hb")).await;
    ws_expect(&mut silent, "welcome").await;
    ws_expect(&mut silent, "subscribed").await;
    let reader = tokio::spawn(async move {
        // Read (and so answer pings) until the event published below arrives.
        let ev = ws_expect(&mut alive, "event").await;
        (alive, ev)
    });
    eventually("the silent client to be closed", || {
        s.state.engine.registry().subscriber_count_of("hb") == 1
    })
    .await;
    s.publish_seq("hb", 1).await;
    let (_alive, ev) = tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev["seq"], 1);
    drop(silent);
}

/// The close is counted. The counter is process-wide, so the node runs as its own process: a slow
/// consumer cut by another test in this binary cannot make the check pass.
#[tokio::test]
async fn a_cut_slow_consumer_is_counted_once_on_its_node() {
    let config = scratch_dir("slow-consumer-metrics");
    std::fs::create_dir_all(&config).unwrap();
    let file = config.join("understudy.toml");
    std::fs::write(
        &file,
        "[subscribers]\nbuffer_events = 32\nbuffer_bytes = 65536\nwrite_timeout_ms = 300\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_understudy"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&file)
        .env_clear()
        .env("UNDERSTUDY_LISTEN", "127.0.0.1:0")
        .env("UNDERSTUDY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("UNDERSTUDY_SUBSCRIBE_AUTH", "none")
        .env("UNDERSTUDY_PUBLISHER_KEYS", KEY)
        .env("UNDERSTUDY_AUDIT_DIR", config.join("audit"))
        .env("UNDERSTUDY_LOG", "warn");
    let (mut node, base, admin) = tokio::task::spawn_blocking(move || spawn_serving_both(cmd))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let closes = || {
        let (http, url) = (http.clone(), format!("{admin}/metrics"));
        async move {
            let text = http.get(url).send().await.unwrap().text().await.unwrap();
            text.lines()
                .find_map(|l| {
                    l.strip_prefix("understudy_slow_consumer_closes_total{transport=\"ws\"} ")
                })
                .map_or(0, |v| v.trim().parse::<u64>().unwrap())
        }
    };
    assert_eq!(closes().await, 0, "a fresh node has cut nobody");

    let addr = base.trim_start_matches("http://").parse().unwrap();
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let url = format!("{}/v1/ws?channel=big", base.replace("http://", "ws://"));
    let (mut stuck, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    ws_expect(&mut stuck, "welcome").await;
    ws_expect(&mut stuck, "subscribed").await;
    let pad = "x".repeat(4096);
    let mut n = 0;
    // Publish until the node cuts the stuck subscriber (bounded: far more than its buffers hold).
    while closes().await == 0 {
        assert!(
            n < EVENTS,
            "{EVENTS} events published and the stuck subscriber is still on"
        );
        for _ in 0..100 {
            n += 1;
            let r = http
                .post(format!("{base}/v1/publish"))
                .bearer_auth(KEY)
                .json(&json!({"channel": "big", "name": "n", "data": {"n": n, "pad": pad}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 202);
        }
    }
    assert_eq!(closes().await, 1, "one cut, counted once");
    node.kill().ok();
    node.wait().ok();
}
