//! The admin API: authenticated by named tokens, status, and operator modes that change the route
//! every client sees.

use serde_json::{json, Value};

use crate::support::*;

const ADMIN: &str = "test-admin-token-0123456789";

async fn admin(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = s.http.request(method, format!("{}{path}", s.admin));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn config() -> String {
    format!("[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"alice\", token = \"{ADMIN}\" }}]\n")
}

#[tokio::test]
async fn admin_calls_need_a_known_token() {
    let s = Server::with(&config()).await;
    for token in [None, Some("wrong-token-0123456789")] {
        let (status, v) = admin(&s, reqwest::Method::GET, "/admin/status", token, None).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );
    }
    let (status, v) = admin(&s, reqwest::Method::GET, "/admin/status", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["route"]["route"], "self");
    assert_eq!(v["route"]["reason"], "no vendor configured");
    assert_eq!(v["mode"]["mode"], "auto");
    // The admin API is not on the public listener.
    let (status, _) = s.get("/admin/status").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_forced_mode_changes_the_route_for_every_client_and_records_who() {
    let s = Server::with(&config()).await;
    let (_, route) = s.get("/v1/route").await;
    assert_eq!(
        (route["route"].as_str(), route["vendor"].clone()),
        (Some("self"), Value::Null)
    );

    let mut ws = ws_connect(&s.ws_url("?channel=a")).await;
    let mut sse = Sse::open(&s, "?channel=a", None).await;
    sse.expect("subscribed").await;
    // The WebSocket announces the route right after welcome.
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(ws_next_any(&mut ws).await);
    }
    assert_eq!(first[1]["type"], "route", "{first:?}");

    let (status, v) = admin(
        &s,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(ADMIN),
        Some(json!({"mode": "poll", "reason": "kiosk proxy kills websockets", "expires_in": "2h"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["route"]["route"], "poll");
    assert_eq!(v["mode"]["set_by"], "alice");

    let pushed = loop {
        let m = ws_next_any(&mut ws).await;
        if m["type"] == "route" {
            break m;
        }
    };
    assert_eq!(
        (pushed["route"].as_str(), pushed["mode"].as_str()),
        (Some("poll"), Some("poll"))
    );
    assert_eq!(sse.expect("route").await["route"], "poll");
    let (_, route) = s.get("/v1/route").await;
    assert_eq!(route["route"], "poll");

    let (status, v) = admin(
        &s,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(ADMIN),
        Some(json!({"mode": "self", "reason": "x"})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_field"))
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expires_in"));

    let (status, v) = admin(
        &s,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(ADMIN),
        Some(json!({"mode": "auto", "reason": "incident over"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["route"]["route"], "self");
}

#[tokio::test]
async fn mode_changes_and_refused_calls_are_in_the_audit_trail() {
    let s = Server::with(&config()).await;
    let (status, _) = admin(
        &s,
        reqwest::Method::GET,
        "/admin/status",
        Some("not-a-token-at-all"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = admin(
        &s,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(ADMIN),
        Some(json!({"mode": "self", "reason": "vendor incident INC-7", "expires_in": 600})),
    )
    .await;
    assert_eq!(status, 200);
    s.state.audit.flush().await.unwrap();
    let (status, v) = admin(
        &s,
        reqwest::Method::GET,
        "/admin/audit?limit=10",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    let rejected = entries
        .iter()
        .find(|e| e["action"] == "admin_rejected")
        .expect("the refused call");
    assert_eq!(rejected["details"]["path"], "/admin/status");
    assert!(
        !rejected.to_string().contains("not-a-token-at-all"),
        "never the credential"
    );
    let changed = entries
        .iter()
        .find(|e| e["action"] == "mode_changed")
        .expect("the mode change");
    assert_eq!(
        (changed["actor"].as_str(), changed["reason"].as_str()),
        (Some("alice"), Some("vendor incident INC-7"))
    );
    assert_eq!(
        (
            changed["details"]["from"].as_str(),
            changed["details"]["to"].as_str()
        ),
        (Some("auto"), Some("self"))
    );
    let (status, v) = admin(
        &s,
        reqwest::Method::GET,
        "/admin/audit?limit=0",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
}

#[tokio::test]
async fn an_unwritable_audit_disk_never_slows_publishing_or_admin_calls() {
    // The audit directory sits under a regular file: every write fails.
    let blocker = scratch_dir("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let dir = blocker.join("audit");
    let s = Server::with(&format!(
        "{}[audit]\ndir = \"{}\"\n",
        config(),
        dir.display()
    ))
    .await;
    let mut latencies = Vec::new();
    for n in 0..300u64 {
        if n % 3 == 0 {
            // Each mode change writes an audit entry.
            let mode = if n % 2 == 0 { "self" } else { "auto" };
            let (status, _) = admin(
                &s,
                reqwest::Method::PUT,
                "/admin/mode",
                Some(ADMIN),
                Some(json!({"mode": mode, "reason": "churn", "expires_in": 60})),
            )
            .await;
            assert_eq!(status, 200);
        }
        let t = tokio::time::Instant::now();
        assert_eq!(s.publish_seq("a", n + 1).await, n + 1);
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(
        p99 < std::time::Duration::from_millis(50),
        "publish p99 {p99:?}"
    );
    eventually("the write errors to be counted", || {
        s.state.audit.stats().write_errors > 0
    })
    .await;
    let r = s
        .http
        .get(format!("{}/readyz", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the node stays healthy");
    std::fs::remove_file(blocker).ok();
}
