//! The on-call dashboard: the page loads without a token, the live feed needs one, sends a
//! snapshot every second and at once on a mode change, and says goodbye when the node leaves.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::*;

const ADMIN: &str = "test-admin-token-0123456789";

fn config() -> String {
    format!("[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"alice\", token = \"{ADMIN}\" }}]\n")
}

/// The dashboard's feed as the page reads it: `event:` and `data:` blocks.
struct Feed {
    body: reqwest::Response,
    buf: String,
}

/// One message of the feed.
struct Message {
    event: String,
    data: Value,
}

impl Feed {
    async fn open(s: &Server) -> Self {
        Self::open_at(&s.http, &s.admin).await
    }

    /// The feed of the node whose admin listener is at `admin`.
    async fn open_at(http: &reqwest::Client, admin: &str) -> Self {
        let body = http
            .get(format!("{admin}/admin/stream"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(body.status(), 200);
        assert_eq!(body.headers()["content-type"], "text/event-stream");
        Self {
            body,
            buf: String::new(),
        }
    }

    /// The next message, or `None` when the feed ended.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event: ") {
                        event = e.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                let data = serde_json::from_str(&data).expect("data is JSON");
                return Some(Message { event, data });
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.chunk())
                .await
                .expect("a message within the test's patience")
                .expect("the feed reads");
            self.buf.push_str(std::str::from_utf8(&chunk?).unwrap());
        }
    }

    /// The next snapshot.
    async fn snapshot(&mut self) -> Value {
        let m = self.next().await.expect("the feed is open");
        assert_eq!(m.event, "snapshot", "{}", m.data);
        m.data
    }

    /// Snapshots until one satisfies `f`.
    async fn until(&mut self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.snapshot().await;
            if f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot with {what}: last {v}"
            );
        }
    }
}

#[tokio::test]
async fn the_page_loads_without_a_token_and_fetches_nothing_from_elsewhere() {
    let s = Server::with(&config()).await;
    // `/admin` redirects to the page (reqwest follows it).
    for path in ["/admin/", "/admin"] {
        let r = s
            .http
            .get(format!("{}{path}", s.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.url().path(), "/admin/");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        let page = r.text().await.unwrap();
        assert!(page.contains("/admin/dashboard.js") && page.contains("id=\"mode-confirm\""));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no other origin"
        );
    }
    for (path, kind) in [
        ("/admin/dashboard.js", "text/javascript; charset=utf-8"),
        ("/admin/dashboard.css", "text/css; charset=utf-8"),
    ] {
        let r = s
            .http
            .get(format!("{}{path}", s.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], kind);
        // The SVG namespace is a name, not an address.
        let text = r
            .text()
            .await
            .unwrap()
            .replace("http://www.w3.org/2000/svg", "");
        assert!(
            !text.contains("https://") && !text.contains("http://"),
            "{path} refers to another origin"
        );
    }
    // Not on the public listener.
    let (status, _) = s.get("/admin/").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_feed_needs_an_admin_token() {
    let s = Server::with(&config()).await;
    for token in [None, Some("wrong-token-0123456789")] {
        let mut req = s.http.get(format!("{}/admin/stream", s.admin));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    // Only the Authorization header counts: a token in the URL is not accepted.
    let r = s
        .http
        .get(format!("{}/admin/stream?token={ADMIN}", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_feed_sends_a_snapshot_every_second_and_at_once_on_a_mode_change() {
    let s = Server::with(&config()).await;
    let mut feed = Feed::open(&s).await;
    let first = feed.snapshot().await;
    assert_eq!(first["viewer"], "alice");
    assert_eq!(first["status"]["route"]["route"], "self");
    assert_eq!(first["status"]["mode"]["mode"], "auto");
    // The first message carries the 15-minute series; later ones only when a point is added.
    assert_eq!(first["series"]["step_ms"], 5000, "{first}");
    for key in [
        "published_per_s",
        "delivered_per_s",
        "connections",
        "resets",
    ] {
        assert!(first["now"].get(key).is_some(), "now.{key} in {first}");
    }

    // Every second.
    let t0 = Instant::now();
    feed.snapshot().await;
    feed.snapshot().await;
    let two = t0.elapsed();
    assert!(
        two < Duration::from_millis(3500),
        "two snapshots took {two:?}"
    );

    // A mode change is sent at once, with who made it.
    let put = s
        .http
        .put(format!("{}/admin/mode", s.admin))
        .bearer_auth(ADMIN)
        .json(&json!({"mode": "poll", "reason": "dashboard test", "expires_in": "10m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let changed = feed
        .until("the forced mode", |v| {
            v["status"]["route"]["route"] == "poll"
        })
        .await;
    assert_eq!(changed["status"]["mode"]["set_by"], "alice");
    assert_eq!(changed["status"]["mode"]["reason"], "dashboard test");
    assert!(changed["status"]["mode"]["expires_at"].as_u64().is_some());
}

/// The figures are process-wide, so the node runs as its own process: traffic from the other
/// tests in this binary cannot make the check pass.
#[tokio::test]
async fn a_fresh_nodes_feed_shows_its_own_traffic_as_rates_and_connections() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_understudy"));
    cmd.arg("serve")
        .env_clear()
        .env("UNDERSTUDY_LISTEN", "127.0.0.1:0")
        .env("UNDERSTUDY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("UNDERSTUDY_SUBSCRIBE_AUTH", "none")
        .env("UNDERSTUDY_PUBLISHER_KEYS", KEY)
        .env("UNDERSTUDY_ADMIN_TOKEN", ADMIN)
        .env(
            "UNDERSTUDY_AUDIT_DIR",
            scratch_dir("dashboard").join("audit"),
        )
        .env("UNDERSTUDY_LOG", "warn");
    let (mut node, base, admin) = tokio::task::spawn_blocking(move || spawn_serving_both(cmd))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut feed = Feed::open_at(&http, &admin).await;
    let idle = feed.snapshot().await;
    assert_eq!(idle["now"]["connections"]["ws"], 0, "{idle}");
    assert_eq!(idle["now"]["published_per_s"], 0.0, "{idle}");

    let mut ws = ws_connect(&format!(
        "{}/v1/ws?channel=dash",
        base.replace("http://", "ws://")
    ))
    .await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    // Steady traffic, 20 events a second: a connection's delivery tally reaches the totals on its
    // first delivery after each one-second tick, so a burst followed by silence would not show.
    let publisher = {
        let (http, url) = (http.clone(), format!("{base}/v1/publish"));
        tokio::spawn(async move {
            for n in 0..400 {
                let r = http
                    .post(&url)
                    .bearer_auth(KEY)
                    .json(&json!({"channel": "dash", "name": "n", "data": n}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let busy = feed
        .until("traffic", |v| {
            v["now"]["published_per_s"].as_f64() > Some(0.0)
                && v["now"]["delivered_per_s"]["ws"].as_f64() > Some(0.0)
        })
        .await;
    publisher.abort();
    assert_eq!(busy["now"]["connections"]["ws"], 1, "{busy}");
    assert_eq!(busy["status"]["channels"], 1, "{busy}");
    node.kill().unwrap();
    node.wait().unwrap();
}

#[tokio::test]
async fn the_feed_shows_the_node_leaving_and_says_goodbye() {
    let mut s = Server::with(&config()).await;
    let mut feed = Feed::open(&s).await;
    feed.snapshot().await;
    let run = s.shutdown();
    let leaving = feed
        .until("draining", |v| v["status"]["draining"] == true)
        .await;
    assert_eq!(leaving["status"]["route"]["route"], "self");
    // No client is connected, so the drain is over at once and the feed ends.
    let mut events = Vec::new();
    while let Some(m) = feed.next().await {
        events.push(m.event);
    }
    assert_eq!(
        events.last().map(String::as_str),
        Some("goodbye"),
        "{events:?}"
    );
    tokio::time::timeout(PATIENCE, run)
        .await
        .expect("the node exits")
        .unwrap()
        .unwrap();
}
