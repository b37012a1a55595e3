//! Graceful shutdown: readiness goes 503, every open connection is told to reconnect, and the
//! server is gone within its limit.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn shutdown_tells_every_connection_to_go_within_the_limit() {
    let mut s = Server::with("[auth]\nsubscribe = \"none\"\n[server]\nshutdown_timeout_ms = 3000\ndrain_window_ms = 500\nreconnect_jitter_ms = 2000\n").await;
    let mut ws = ws_connect(&s.ws_url("?channel=a")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    let mut sse = Sse::open(&s, "?channel=a", None).await;
    sse.expect("subscribed").await;
    let long_poll = s.spawn_get("/v1/channels/a/events?since=0&wait_ms=25000");
    eventually("the long poll to park", || {
        s.state.engine.registry().subscriber_count_of("a") == 3
    })
    .await;

    let started = tokio::time::Instant::now();
    let run = s.shutdown();

    let bye = ws_expect(&mut ws, "reconnect").await;
    assert_eq!(bye["reason"], "shutdown");
    assert!(bye["retry_ms"].as_u64().unwrap() < 2000);
    match tokio::time::timeout(PATIENCE, ws_frame(&mut ws))
        .await
        .unwrap()
    {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Restart),
        other => panic!("expected close 1012, got {other:?}"),
    }
    let bye = sse.expect("reconnect").await;
    assert_eq!(bye["reason"], "shutdown");
    assert!(sse.next().await.is_none(), "the SSE stream ends");
    let answer = tokio::time::timeout(PATIENCE, long_poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer["events"], serde_json::json!([]));
    assert!(answer["reconnect_ms"].is_u64(), "{answer}");

    tokio::time::timeout(Duration::from_secs(4), run)
        .await
        .expect("run returns within the limit")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        s.http
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .is_err(),
        "new connections are refused"
    );
}

#[tokio::test]
async fn a_draining_node_is_unready_and_refuses_new_streams_but_still_publishes() {
    let s = Server::start().await;
    for base in [&s.base, &s.admin] {
        let r = s.http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    s.state.lifecycle.set_draining();
    for base in [&s.base, &s.admin] {
        let r = s.http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        let r = s.http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "alive while draining");
    }
    let (status, v) = s.get("/v1/sse?channel=a").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("shutting_down"))
    );
    assert!(tokio_tungstenite::connect_async(s.ws_url("?channel=a"))
        .await
        .is_err());
    assert_eq!(s.publish_seq("a", 1).await, 1);
}

// Several threads, so each reader notes its goodbye when it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_drain_spreads_the_goodbyes_over_the_window_then_the_node_exits() {
    let token = "drain-admin-token-0123456789";
    let mut s = Server::with(&format!(
        "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"ops\", token = \"{token}\" }}]\n[server]\nshutdown_timeout_ms = 5000\ndrain_window_ms = 1500\n"
    ))
    .await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut ws = ws_connect(&s.ws_url("?channel=d")).await;
        ws_expect(&mut ws, "welcome").await;
        ws_expect(&mut ws, "subscribed").await;
        clients.push(ws);
    }
    let r = s
        .http
        .post(format!("{}/admin/drain", s.admin))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["open_connections"], 10);
    let started = tokio::time::Instant::now();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut served = 0;
                loop {
                    let m = ws_next_any(&mut ws).await;
                    match m["type"].as_str() {
                        Some("event") => served += 1,
                        Some("reconnect") => return served,
                        _ => {}
                    }
                }
            })
        })
        .collect();
    let ready = s
        .http
        .get(format!("{}/readyz", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    // Until its turn, a connection is still served.
    s.publish_seq("d", 1).await;
    // The server's own count of open connections falls over the window, not all at once.
    let (mut first_gone, mut all_gone) = (None, None);
    while all_gone.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "connections outlived the drain"
        );
        let open = s.state.lifecycle.open_connections();
        if open < 10 && first_gone.is_none() {
            first_gone = Some(started.elapsed());
        }
        if open == 0 {
            all_gone = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (first_gone, all_gone) = (first_gone.unwrap(), all_gone.unwrap());
    assert!(
        all_gone - first_gone >= Duration::from_millis(300),
        "goodbyes spread over the window: first {first_gone:?}, last {all_gone:?}"
    );
    assert!(
        all_gone < Duration::from_millis(2500),
        "within the window: {all_gone:?}"
    );
    let mut served = 0;
    for r in readers {
        served += r.await.unwrap();
    }
    assert!(
        served >= 5,
        "connections were served until their turn: {served}"
    );
    tokio::time::timeout(Duration::from_secs(6), s.shutdown())
        .await
        .expect("the node exits")
        .unwrap()
        .unwrap();
}
