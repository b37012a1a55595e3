//! `GET /app/{key}`: Pusher protocol 7 on understudy's own WebSocket, spoken by a plain
//! tokio-tungstenite client: the handshake, subscribe and unsubscribe, private channel
//! signatures, ping and pong, each error and close code, and socket_id exclusion.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::Message;
use understudy::core::{ChannelName, EventDraft};

use crate::support::{ws_connect, ws_frame, Server, Ws, PATIENCE};

const APP_KEY: &str = "clinic-app-key";
const APP_SECRET: &str = "clinic-app-secret-0123456789";

/// Subscriber auth stays "jwt" (the default): public channels on /app/{key} need no token.
fn config(extra: &str) -> String {
    format!(
        "[[apps]]\nid = \"42\"\nkey = \"{APP_KEY}\"\nsecret = \"{APP_SECRET}\"\nforward = \"none\"\n{extra}"
    )
}

fn url(server: &Server, key: &str, query: &str) -> String {
    format!(
        "{}/app/{key}{query}",
        server.base.replace("http://", "ws://")
    )
}

async fn connect(server: &Server) -> (Ws, String) {
    let mut ws = ws_connect(&url(server, APP_KEY, "?protocol=7&client=js&version=8.4.0")).await;
    let hello = next(&mut ws).await;
    assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
    let data: Value =
        serde_json::from_str(hello["data"].as_str().expect("data is a string")).unwrap();
    (ws, data["socket_id"].as_str().unwrap().to_string())
}

/// The next Pusher message (text frames only).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws_frame(ws))
            .await
            .expect("a message within the test's patience")
            .expect("socket open")
            .expect("frame ok");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// The next Pusher message other than the server's idle pings.
async fn next_not_ping(ws: &mut Ws) -> Value {
    loop {
        let v = next(ws).await;
        if v["event"] != "pusher:ping" {
            return v;
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The close code the server ends the socket with, after any text messages it sent first.
async fn close_code(ws: &mut Ws) -> (u16, Vec<Value>) {
    // One deadline for the whole wait: a server that keeps pinging but never closes fails too.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut before = Vec::new();
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a close within the test's patience");
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code.into(), before),
            Some(Ok(Message::Text(t))) => before.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn sign(socket_id: &str, channel: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(format!("{socket_id}:{channel}").as_bytes());
    format!("{APP_KEY}:{}", hex::encode(mac.finalize().into_bytes()))
}

async fn subscribe(ws: &mut Ws, channel: &str, auth: Option<&str>) -> Value {
    let mut data = json!({"channel": channel});
    if let Some(a) = auth {
        data["auth"] = json!(a);
    }
    send(ws, json!({"event": "pusher:subscribe", "data": data})).await;
    next_not_ping(ws).await
}

async fn publish(server: &Server, channel: &str, name: &str, data: Value) {
    let (status, v) = server
        .publish(json!({"channel": channel, "name": name, "data": data}))
        .await;
    assert_eq!(status, 202, "{v}");
}

#[tokio::test]
async fn the_handshake_gives_each_socket_its_own_pusher_socket_id() {
    let server = Server::with(&config("")).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut ws = ws_connect(&url(
            &server,
            APP_KEY,
            "?protocol=7&client=js&version=8.4.0",
        ))
        .await;
        let hello = next(&mut ws).await;
        assert_eq!(
            hello.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["data", "event"],
            "{hello}"
        );
        assert_eq!(hello["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
        let id = data["socket_id"].as_str().unwrap().to_string();
        let (a, b) = id.split_once('.').expect("N.N");
        assert!(a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok(), "{id}");
        assert!(data["activity_timeout"].as_u64().unwrap() >= 1, "{data}");
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "socket ids are unique: {ids:?}");
}

#[tokio::test]
async fn an_unknown_key_or_protocol_is_refused_with_pusher_codes() {
    let server = Server::with(&config("")).await;
    for (key, query, code) in [
        ("no-such-key", "?protocol=7&client=js&version=8.4.0", 4001),
        (APP_KEY, "?client=js&version=8.4.0", 4008),
        (APP_KEY, "?protocol=3&client=js&version=8.4.0", 4007),
    ] {
        let mut ws = ws_connect(&url(&server, key, query)).await;
        let (closed, before) = close_code(&mut ws).await;
        assert_eq!(closed, code, "{key} {query}");
        assert_eq!(before.len(), 1, "{before:?}");
        assert_eq!(before[0]["event"], "pusher:error");
        assert_eq!(before[0]["data"]["code"], code);
    }
    // The server still serves.
    let (_ws, _id) = connect(&server).await;
}

#[tokio::test]
async fn a_public_channel_gets_every_event_as_pusher_sends_it_until_unsubscribed() {
    let server = Server::with(&config("")).await;
    let (mut ws, _) = connect(&server).await;
    let ok = subscribe(&mut ws, "ward-3", None).await;
    assert_eq!(
        ok,
        json!({"event": "pusher_internal:subscription_succeeded", "channel": "ward-3", "data": "{}"})
    );
    assert_eq!(
        subscribe(&mut ws, "marker", None).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    publish(
        &server,
        "ward-3",
        "checked-in",
        json!("{\"ticket\":\"A-17\"}"),
    )
    .await;
    publish(&server, "ward-3", "called", json!({"ticket": "A-17"})).await;
    publish(&server, "ward-3", "n", json!(3)).await;
    let got = [
        next_not_ping(&mut ws).await,
        next_not_ping(&mut ws).await,
        next_not_ping(&mut ws).await,
    ];
    assert_eq!(
        got,
        [
            json!({"event": "checked-in", "channel": "ward-3", "data": "{\"ticket\":\"A-17\"}"}),
            json!({"event": "called", "channel": "ward-3", "data": "{\"ticket\":\"A-17\"}"}),
            json!({"event": "n", "channel": "ward-3", "data": "3"}),
        ]
    );
    send(
        &mut ws,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "ward-3"}}),
    )
    .await;
    // A ping's pong proves the unsubscribe was read before the next publishes.
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_not_ping(&mut ws).await["event"], "pusher:pong");
    publish(&server, "ward-3", "after", json!("x")).await;
    publish(&server, "marker", "m", json!("x")).await;
    let v = next_not_ping(&mut ws).await;
    assert_eq!(
        (v["channel"].as_str(), v["event"].as_str()),
        (Some("marker"), Some("m")),
        "{v}"
    );
}

#[tokio::test]
async fn private_channels_need_the_app_signature_for_this_socket() {
    let server = Server::with(&config("")).await;
    let (mut ws, socket_id) = connect(&server).await;
    let good = sign(&socket_id, "private-ward-3");
    let ok = subscribe(&mut ws, "private-ward-3", Some(&good)).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );

    // Signed for another socket, signed with another secret, or not signed: 4009, per channel.
    let other_socket = sign("1.1", "private-other");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"not-the-app-secret").unwrap();
    mac.update(format!("{socket_id}:private-other").as_bytes());
    let wrong_secret = format!("{APP_KEY}:{}", hex::encode(mac.finalize().into_bytes()));
    for auth in [
        Some(other_socket.as_str()),
        Some(wrong_secret.as_str()),
        None,
    ] {
        let refused = subscribe(&mut ws, "private-other", auth).await;
        assert_eq!(refused["event"], "pusher:error", "{refused}");
        assert_eq!(refused["channel"], "private-other");
        assert_eq!(refused["data"]["code"], 4009);
        let message = refused["data"]["message"].as_str().unwrap();
        assert!(!message.contains(APP_SECRET), "{message}");
    }
    // The socket stays, for its private channel and for new ones.
    let ok = subscribe(&mut ws, "lobby", None).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    publish(&server, "private-other", "secret", json!("no")).await;
    publish(&server, "private-ward-3", "a", json!("1")).await;
    publish(&server, "lobby", "b", json!("2")).await;
    assert_eq!(
        [next_not_ping(&mut ws).await, next_not_ping(&mut ws).await],
        [
            json!({"event": "a", "channel": "private-ward-3", "data": "1"}),
            json!({"event": "b", "channel": "lobby", "data": "2"}),
        ]
    );
}

#[tokio::test]
async fn presence_client_events_and_names_understudy_cannot_hold_are_refused_clearly() {
    let server = Server::with(&config("")).await;
    let (mut ws, socket_id) = connect(&server).await;
    for channel in ["presence-room", "private-encrypted-room"] {
        let auth = sign(&socket_id, channel);
        let refused = subscribe(&mut ws, channel, Some(&auth)).await;
        assert_eq!(refused["data"]["code"], 4009, "{refused}");
        assert_eq!(refused["channel"], channel);
        assert!(refused["data"]["message"]
            .as_str()
            .unwrap()
            .contains("not served"));
    }
    let refused = subscribe(&mut ws, "room=1", None).await;
    assert_eq!(refused["event"], "pusher:error");
    assert_eq!(refused["data"]["code"], Value::Null, "{refused}");
    assert!(
        refused["data"]["message"].as_str().unwrap().contains("'='"),
        "{refused}"
    );

    send(
        &mut ws,
        json!({"event": "client-typing", "channel": "private-a", "data": {}}),
    )
    .await;
    let refused = next_not_ping(&mut ws).await;
    assert_eq!(refused["data"]["code"], 4301, "{refused}");
    assert_eq!(refused["channel"], "private-a");

    ws.send(Message::Text("not json".into())).await.unwrap();
    let refused = next_not_ping(&mut ws).await;
    assert_eq!(refused["event"], "pusher:error");
    assert_eq!(refused["data"]["code"], Value::Null);
    // Still serving.
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(
        next_not_ping(&mut ws).await,
        json!({"event": "pusher:pong", "data": "{}"})
    );
}

#[tokio::test]
async fn an_idle_client_is_pinged_and_closed_with_4201_when_it_does_not_answer() {
    // A second per heartbeat, not less: the answering client's pong must get a turn within two
    // of them on a busy machine, or it is closed too.
    let server = Server::with(&config("[subscribers]\nheartbeat_ms = 1000\n")).await;
    // A client that answers every ping stays past several heartbeats.
    let (mut alive, _) = connect(&server).await;
    assert_eq!(
        subscribe(&mut alive, "c", None).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let (mut silent, _) = connect(&server).await;
    let started = tokio::time::Instant::now();
    let mut pings = 0;
    while pings < 3 {
        let v = next(&mut alive).await;
        assert_eq!(v["event"], "pusher:ping", "{v}");
        send(&mut alive, json!({"event": "pusher:pong", "data": {}})).await;
        pings += 1;
    }
    // The silent one was pinged, then closed with 4201 after two heartbeats without a word.
    let (code, before) = close_code(&mut silent).await;
    assert_eq!(code, 4201);
    assert!(
        before.iter().any(|v| v["event"] == "pusher:ping"),
        "{before:?}"
    );
    // Two heartbeats (2 s) and change: far below the test's patience, so a close that only came
    // from elsewhere (the test's own timeout) would not pass.
    assert!(started.elapsed() < Duration::from_secs(8));
    publish(&server, "c", "still", json!("here")).await;
    assert_eq!(next_not_ping(&mut alive).await["event"], "still");
}

#[tokio::test]
async fn an_event_is_not_sent_to_the_socket_it_excludes() {
    let server = Server::with(&config("")).await;
    let (mut a, a_id) = connect(&server).await;
    let (mut b, _) = connect(&server).await;
    for ws in [&mut a, &mut b] {
        assert_eq!(
            subscribe(ws, "ward", None).await["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    let ch = ChannelName::parse("ward").unwrap();
    let mut draft = EventDraft::new(
        Arc::from("moved"),
        serde_json::value::RawValue::from_string("\"by a\"".into()).unwrap(),
        None,
    );
    draft.exclude_socket = Some(Arc::from(a_id.as_str()));
    server
        .state
        .engine
        .publish_all(&[ch], &draft, None)
        .await
        .unwrap();
    publish(&server, "ward", "after", json!("all")).await;
    assert_eq!(next_not_ping(&mut b).await["event"], "moved");
    assert_eq!(next_not_ping(&mut b).await["event"], "after");
    assert_eq!(
        next_not_ping(&mut a).await["event"],
        "after",
        "the excluded socket's first event is the next one"
    );
}

#[tokio::test]
async fn a_draining_server_tells_pusher_sockets_to_reconnect_with_4200() {
    let mut server = Server::with(&config("[server]\ndrain_window_ms = 100\n")).await;
    let (mut ws, _) = connect(&server).await;
    let _stopped = server.shutdown();
    let (code, _) = close_code(&mut ws).await;
    assert_eq!(code, 4200);
}

#[tokio::test]
async fn the_exclusion_holds_for_a_socket_on_another_node_through_redis() {
    let redis = crate::support::redis::Redis::start().await;
    let engine = format!("[engine]\nurl = \"{}\"\n", redis.url());
    let publisher = Server::with(&config(&engine)).await;
    let subscriber = Server::with(&config(&engine)).await;
    let (mut a, a_id) = connect(&subscriber).await;
    let (mut b, _) = connect(&subscriber).await;
    for ws in [&mut a, &mut b] {
        let ok = subscribe(ws, "ward", None).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    }
    let ch = ChannelName::parse("ward").unwrap();
    let mut draft = EventDraft::new(
        Arc::from("moved"),
        serde_json::value::RawValue::from_string("\"by a\"".into()).unwrap(),
        None,
    );
    draft.exclude_socket = Some(Arc::from(a_id.as_str()));
    let engine = &publisher.state.engine;
    engine.publish_all(&[ch], &draft, None).await.unwrap();
    publish(&publisher, "ward", "after", json!("all")).await;
    assert_eq!(next_not_ping(&mut b).await["event"], "moved");
    assert_eq!(next_not_ping(&mut b).await["event"], "after");
    assert_eq!(next_not_ping(&mut a).await["event"], "after");
}

/// `POST /v1/vendor/auth` with `app_key` signs for the app on /app/{key}, for the channels of
/// the page's understudy token only.
async fn app_auth(server: &Server, form: &[(&str, &str)], token: Option<&str>) -> (u16, Value) {
    let mut req = server
        .http
        .post(format!("{}/v1/vendor/auth", server.base))
        .form(form);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn vendor_auth_signs_for_an_app_within_the_token_s_channels() {
    let server = Server::with(&config("")).await;
    let (mut ws, socket_id) = connect(&server).await;
    let token = crate::support::token(&["private-clinic-42.*"], 600, crate::support::SECRET);
    let ask = |channel: &'static str, key: &'static str| {
        let socket_id = socket_id.clone();
        let token = token.clone();
        let server = &server;
        async move {
            let form = [
                ("app_key", key),
                ("socket_id", socket_id.as_str()),
                ("channel_name", channel),
            ];
            app_auth(server, &form, Some(&token)).await
        }
    };
    let (status, v) = ask("private-clinic-42.room", APP_KEY).await;
    assert_eq!(status, 200, "{v}");
    let auth = v["auth"].as_str().unwrap();
    assert_eq!(auth, sign(&socket_id, "private-clinic-42.room"));
    let ok = subscribe(&mut ws, "private-clinic-42.room", Some(auth)).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );

    let (status, v) = ask("private-clinic-43.room", APP_KEY).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("channel_forbidden")),
        "{v}"
    );
    let (status, v) = ask("private-clinic-42.room", "no-such-key").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("unknown_app")),
        "{v}"
    );
    let (status, v) = ask("clinic-42.room", APP_KEY).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("not_private_channel")),
        "{v}"
    );
    let form = [
        ("app_key", APP_KEY),
        ("socket_id", socket_id.as_str()),
        ("channel_name", "private-clinic-42.room"),
    ];
    let (status, v) = app_auth(&server, &form, None).await;
    assert_eq!(status, 401, "{v}");
    assert!(!v.to_string().contains(APP_SECRET));
}

#[tokio::test]
async fn a_stuck_pusher_socket_is_cut_off_and_a_reading_one_gets_everything() {
    let server = Server::with(&config(
        "[subscribers]\nbuffer_events = 4\nwrite_timeout_ms = 300\n[history]\nmax_events = 5000\n",
    ))
    .await;
    let (mut stuck, _) = connect(&server).await;
    let (mut healthy, _) = connect(&server).await;
    for ws in [&mut stuck, &mut healthy] {
        let ok = subscribe(ws, "big", None).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    }
    assert_eq!(server.state.engine.registry().subscriber_count_of("big"), 2);
    // Far more than the socket buffers hold, while `stuck` reads nothing.
    let pad = "x".repeat(4096);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 300 {
            let v = next_not_ping(&mut healthy).await;
            got.push(
                v["data"]
                    .as_str()
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        (got, healthy)
    });
    for n in 1..=300 {
        publish(&server, "big", "n", json!(format!("{n}:{pad}"))).await;
    }
    let (got, mut healthy) = reader.await.unwrap();
    let want: Vec<String> = (1..=300).map(|n| n.to_string()).collect();
    assert_eq!(got, want, "the reading socket got every event in order");
    // The reading socket is still open, so the one subscriber left is it.
    crate::support::eventually("the stuck socket to be cut off", || {
        server.state.engine.registry().subscriber_count_of("big") == 1
    })
    .await;
    publish(&server, "big", "n", json!("301:")).await;
    assert_eq!(next_not_ping(&mut healthy).await["data"], "301:");
}
