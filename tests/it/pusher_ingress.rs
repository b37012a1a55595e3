//! The Pusher HTTP API ingress (`POST /apps/{id}/events`, `/batch_events`) over real sockets:
//! signed requests publish ordinary understudy events that arrive on the WebSocket, SSE and
//! polling in order; every refusal is Pusher's status with the JSON error body and publishes
//! nothing; an app's events reach a real vendor (sockudo, over TLS) as published, or not at all
//! with `forward = "none"`.

use serde_json::{json, Value};
use understudy::core::{ChannelName, ReadFrom};
use understudy::failover::Path;
use understudy::upstream::pusher::signing::signed_query;
use understudy::upstream::Secret;

use crate::support::ably_client::AblyClient;
use crate::support::pusher_client::PusherClient;
use crate::support::sockudo::Sockudo;
use crate::support::*;

const APP_ID: &str = "4242";
const APP_KEY: &str = "orders-app-key";
const APP_SECRET: &str = "orders-app-secret-0123456789";

/// `[[apps]]` lines for the test app and a second one that forwards nothing.
fn apps() -> String {
    format!(
        "[[apps]]\nid = \"{APP_ID}\"\nkey = \"{APP_KEY}\"\nsecret = \"{APP_SECRET}\"\n\
         [[apps]]\nid = \"4343\"\nkey = \"quiet-app-key\"\nsecret = \"quiet-app-secret-0123456789\"\nforward = \"none\"\n"
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A Pusher HTTP API call signed as the SDKs sign it.
struct Signed<'a> {
    app_id: &'a str,
    key: &'a str,
    secret: &'a str,
    timestamp: u64,
}

impl Default for Signed<'_> {
    fn default() -> Self {
        Signed {
            app_id: APP_ID,
            key: APP_KEY,
            secret: APP_SECRET,
            timestamp: now(),
        }
    }
}

impl Signed<'_> {
    async fn post(&self, s: &Server, what: &str, body: &[u8]) -> (u16, Value) {
        let path = format!("/apps/{}/{what}", self.app_id);
        let query = signed_query(
            self.key,
            &Secret::new(self.secret),
            &path,
            body,
            self.timestamp,
        );
        raw_post(s, &format!("{path}?{query}"), body.to_vec()).await
    }
}

async fn raw_post(s: &Server, path_and_query: &str, body: Vec<u8>) -> (u16, Value) {
    let r = s
        .http
        .post(format!("{}{path_and_query}", s.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn trigger(s: &Server, body: Value) -> (u16, Value) {
    Signed::default()
        .post(s, "events", body.to_string().as_bytes())
        .await
}

async fn polled(s: &Server, channel: &str) -> Vec<Value> {
    let (status, v) = s
        .get(&format!("/v1/channels/{channel}/events?since=0"))
        .await;
    assert_eq!(status, 200, "{v}");
    v["events"].as_array().unwrap().clone()
}

fn names_and_data(events: &[Value]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["name"].as_str().unwrap().to_owned(),
                e["data"]
                    .as_str()
                    .expect("Pusher data stays a string")
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn signed_events_and_batches_arrive_on_ws_sse_and_poll_in_order() {
    let s = Server::with(&format!("[auth]\nsubscribe = \"none\"\n{}", apps())).await;
    let mut ws = ws_connect(&s.ws_url("?channel=orders-7")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    let mut sse = Sse::open(&s, "?channel=orders-7", None).await;
    sse.expect("subscribed").await;

    let (status, answer) = trigger(
        &s,
        json!({"name": "order.paid", "channels": ["orders-7", "orders-8"], "data": "{\"n\":1}"}),
    )
    .await;
    assert_eq!((status, answer), (200, json!({})));
    let batch = json!({"batch": [
        {"channel": "orders-7", "name": "order.shipped", "data": "{\"n\":2}", "info": "subscription_count"},
        {"channel": "orders-7", "name": "order.shipped", "data": "{\"n\":3}"},
        {"channel": "orders-8", "name": "order.shipped", "data": "plain text 4"},
        {"channel": "orders-7", "name": "order.closed", "data": "{\"n\":5}"},
    ]});
    let (status, answer) = Signed::default()
        .post(&s, "batch_events", batch.to_string().as_bytes())
        .await;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({"batch": [{"subscription_count": 2}, {}, {}, {}]})
        )
    );
    let (status, answer) = trigger(
        &s,
        json!({"name": "order.noted", "channel": "orders-7", "data": "6", "info": "subscription_count"}),
    )
    .await;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({"channels": {"orders-7": {"subscription_count": 2}}})
        )
    );

    let want: Vec<(u64, String, String)> = [
        (1, "order.paid", "{\"n\":1}"),
        (2, "order.shipped", "{\"n\":2}"),
        (3, "order.shipped", "{\"n\":3}"),
        (4, "order.closed", "{\"n\":5}"),
        (5, "order.noted", "6"),
    ]
    .iter()
    .map(|(q, n, d)| (*q, n.to_string(), d.to_string()))
    .collect();
    let mut via_ws = Vec::new();
    let mut via_sse = Vec::new();
    for _ in 0..want.len() {
        via_ws.push(ws_expect(&mut ws, "event").await);
        via_sse.push(sse.expect("event").await);
    }
    let via_poll = polled(&s, "orders-7").await;
    assert_eq!(names_and_data(&via_ws), want);
    assert_eq!(via_ws, via_sse);
    assert_eq!(via_ws, via_poll);
    // Two channels of one Pusher event share its id; each request is a new event.
    let other = polled(&s, "orders-8").await;
    assert_eq!(
        names_and_data(&other),
        [
            (1, "order.paid".into(), "{\"n\":1}".into()),
            (2, "order.shipped".into(), "plain text 4".into())
        ]
    );
    assert_eq!(other[0]["id"], via_ws[0]["id"]);
    assert_ne!(via_ws[1]["id"], via_ws[2]["id"]);
}

#[tokio::test]
async fn each_refusal_is_pusher_s_answer_publishes_nothing_and_the_server_still_serves() {
    let s = Server::with(&format!("[auth]\nsubscribe = \"none\"\n{}", apps())).await;
    let good = json!({"name": "e", "channel": "orders-7", "data": "x"}).to_string();
    let data = |n: usize| json!({"name": "e", "channel": "orders-7", "data": "x".repeat(n)});
    let items = |n: usize| {
        let one = json!({"name": "e", "channel": "orders-7", "data": "x"});
        json!({ "batch": vec![one; n] })
    };
    let mut cases: Vec<(&str, u16, &str, (u16, Value))> = vec![
        (
            "wrong secret",
            401,
            "invalid_signature",
            Signed {
                secret: "not-the-app-secret-0123456789",
                ..Signed::default()
            }
            .post(&s, "events", good.as_bytes())
            .await,
        ),
        (
            "old timestamp",
            401,
            "timestamp_expired",
            Signed {
                timestamp: now() - 700,
                ..Signed::default()
            }
            .post(&s, "events", good.as_bytes())
            .await,
        ),
        (
            "another app's key",
            401,
            "invalid_signature",
            Signed {
                key: "quiet-app-key",
                ..Signed::default()
            }
            .post(&s, "events", good.as_bytes())
            .await,
        ),
        (
            "unknown app",
            404,
            "unknown_app",
            Signed {
                app_id: "999",
                ..Signed::default()
            }
            .post(&s, "events", good.as_bytes())
            .await,
        ),
        (
            "unsigned",
            401,
            "invalid_signature",
            raw_post(&s, "/apps/4242/events", good.clone().into_bytes()).await,
        ),
        (
            "not JSON",
            400,
            "invalid_request",
            Signed::default().post(&s, "events", b"{\"name\":").await,
        ),
        (
            "data not a string",
            400,
            "invalid_request",
            trigger(&s, json!({"name": "e", "channel": "orders-7", "data": {"n": 1}})).await,
        ),
        (
            "a channel understudy cannot hold",
            400,
            "invalid_request",
            trigger(&s, json!({"name": "e", "channel": "orders;7", "data": "x"})).await,
        ),
        (
            "101 channels",
            400,
            "invalid_request",
            trigger(
                &s,
                json!({"name": "e", "channels": (0..101).map(|i| format!("c{i}")).collect::<Vec<_>>(), "data": "x"}),
            )
            .await,
        ),
        (
            "data over 10 KB",
            413,
            "data_too_large",
            trigger(&s, data(10 * 1024 + 1)).await,
        ),
        (
            "body over 256 KiB",
            413,
            "payload_too_large",
            Signed::default()
                .post(&s, "events", &vec![b' '; 256 * 1024 + 1])
                .await,
        ),
        (
            "batch of 11",
            400,
            "invalid_request",
            Signed::default()
                .post(&s, "batch_events", items(11).to_string().as_bytes())
                .await,
        ),
    ];
    // A bad item refuses its whole batch before anything is published.
    let mut bad_batch = items(3);
    bad_batch["batch"][1]["data"] = json!(5);
    cases.push((
        "a batch with one bad item",
        400,
        "invalid_request",
        Signed::default()
            .post(&s, "batch_events", bad_batch.to_string().as_bytes())
            .await,
    ));
    for (what, status, code, (got_status, body)) in &cases {
        assert_eq!(
            (got_status, body["error"]["code"].as_str()),
            (status, Some(*code)),
            "{what}: {body}"
        );
        let text = body.to_string();
        assert!(!text.contains(APP_SECRET), "{what}: {text}");
    }
    assert!(cases[12].3 .1["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("batch[1]: field data must be a string"));
    assert!(
        polled(&s, "orders-7").await.is_empty(),
        "a refusal published"
    );

    let (status, answer) = trigger(&s, data(10 * 1024)).await;
    assert_eq!((status, answer), (200, json!({})));
    assert_eq!(polled(&s, "orders-7").await.len(), 1);
}

#[tokio::test]
async fn socket_id_is_kept_on_the_event_as_the_socket_to_leave_out() {
    let s = Server::with(&format!("[auth]\nsubscribe = \"none\"\n{}", apps())).await;
    let (status, _) = trigger(
        &s,
        json!({"name": "e", "channel": "orders-7", "data": "x", "socket_id": "123.456"}),
    )
    .await;
    assert_eq!(status, 200);
    let read = s
        .state
        .engine
        .read(
            &ChannelName::parse("orders-7").unwrap(),
            &ReadFrom::Oldest,
            10,
            false,
        )
        .await
        .unwrap();
    assert_eq!(read.events[0].exclude_socket.as_deref(), Some("123.456"));
    // Not part of what understudy's own clients receive.
    assert!(!String::from_utf8_lossy(&read.events[0].frame).contains("123.456"));
}

async fn on_vendor(vendor_url: &str) -> Server {
    let s = Server::with(&format!(
        "[auth]\nsubscribe = \"none\"\n[vendors]\nurls = [\"{vendor_url}\"]\n{}{}",
        crate::support::tls::ca_file_toml(),
        apps()
    ))
    .await;
    eventually_within(PATIENCE, "route to the vendor", || {
        s.state.failover.route().path == Path::Vendor(0)
    })
    .await;
    s
}

#[tokio::test]
async fn pusher_receives_an_app_event_as_published_and_nothing_from_a_none_app() {
    let sockudo = Sockudo::start().await;
    let s = on_vendor(&sockudo.pusher_url()).await;
    let mut orders = PusherClient::subscribe(sockudo.port, &sockudo.key, "orders-7").await;

    // The app that forwards nothing publishes first; its event must never reach the vendor.
    let quiet = json!({"name": "quiet.event", "channel": "orders-7", "data": "secret-ish"});
    let (status, _) = Signed {
        app_id: "4343",
        key: "quiet-app-key",
        secret: "quiet-app-secret-0123456789",
        timestamp: now(),
    }
    .post(&s, "events", quiet.to_string().as_bytes())
    .await;
    assert_eq!(status, 200);
    let (status, _) = trigger(
        &s,
        json!({"name": "order.paid", "channel": "orders-7", "data": "{\"total\":12}"}),
    )
    .await;
    assert_eq!(status, 200);
    let batch =
        json!({"batch": [{"channel": "orders-7", "name": "order.shipped", "data": "plain"}]});
    let (status, _) = Signed::default()
        .post(&s, "batch_events", batch.to_string().as_bytes())
        .await;
    assert_eq!(status, 200);

    let mut got = Vec::new();
    for _ in 0..2 {
        let e = orders
            .next_event(PATIENCE)
            .await
            .expect("the event on sockudo");
        got.push((e.event, e.channel, e.data));
    }
    assert_eq!(
        got,
        [
            (
                "order.paid".into(),
                "orders-7".into(),
                json!("{\"total\":12}")
            ),
            ("order.shipped".into(), "orders-7".into(), json!("plain")),
        ]
    );
    // Both apps' events are understudy's all the same.
    assert_eq!(polled(&s, "orders-7").await.len(), 3);
}

#[tokio::test]
async fn ably_receives_an_app_event_as_published() {
    let sockudo = Sockudo::start().await;
    let s = on_vendor(&sockudo.ably_url()).await;
    let mut orders = AblyClient::attach(
        sockudo.port,
        &format!("{}:{}", sockudo.key, sockudo.secret),
        "orders-7",
    )
    .await;
    let (status, _) = trigger(
        &s,
        json!({"name": "order.paid", "channel": "orders-7", "data": "{\"total\":12}"}),
    )
    .await;
    assert_eq!(status, 200);
    let messages = orders
        .next_messages(PATIENCE)
        .await
        .expect("the message on sockudo");
    let id = polled(&s, "orders-7").await[0]["id"].clone();
    assert_eq!(
        (
            &messages[0]["name"],
            &messages[0]["data"],
            &messages[0]["id"]
        ),
        (&json!("order.paid"), &json!("{\"total\":12}"), &id),
        "{messages:?}"
    );
}
