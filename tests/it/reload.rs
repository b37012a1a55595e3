//! Configuration reload against a running server: the file is rewritten and read again through
//! `POST /admin/reload` (or SIGHUP to the binary). Keys, limits and vendors change while open
//! connections stay and miss nothing; a bad file is refused whole and the running config stays.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use understudy::failover::Path;

use crate::support::pusher_client::PusherClient;
use crate::support::sockudo::Sockudo;
use crate::support::*;

const ADMIN: &str = "reload-admin-token-0123456789";

/// A config file: subscriber auth off, one publisher key, the test admin token, and `extra`.
fn file(key: &str, extra: &str) -> String {
    format!(
        "[auth]\nsubscribe = \"none\"\npublisher_keys = [\"{key}\"]\nadmin_tokens = [{{ name = \"oncall\", token = \"{ADMIN}\" }}]\n{extra}"
    )
}

async fn admin(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    s.admin_call(method, path, Some(ADMIN), body).await
}

/// Rewrites the server's config file and asks it to reload.
async fn reload(s: &Server, toml: &str) -> (u16, Value) {
    std::fs::write(s.config_file.as_ref().expect("a file server"), toml).unwrap();
    admin(s, reqwest::Method::POST, "/admin/reload", None).await
}

async fn publish_as(base: &str, key: &str, body: Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/v1/publish"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The newest audit entry with `action`, waiting for the writer.
async fn audited(s: &Server, action: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, v) = admin(s, reqwest::Method::GET, "/admin/audit?limit=50", None).await;
        let found = (v["entries"].as_array().into_iter().flatten())
            .rev()
            .find(|e| e["action"] == action)
            .cloned();
        if let Some(entry) = found {
            return entry;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {action} in the audit trail: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_publisher_keys_apply_at_once_and_an_open_subscriber_misses_nothing() {
    let s = Server::from_file(&file("key-one-0123456789", "")).await;
    let mut ws = ws_connect(&s.ws_url("?channel=room")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;

    // A backend publishes without pause, at least 200 events and until it has seen the reload:
    // when its key stops working it takes the new one and sends the same event again.
    let base = s.base.clone();
    let publisher = tokio::spawn(async move {
        let mut key = "key-one-0123456789";
        let mut refused = 0;
        let mut n = 0u64;
        while n < 200 || refused == 0 {
            n += 1;
            assert!(n < 100_000, "the reload never took effect");
            let body = json!({"channel": "room", "name": "n", "data": {"n": n}});
            loop {
                match publish_as(&base, key, body.clone()).await {
                    202 => break,
                    401 if key == "key-one-0123456789" => {
                        refused += 1;
                        key = "key-two-0123456789";
                    }
                    other => panic!("publish {n} answered {other}"),
                }
            }
        }
        (n, refused)
    });
    eventually("some events before the reload", || {
        s.state.engine.registry().stats().history_events >= 50
    })
    .await;
    let (status, v) = reload(&s, &file("key-two-0123456789", "")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changed"], json!(["auth"]));
    assert_eq!(v["restart_required"], json!([]));
    assert_eq!(v["vendors_rebuilt"], false);
    let (sent, refused) = publisher.await.unwrap();
    assert_eq!(refused, 1, "the old key was refused once, then never used");

    let mut got = Vec::new();
    while (got.len() as u64) < sent {
        let m = ws_next(&mut ws).await;
        assert_eq!(m["type"], "event", "{m}");
        got.push(m);
    }
    assert_eq!(seqs(&got), (1..=sent).collect::<Vec<_>>());
    let data: Vec<u64> = got
        .iter()
        .map(|m| m["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(data, (1..=sent).collect::<Vec<_>>(), "in order, none lost");

    let one = json!({"channel": "room", "name": "n", "data": {}});
    assert_eq!(
        publish_as(&s.base, "key-one-0123456789", one.clone()).await,
        401
    );
    assert_eq!(publish_as(&s.base, "key-two-0123456789", one).await, 202);
    let m = ws_next(&mut ws).await;
    assert_eq!(m["seq"], sent + 1, "the same connection, still live");

    let entry = audited(&s, "config_reloaded").await;
    assert_eq!(entry["actor"], "oncall");
    assert_eq!(entry["details"]["changed"], json!(["auth"]));
    assert!(
        !entry.to_string().contains("key-two-0123456789"),
        "no secret in the trail"
    );
}

#[tokio::test]
async fn an_invalid_file_is_refused_whole_with_every_problem_and_the_running_config_stays() {
    let s = Server::from_file(&file("key-one-0123456789", "")).await;
    let (_, before) = admin(&s, reqwest::Method::GET, "/admin/status", None).await;
    let bad = file(
        "key-two-0123456789",
        "[history]\nmax_events = 0\n[subscribers]\ntransports = [\"carrier-pigeon\"]\n",
    );
    let (status, v) = reload(&s, &bad).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "config_invalid");
    let errors: Vec<&str> = (v["error"]["errors"].as_array().unwrap().iter())
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("history.max_events")));
    assert!(errors.iter().any(|e| e.contains("carrier-pigeon")));

    let one = json!({"channel": "room", "name": "n", "data": {}});
    assert_eq!(
        publish_as(&s.base, "key-one-0123456789", one.clone()).await,
        202
    );
    assert_eq!(publish_as(&s.base, "key-two-0123456789", one).await, 401);
    let (_, after) = admin(&s, reqwest::Method::GET, "/admin/status", None).await;
    for field in ["route", "mode", "reason", "version"] {
        assert_eq!(after["route"][field], before["route"][field], "{field}");
    }
    assert_eq!(after["mode"], before["mode"]);
    assert_eq!(s.state.config.load().history.max_events, 1000);

    let entry = audited(&s, "config_rejected").await;
    assert_eq!(entry["actor"], "oncall");
    assert_eq!(entry["details"]["errors"].as_array().unwrap().len(), 2);

    // Fixed, it applies.
    let (status, v) = reload(&s, &file("key-two-0123456789", "")).await;
    assert_eq!((status, &v["changed"]), (200, &json!(["auth"])), "{v}");
}

#[tokio::test]
async fn new_limits_apply_to_new_work_and_start_up_settings_wait_for_a_restart() {
    let s = Server::from_file(&file(
        "key-0123456789abcdef",
        "[publish]\nmax_body_bytes = 1000\n[history]\nmax_events = 50\n",
    ))
    .await;
    let big = json!({"channel": "room", "name": "n", "data": {"pad": "x".repeat(2000)}});
    assert_eq!(
        publish_as(&s.base, "key-0123456789abcdef", big.clone()).await,
        413
    );
    for n in 0..20 {
        let small = json!({"channel": "room", "name": "n", "data": {"n": n}});
        assert_eq!(
            publish_as(&s.base, "key-0123456789abcdef", small).await,
            202
        );
    }

    let (status, v) = reload(
        &s,
        &file(
            "key-0123456789abcdef",
            "[publish]\nmax_body_bytes = 4096\n[history]\nmax_events = 5\n[server]\nlisten = \"127.0.0.1:21999\"\n",
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changed"], json!(["publish", "history"]));
    assert_eq!(v["restart_required"], json!(["server.listen"]));
    assert_eq!(
        publish_as(&s.base, "key-0123456789abcdef", big).await,
        202,
        "still on the old listener"
    );
    let (_, polled) = s.get("/v1/channels/room/events?since=0").await;
    let (_, again) = s
        .get(&format!(
            "/v1/channels/room/events?epoch={}&since=0",
            polled["epoch"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (&again["reset"], &again["reason"]),
        (&json!(true), &json!("history_exceeded")),
        "{again}"
    );
    eventually("history trimmed to the new count", || {
        s.state.engine.registry().stats().history_events == 5
    })
    .await;
    let running = s.state.config.load();
    assert_eq!(
        running.server.listen.to_string(),
        "127.0.0.1:8080",
        "the running config keeps what it started with"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_change_rebuilds_the_vendor_side_and_the_forced_mode_stays() {
    let first = Sockudo::start().await;
    let second = Sockudo::start().await;
    let vendor = |url: &str, recover_after: u32| {
        file(
            "key-0123456789abcdef",
            &format!(
                "[vendors]\nurls = [\"{url}\"]\n{}recover_after = {recover_after}\n",
                crate::support::tls::ca_file_toml()
            ),
        )
    };
    let s = Server::from_file(&vendor(&first.pusher_url(), 5)).await;
    eventually_within(PATIENCE, "route on the first vendor", || {
        s.state.failover.route().path == Path::Vendor(0)
    })
    .await;
    let (status, set) = admin(
        &s,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(json!({"mode": "self", "reason": "vendor migration", "expires_in": "1h"})),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    let (_, route_before) = s.get("/v1/route").await;
    assert_eq!(route_before["route"], "self");

    // Time passes between setting the mode and the reload, so an expiry counted again from the
    // reload would show as that much later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, v) = reload(&s, &vendor(&second.pusher_url(), 3)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changed"], json!(["vendors"]));
    assert_eq!(v["vendors_rebuilt"], true);

    let (_, status_after) = admin(&s, reqwest::Method::GET, "/admin/status", None).await;
    let (was, is) = (&set["mode"], &status_after["mode"]);
    for field in ["mode", "reason", "set_by"] {
        assert_eq!(is[field], was[field], "{field}");
    }
    // Expiry instants are shown in wall-clock milliseconds, computed at each answer from two
    // clocks read a scheduling delay apart: they may differ by that, never by the second above.
    let drift = is["expires_at"].as_i64().unwrap() - was["expires_at"].as_i64().unwrap();
    assert!(drift.abs() < 500, "the same expiry: {was} {is}");
    let (_, route_after) = s.get("/v1/route").await;
    assert_eq!(route_after["route"], "self");
    assert_eq!(
        route_after["version"], route_before["version"],
        "clients have nothing to switch"
    );

    // Back to auto: the route goes to the new vendor, and events reach its subscribers.
    let mut on_second =
        PusherClient::subscribe_signed(second.port, &second.key, &second.secret, "private-room")
            .await;
    let mut on_first =
        PusherClient::subscribe_signed(first.port, &first.key, &first.secret, "private-room").await;
    let (status, _) = admin(
        &s,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(json!({"mode": "auto", "reason": "migration done"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, route) = s.get("/v1/route").await;
    assert_eq!(route["route"], "vendor", "{route}");
    assert_eq!(route["vendor"]["key"].as_str(), Some(second.key.as_str()));
    let body = json!({"channel": "room", "name": "moved", "data": {"n": 1}});
    assert_eq!(publish_as(&s.base, "key-0123456789abcdef", body).await, 202);
    let got = on_second
        .next_event(PATIENCE)
        .await
        .expect("the event reaches the new vendor");
    assert!(got.data.as_str().unwrap().contains("\"moved\""), "{got:?}");
    assert!(
        on_first.next_event(Duration::from_secs(1)).await.is_none(),
        "nothing goes to the old vendor"
    );
}

#[tokio::test]
async fn sighup_makes_the_binary_read_its_file_again() {
    let dir = scratch_dir("sighup");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("understudy.toml");
    let listeners = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    std::fs::write(&config, file("key-one-0123456789", listeners)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_understudy"));
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env_clear()
        .env("UNDERSTUDY_AUDIT_DIR", dir.join("audit"))
        .env("UNDERSTUDY_LOG", "warn");
    let (mut child, base) = tokio::task::spawn_blocking(move || spawn_serving(cmd))
        .await
        .unwrap();

    let body = json!({"channel": "room", "name": "n", "data": {}});
    assert_eq!(
        publish_as(&base, "key-one-0123456789", body.clone()).await,
        202
    );
    std::fs::write(&config, file("key-two-0123456789", listeners)).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while publish_as(&base, "key-two-0123456789", body.clone()).await != 202 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(publish_as(&base, "key-one-0123456789", body).await, 401);
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP does not stop the server"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exited = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exited.success(), "{exited:?}");
    std::fs::remove_dir_all(dir).ok();
}
