//! Publish, then receive the same event on every transport; idempotency, batches, fan-out and
//! long polls.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn one_event_arrives_identically_on_ws_sse_and_poll() {
    let s = Server::start().await;
    let mut ws = ws_connect(&s.ws_url("?channel=room")).await;
    ws_expect(&mut ws, "welcome").await;
    let sub = ws_expect(&mut ws, "subscribed").await;
    assert_eq!(sub["seq"], 0);
    let mut sse = Sse::open(&s, "?channel=room", None).await;
    sse.expect("subscribed").await;

    let (status, ack) = s
        .publish(json!({"channel": "room", "name": "patient.checked_in", "data": {"ticket": "A-17"}, "id": "chk-1"}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["id"], "chk-1");
    assert_eq!(ack["epoch"], sub["epoch"]);

    let via_ws = ws_expect(&mut ws, "event").await;
    let via_sse = sse.expect("event").await;
    let (_, polled) = s.get("/v1/channels/room/events?since=0").await;
    let via_poll = polled["events"][0].clone();
    for ev in [&via_ws, &via_sse, &via_poll] {
        assert_eq!(ev["seq"], 1);
        assert_eq!(ev["epoch"], ack["epoch"]);
        assert_eq!(ev["id"], "chk-1");
        assert_eq!(ev["name"], "patient.checked_in");
        assert_eq!(ev["data"], json!({"ticket": "A-17"}));
        assert!(ev["ts"].as_u64().unwrap() > 1_700_000_000_000);
    }
    assert_eq!(via_ws, via_sse);
    assert_eq!(via_ws, via_poll);
    assert_eq!(polled["next"], json!({"epoch": ack["epoch"], "seq": 1}));
    assert_eq!(
        sse.last_id.as_deref(),
        Some(format!("room~{}~1", ack["epoch"].as_str().unwrap()).as_str())
    );
}

#[tokio::test]
async fn seq_is_contiguous_and_events_arrive_in_order() {
    let s = Server::start().await;
    let mut ws = ws_connect(&s.ws_url("?channel=a")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    for n in 1..=100 {
        assert_eq!(s.publish_seq("a", n).await, n);
    }
    let mut got = Vec::new();
    for _ in 0..100 {
        got.push(ws_expect(&mut ws, "event").await);
    }
    assert_eq!(seqs(&got), (1..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_same_id_publishes_once() {
    let s = Server::start().await;
    let body = json!({"channel": "a", "name": "x", "data": 1, "id": "once"});
    let (_, first) = s.publish(body.clone()).await;
    let (status, again) = s.publish(body).await;
    assert_eq!(status, 202);
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(s.publish_seq("a", 2).await, 2, "the duplicate used no seq");
    let (_, polled) = s.get("/v1/channels/a/events?since=0").await;
    assert_eq!(polled["events"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn one_publish_fans_out_to_several_channels_with_one_id() {
    let s = Server::start().await;
    s.publish_seq("b", 1).await;
    let (status, v) = s
        .publish(json!({"channels": ["a", "b", "c"], "name": "x", "data": null}))
        .await;
    assert_eq!(status, 202);
    let results = v["results"].as_array().unwrap();
    let got: Vec<(String, u64)> = results
        .iter()
        .map(|r| {
            (
                r["channel"].as_str().unwrap().to_string(),
                r["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]);
    assert!(results.iter().all(|r| r["id"] == v["id"]));
}

#[tokio::test]
async fn a_bad_batch_item_fails_alone() {
    let s = Server::start().await;
    let (status, v) = s
        .post(
            "/v1/publish/batch",
            json!({"events": [
                {"channel": "a", "name": "x", "data": 1},
                {"channel": "bad name", "name": "x"},
                {"channel": "a", "name": "x", "data": 2, "extra": true},
                {"channels": ["a", "no/slash"], "name": "x"},
                {"channel": "a", "name": "x", "data": 3},
            ]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["published"], 2);
    assert_eq!(v["failed"], 3);
    let r = v["results"].as_array().unwrap();
    assert_eq!(
        (r[0]["status"].clone(), r[0]["seq"].clone()),
        (json!(202), json!(1))
    );
    assert_eq!(r[1]["error"]["code"], "invalid_channel");
    assert_eq!(r[2]["error"]["code"], "invalid_field");
    assert!(r[2]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("events[2]"));
    assert_eq!(r[3]["error"]["code"], "invalid_channel");
    assert_eq!(
        r[4]["seq"], 2,
        "the multi-channel item was not half-applied"
    );
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_an_event_arrives() {
    let s = Server::start().await;
    let (_, first) = s.get("/v1/channels/lp/events").await;
    assert_eq!(first["events"], json!([]));
    let next = first["next"].clone();
    let waiting = s.spawn_get(&format!(
        "/v1/channels/lp/events?epoch={}&since={}&wait_ms=20000",
        next["epoch"].as_str().unwrap(),
        next["seq"]
    ));
    // The poll is parked on the channel's live feed before we publish.
    eventually("the long poll to park", || {
        s.state.engine.registry().subscriber_count_of("lp") == 1
    })
    .await;
    s.publish_seq("lp", 1).await;
    let answer = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(answer["events"].as_array().unwrap()), vec![1]);
    assert_eq!(answer["reset"], false);
}

#[tokio::test]
async fn an_unchanged_channel_answers_304_to_its_etag() {
    let s = Server::start().await;
    s.publish_seq("e", 1).await;
    let r = s
        .http
        .get(format!("{}/v1/channels/e/events?since=0", s.base))
        .send()
        .await
        .unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    let url = format!(
        "{}/v1/channels/e/events?epoch={}&since=1",
        s.base,
        body["epoch"].as_str().unwrap()
    );
    let r = s
        .http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    s.publish_seq("e", 2).await;
    let r = s
        .http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn one_poll_request_covers_several_channels() {
    let s = Server::start().await;
    s.publish_seq("k1", 1).await;
    s.publish_seq("k2", 1).await;
    s.publish_seq("k2", 2).await;
    let (_, k2) = s.get("/v1/channels/k2/events?since=0").await;
    let (status, v) = s
        .post(
            "/v1/poll",
            json!({"channels": [
                {"channel": "k1", "since": 0},
                {"channel": "k2", "epoch": k2["epoch"], "since": 1},
                {"channel": "k3"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!(seqs(r[0]["events"].as_array().unwrap()), vec![1]);
    assert_eq!(seqs(r[1]["events"].as_array().unwrap()), vec![2]);
    assert_eq!(r[2]["events"], json!([]));
    assert_eq!(v["poll_interval_ms"], 2000);
}

#[tokio::test]
async fn the_browser_client_is_served_by_the_binary() {
    let s = Server::start().await;
    let r = s
        .http
        .get(format!("{}/v1/client.js", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(r.text().await.unwrap().contains("Understudy"));
    let m = s
        .http
        .get(format!("{}/v1/client.mjs", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("import \"./client.js\""), "{m}");
}

#[tokio::test]
async fn browsers_on_other_origins_pass_the_cors_preflight() {
    let s = Server::start().await;
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/poll", s.base))
        .header("Origin", "https://screens.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
}

/// Publishing is server to server: a publish route answers without CORS headers and refuses a
/// preflight, while what pages call (and a miss) still carries them.
#[tokio::test]
async fn publish_routes_answer_without_cors() {
    let s = Server::start().await;
    let r = s
        .http
        .post(format!("{}/v1/publish", s.base))
        .bearer_auth(KEY)
        .header("Origin", "https://screens.example.com")
        .json(&json!({"channel": "nocors", "name": "n", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for name in [
        "access-control-allow-origin",
        "access-control-expose-headers",
        "vary",
    ] {
        assert!(r.headers().get(name).is_none(), "{name} on a publish");
    }
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/publish", s.base))
        .header("Origin", "https://screens.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    for path in ["/v1/route", "/v1/nowhere"] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .header("Origin", "https://screens.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
    }
}

/// Event frames are written beside tungstenite: frames of every length encoding (7-bit, 16-bit and
/// 64-bit lengths) arrive whole and in order, interleaved with the pongs tungstenite sends for the
/// client's pings.
#[tokio::test]
async fn event_frames_of_every_length_interleave_with_pongs_intact() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let s = Server::start().await;
    let mut ws = ws_connect(&s.ws_url("?channel=sizes")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    // The last one makes a frame over 65,535 bytes from a body under the 64 KiB publish limit.
    let sizes = [0usize, 10, 100, 1_000, 20_000, 65_450];
    for (i, n) in sizes.iter().enumerate() {
        ws.send(Message::Ping(format!("p{i}").into_bytes().into()))
            .await
            .unwrap();
        let (status, _) = s
            .publish(json!({"channel": "sizes", "name": "n", "data": "x".repeat(*n)}))
            .await;
        assert_eq!(status, 202);
    }
    let (mut events, mut pongs) = (Vec::new(), Vec::new());
    while events.len() < sizes.len() || pongs.len() < sizes.len() {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame within the test's patience")
            .expect("socket open")
            .expect("a well-formed frame");
        match msg {
            Message::Pong(p) => pongs.push(String::from_utf8(p.to_vec()).unwrap()),
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "event" {
                    events.push((
                        v["seq"].as_u64().unwrap(),
                        v["data"].as_str().unwrap().len(),
                    ));
                }
            }
            _ => {}
        }
    }
    let want: Vec<(u64, usize)> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u64 + 1, *n))
        .collect();
    assert_eq!(events, want);
    let want: Vec<String> = (0..sizes.len()).map(|i| format!("p{i}")).collect();
    assert_eq!(pongs, want);
    s.publish_seq("sizes", 7).await;
    assert_eq!(ws_expect(&mut ws, "event").await["seq"], 7);
}
