//! The clinic demo's backend routes: check-in publishes on the clinic's channel, the list and its
//! position, the demo token, the list surviving a restart, and no demo at all when it is off.

use serde_json::{json, Value};

use crate::support::*;

const DEMO: &str = "[demo]\nenabled = true\n";
const CHANNEL: &str = "clinic-42.waiting-room";

async fn check_in(s: &Server, ticket: &str) -> (u16, Value) {
    s.post("/demo/api/check-in", json!({ "ticket": ticket }))
        .await
}

#[tokio::test]
async fn a_check_in_is_published_on_the_clinic_channel() {
    let s = Server::with(DEMO).await;
    let (status, ack) = check_in(&s, " a-17 ").await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["ticket"], "A-17");
    assert_eq!(ack["seq"], 1);

    let token = token(&[CHANNEL], 60, SECRET);
    let (status, polled) = s
        .get(&format!(
            "/v1/channels/{CHANNEL}/events?since=0&token={token}"
        ))
        .await;
    assert_eq!(status, 200, "{polled}");
    let ev = &polled["events"][0];
    assert_eq!(ev["name"], "patient.checked_in");
    assert_eq!(ev["data"]["ticket"], "A-17");
    assert_eq!(ev["epoch"], ack["epoch"]);
    assert_eq!(ev["id"], ack["id"]);

    let (status, again) = check_in(&s, "A-17").await;
    assert_eq!(
        (status, again["already_checked_in"].clone()),
        (200, json!(true))
    );
    let (_, polled) = s
        .get(&format!(
            "/v1/channels/{CHANNEL}/events?since=0&token={token}"
        ))
        .await;
    assert_eq!(
        polled["events"].as_array().unwrap().len(),
        1,
        "nothing published twice"
    );
}

#[tokio::test]
async fn names_and_bad_bodies_are_refused() {
    let s = Server::with(DEMO).await;
    for bad in [
        json!({"ticket": "Jane Doe"}),
        json!({"ticket": ""}),
        json!({"name": "A-1"}),
    ] {
        let (status, body) = s.post("/demo/api/check-in", bad.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (422, json!("invalid_field")),
            "{bad}"
        );
    }
    let r = s
        .http
        .post(format!("{}/demo/api/check-in", s.base))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (_, list) = s.get("/demo/api/waiting-room").await;
    assert_eq!(list["tickets"], json!([]));
}

#[tokio::test]
async fn the_list_is_oldest_first_with_the_position_it_is_current_at() {
    let s = Server::with(DEMO).await;
    let (_, list) = s.get("/demo/api/waiting-room").await;
    assert_eq!(list["tickets"], json!([]));
    assert_eq!(list["position"]["seq"], 0);
    for t in ["A-1", "B-2", "C-3"] {
        assert_eq!(check_in(&s, t).await.0, 200);
    }
    let (status, list) = s.get("/demo/api/waiting-room").await;
    assert_eq!(status, 200);
    assert_eq!(list["channel"], CHANNEL);
    let tickets: Vec<&str> = list["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ticket"].as_str().unwrap())
        .collect();
    assert_eq!(tickets, ["A-1", "B-2", "C-3"]);
    assert!(list["tickets"][0]["checked_in_at"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(list["position"]["seq"], 3);
    let (_, ack) = check_in(&s, "D-4").await;
    assert_eq!(list["position"]["epoch"], ack["epoch"]);
}

#[tokio::test]
async fn the_token_subscribes_to_the_clinic_and_nothing_else() {
    let s = Server::with(DEMO).await;
    let (status, body) = s.get("/demo/api/token").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["channels"], json!(["clinic-42.*"]));
    assert_eq!(body["poll_interval_ms"], 2000);
    let token = body["token"].as_str().unwrap();
    let (status, _) = s
        .get(&format!("/v1/channels/{CHANNEL}/events?token={token}"))
        .await;
    assert_eq!(status, 200);
    let (status, refused) = s
        .get(&format!("/v1/channels/lobby/events?token={token}"))
        .await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (403, json!("channel_forbidden"))
    );

    let open = Server::with("[demo]\nenabled = true\n[auth]\nsubscribe = \"none\"\n").await;
    let (status, body) = open.get("/demo/api/token").await;
    assert_eq!((status, body["token"].clone()), (200, Value::Null));
}

#[tokio::test]
async fn the_list_survives_a_restart_through_its_state_file() {
    let dir = std::env::temp_dir().join(format!("understudy-demo-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("waiting-room.json");
    let toml = format!("{DEMO}state_file = {:?}\n", file.display().to_string());
    let mut first = Server::with(&toml).await;
    assert_eq!(check_in(&first, "A-17").await.0, 200);
    let (_, before) = first.get("/demo/api/waiting-room").await;
    first.shutdown().await.unwrap().unwrap();

    let second = Server::with(&toml).await;
    let (_, after) = second.get("/demo/api/waiting-room").await;
    assert_eq!(after["tickets"], before["tickets"]);
    assert_ne!(
        after["position"]["epoch"], before["position"]["epoch"],
        "a new epoch"
    );
    assert_eq!(
        check_in(&second, "A-17").await.1["already_checked_in"],
        true
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn pages_are_served_and_nothing_is_when_the_demo_is_off() {
    let s = Server::with(DEMO).await;
    for (path, kind) in [
        ("/demo", "text/html"),
        ("/demo/kiosk", "text/html"),
        ("/demo/waiting-room", "text/html"),
        ("/demo/ops", "text/html"),
        ("/demo/assets/demo.css", "text/css"),
        ("/demo/assets/waiting-room.js", "text/javascript"),
    ] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
    }
    let (status, _) = s.get("/demo/assets/../../Cargo.toml").await;
    assert_eq!(status, 404);

    let off = Server::with("").await;
    for path in [
        "/demo",
        "/demo/kiosk",
        "/demo/api/waiting-room",
        "/demo/api/token",
    ] {
        let (status, body) = off.get(path).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (404, json!("not_found")),
            "{path}"
        );
    }
    let (status, _) = check_in(&off, "A-1").await;
    assert_eq!(status, 404);
}

#[test]
fn the_demo_config_file_is_valid() {
    let file = include_str!("../../config/demo.toml");
    let config =
        understudy::Config::load(Some(file), &|_| None).expect("config/demo.toml is valid");
    assert!(config.demo.enabled);
}
