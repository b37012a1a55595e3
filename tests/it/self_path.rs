//! The route's "self path unavailable → poll": a node serving neither WebSocket nor SSE, at
//! start or after a reload, sends clients to polling.

use serde_json::Value;

use crate::support::*;

const ADMIN: &str = "self-path-admin-token-0123456789";

fn file(transports: &str) -> String {
    format!(
        "[auth]\nsubscribe = \"none\"\npublisher_keys = [\"{KEY}\"]\nadmin_tokens = [{{ name = \"oncall\", token = \"{ADMIN}\" }}]\n[subscribers]\ntransports = {transports}\n"
    )
}

async fn route_becomes(s: &Server, want: &str) -> Value {
    let mut last = Value::Null;
    eventually_within(PATIENCE, &format!("route {want}"), || {
        last = serde_json::to_value(s.state.failover.route().path.as_str()).unwrap();
        last == want
    })
    .await;
    let (_, route) = s.get("/v1/route").await;
    assert_eq!(route["route"], want, "{route}");
    route
}

#[tokio::test]
async fn no_websocket_and_no_sse_means_poll_from_start_and_after_a_reload() {
    let s = Server::from_file(&file(r#"["poll"]"#)).await;
    let route = route_becomes(&s, "poll").await;
    assert_eq!(route["reason"], "own broadcast unavailable", "{route}");

    std::fs::write(s.config_file.as_ref().unwrap(), file(r#"["sse", "poll"]"#)).unwrap();
    let (status, v) = s
        .admin_call(reqwest::Method::POST, "/admin/reload", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{v}");
    route_becomes(&s, "self").await;

    std::fs::write(s.config_file.as_ref().unwrap(), file(r#"["poll"]"#)).unwrap();
    let (status, v) = s
        .admin_call(reqwest::Method::POST, "/admin/reload", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{v}");
    route_becomes(&s, "poll").await;
}
