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
    s.admin_call(method, path, token, body).await
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
async fn an_unwritable_audit_disk_never_fails_publishing_or_admin_calls() {
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
    // Every write fails at once (ENOTDIR), so the fault costs no time to wait on: what is checked
    // is that every call still succeeds and the failures are counted. (A latency bound here could
    // only measure the scheduler.)
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
        assert_eq!(s.publish_seq("a", n + 1).await, n + 1);
    }
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

#[tokio::test]
async fn a_maintenance_window_begins_and_ends_by_itself_and_is_announced() {
    let s = Server::with(&config()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let put = |body: Value| {
        admin(
            &s,
            reqwest::Method::PUT,
            "/admin/maintenance",
            Some(ADMIN),
            Some(body),
        )
    };
    let (status, v) = put(json!({"start": now + 400, "end": now + 1400, "mode": "self", "reason": "vendor maintenance"})).await;
    assert_eq!(status, 201, "{v}");
    let id = v["window"]["id"].as_u64().unwrap();
    assert_eq!(v["window"]["mode"], "self");

    // Refusals, each with its reason.
    for (body, words) in [
        (
            json!({"start": now + 5000, "end": now + 4000, "mode": "self", "reason": "x"}),
            "after start",
        ),
        (
            json!({"start": now + 1000, "end": now + 2000, "mode": "self", "reason": "x"}),
            "overlaps",
        ),
        (
            json!({"start": now + 10_000, "end": now + 10_000 + 90_000_000, "mode": "self", "reason": "x"}),
            "maximum",
        ),
        (
            json!({"start": "tomorrow", "end": now + 20_000, "mode": "self", "reason": "x"}),
            "RFC 3339",
        ),
    ] {
        let (status, v) = put(body).await;
        assert_eq!(status, 422, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(words),
            "{v}"
        );
    }
    // RFC 3339 is accepted, and a later window can be cancelled before it starts.
    let (status, v) = put(json!({"start": "2099-01-01T02:00:00Z", "end": "2099-01-01T03:00:00Z", "mode": "poll", "reason": "later"})).await;
    assert_eq!(status, 201, "{v}");
    let later = v["window"]["id"].as_u64().unwrap();
    let (_, route) = s.get("/v1/route").await;
    assert_eq!(route["maintenance"].as_array().unwrap().len(), 2, "{route}");
    assert_eq!(route["maintenance"][0]["route"], "self");
    let (status, _) = admin(
        &s,
        reqwest::Method::DELETE,
        &format!("/admin/maintenance/{later}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let mut route = s.state.failover.watch_route();
    let started = tokio::time::timeout(PATIENCE, route.wait_for(|r| r.mode.as_str() == "self"))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(started.path.as_str(), "self");
    tokio::time::timeout(PATIENCE, route.wait_for(|r| r.mode.as_str() == "auto"))
        .await
        .unwrap()
        .unwrap();
    eventually("the ended window to leave the list", || {
        s.state.maintenance.schedule.lock().list().is_empty()
    })
    .await;
    s.state.audit.flush().await.unwrap();
    let actions: Vec<String> = s
        .state
        .audit
        .tail(50)
        .await
        .unwrap()
        .iter()
        .map(|e| e.action.as_str().to_string())
        .collect();
    for a in [
        "maintenance_scheduled",
        "maintenance_cancelled",
        "maintenance_started",
        "maintenance_ended",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
    let _ = id;
}
