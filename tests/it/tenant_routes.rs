//! Routes and modes per tenant, through the HTTP server against two real vendors (sockudo):
//! tenant `clinic-a` has its own vendor credentials, `clinic-b` shares `[vendors]`. Each tenant's
//! route names its own vendor; forcing `clinic-a` to poll moves only `clinic-a`'s route and
//! connections, is audited with the tenant, and expires back to the node-wide mode.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::sockudo::Sockudo;
use crate::support::*;

const ADMIN: &str = "test-admin-token-0123456789";
const KEY_A: &str = "clinic-a-publisher-key-0123";
const KEY_B: &str = "clinic-b-publisher-key-0123";

fn config(own: &Sockudo, shared: &Sockudo) -> String {
    format!(
        "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"alice\", token = \"{ADMIN}\" }}]\n\
         [vendors]\nurls = [\"{}\"]\n{}\
         [[tenants]]\nid = \"clinic-a\"\nchannels = [\"a.*\"]\nvendors = [\"{}\"]\n\
         publisher_keys = [\"{KEY_A}\"]\n\
         [[tenants]]\nid = \"clinic-b\"\nchannels = [\"b.*\"]\npublisher_keys = [\"{KEY_B}\"]\n",
        shared.pusher_url(),
        crate::support::tls::ca_file_toml(),
        own.pusher_url(),
    )
}

async fn route_of(s: &Server, query: &str) -> Value {
    let (status, v) = s.get(&format!("/v1/route{query}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The next `route` message on `ws`, skipping everything else.
async fn next_route(ws: &mut Ws) -> Value {
    loop {
        let m = ws_next_any(ws).await;
        if m["type"] == "route" {
            return m;
        }
    }
}

/// Publishes one event on `channel` and answers the messages `ws` gets up to it.
async fn up_to_event(s: &Server, ws: &mut Ws, channel: &str) -> Vec<Value> {
    // Each tenant publishes with its own key: the node's key is the default tenant's.
    let key = if channel.starts_with("a.") {
        KEY_A
    } else {
        KEY_B
    };
    let (status, _, v) = crate::tenants::publish_as(s, key, channel).await;
    assert_eq!(status, 202, "{v}");
    let seq = v["seq"].as_u64().unwrap();
    let mut seen = Vec::new();
    loop {
        let m = ws_next_any(ws).await;
        let done = m["type"] == "event" && m["seq"] == seq;
        seen.push(m);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_has_its_route_and_a_forced_tenant_moves_alone_until_its_mode_expires() {
    let own = Sockudo::start().await;
    let shared = Sockudo::start().await;
    let s = Server::with(&config(&own, &shared)).await;
    eventually("both tenants on their vendor", || {
        ["clinic-a", "clinic-b"].iter().all(|t| {
            let route = s
                .state
                .failover
                .route_for(&understudy::tenant::TenantId::new(t));
            route.path.as_str() == "vendor"
        })
    })
    .await;

    // Each tenant's route names its own vendor; by channel or by tenant.
    let a = route_of(&s, "?channel=a.room").await;
    assert_eq!(
        (a["tenant"].as_str(), a["route"].as_str()),
        (Some("clinic-a"), Some("vendor"))
    );
    assert_eq!(a["vendor"]["key"], own.key.as_str());
    assert_eq!(
        route_of(&s, "?tenant=clinic-a").await["vendor"],
        a["vendor"]
    );
    let b = route_of(&s, "?channel=b.room").await;
    assert_eq!(
        (b["tenant"].as_str(), b["vendor"]["key"].as_str()),
        (Some("clinic-b"), Some(shared.key.as_str()))
    );
    let default = route_of(&s, "").await;
    assert_eq!(
        (
            default["tenant"].as_str(),
            default["vendor"]["key"].as_str()
        ),
        (Some("default"), Some(shared.key.as_str()))
    );
    let (status, v) = s.get("/v1/route?tenant=clinic-z").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("unknown_tenant")),
        "{v}"
    );
    let (status, v) = s.get("/v1/route?tenant=clinic-a&channel=b.room").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{v}"
    );

    let mut ws_a = ws_connect(&s.ws_url("?channel=a.room")).await;
    let mut ws_b = ws_connect(&s.ws_url("?channel=b.room")).await;
    let first_a = next_route(&mut ws_a).await;
    assert_eq!(
        (
            first_a["tenant"].as_str(),
            first_a["vendor"]["key"].as_str()
        ),
        (Some("clinic-a"), Some(own.key.as_str()))
    );
    assert_eq!(next_route(&mut ws_b).await["tenant"], "clinic-b");
    up_to_event(&s, &mut ws_b, "b.room").await;

    let (status, v) = s
        .admin_call(
            reqwest::Method::PUT,
            "/admin/mode",
            Some(ADMIN),
            Some(json!({"tenant": "clinic-a", "mode": "poll", "reason": "clinic a proxy", "expires_in": 3})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["tenant"].as_str(), v["route"]["route"].as_str()),
        (Some("clinic-a"), Some("poll"))
    );
    assert_eq!(
        (v["mode"]["mode"].as_str(), v["mode"]["set_by"].as_str()),
        (Some("poll"), Some("alice"))
    );

    let pushed = next_route(&mut ws_a).await;
    assert_eq!(
        (pushed["route"].as_str(), pushed["mode"].as_str()),
        (Some("poll"), Some("poll"))
    );
    assert_eq!(route_of(&s, "?channel=a.room").await["route"], "poll");
    assert_eq!(
        route_of(&s, "?channel=b.room").await,
        b,
        "b's route is untouched"
    );
    assert_eq!(
        route_of(&s, "").await,
        default,
        "the node-wide route is untouched"
    );
    let seen = up_to_event(&s, &mut ws_b, "b.room").await;
    assert!(
        seen.iter().all(|m| m["type"] != "route"),
        "b's connection is not told: {seen:?}"
    );

    let (status, v) = s
        .admin_call(reqwest::Method::GET, "/admin/status", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    let tenants = v["tenants"]["tenants"].as_array().unwrap();
    let ids: Vec<&str> = tenants.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["default", "clinic-a", "clinic-b"]);
    assert_eq!(
        (
            tenants[1]["route"]["route"].as_str(),
            tenants[1]["mode"]["mode"].as_str()
        ),
        (Some("poll"), Some("poll"))
    );
    assert_eq!(tenants[1]["mode"]["reason"], "clinic a proxy");
    assert_eq!(tenants[1]["vendors"][0]["state"], "healthy");
    assert_eq!(
        (tenants[2]["vendors"].as_str(), tenants[2]["mode"].is_null()),
        (Some("shared"), true)
    );

    s.state.audit.flush().await.unwrap();
    let (_, v) = s
        .admin_call(
            reqwest::Method::GET,
            "/admin/audit?limit=10",
            Some(ADMIN),
            None,
        )
        .await;
    let changed = (v["entries"].as_array().unwrap().iter())
        .find(|e| e["action"] == "mode_changed")
        .expect("the tenant's mode change");
    assert_eq!(
        (
            changed["details"]["tenant"].as_str(),
            changed["details"]["from"].as_str(),
            changed["details"]["to"].as_str()
        ),
        (Some("clinic-a"), Some("auto"), Some("poll"))
    );
    assert_eq!(
        (changed["actor"].as_str(), changed["reason"].as_str()),
        (Some("alice"), Some("clinic a proxy"))
    );

    // Three seconds on, the mode expires: clinic-a follows the node-wide mode again.
    let back = tokio::time::timeout(Duration::from_secs(10), next_route(&mut ws_a))
        .await
        .expect("expiry pushes the route");
    assert_eq!(
        (back["route"].as_str(), back["vendor"]["key"].as_str()),
        (Some("vendor"), Some(own.key.as_str()))
    );
    assert_eq!(route_of(&s, "?channel=a.room").await["route"], "vendor");
    assert_eq!(route_of(&s, "?channel=b.room").await, b);
    // The audit feed records the expiry as it sees the status change; wait for it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let expired = loop {
        s.state.audit.flush().await.unwrap();
        let (_, v) = s
            .admin_call(
                reqwest::Method::GET,
                "/admin/audit?limit=10",
                Some(ADMIN),
                None,
            )
            .await;
        let found = (v["entries"].as_array().unwrap().iter())
            .find(|e| e["action"] == "mode_expired")
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tenant's mode expiry is audited: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (
            expired["details"]["tenant"].as_str(),
            expired["details"]["from"].as_str(),
            expired["details"]["to"].as_str()
        ),
        (Some("clinic-a"), Some("poll"), Some("inherit"))
    );
}

#[tokio::test]
async fn a_tenant_mode_names_a_known_tenant_and_inherit_needs_one() {
    let s = Server::with(&format!(
        "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"alice\", token = \"{ADMIN}\" }}]\n[[tenants]]\nid = \"clinic-a\"\nchannels = [\"a.*\"]\n"
    ))
    .await;
    let put =
        |body: Value| s.admin_call(reqwest::Method::PUT, "/admin/mode", Some(ADMIN), Some(body));
    let (status, v) =
        put(json!({"tenant": "clinic-z", "mode": "poll", "reason": "x", "expires_in": 60})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("unknown_tenant")),
        "{v}"
    );
    let (status, v) = put(json!({"mode": "inherit", "reason": "x"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{v}"
    );
    let (status, v) =
        put(json!({"tenant": "clinic-a", "mode": "self", "reason": "x", "expires_in": 60})).await;
    assert_eq!(
        (status, v["route"]["route"].as_str()),
        (200, Some("self")),
        "{v}"
    );
    let (status, v) =
        put(json!({"tenant": "clinic-a", "mode": "poll", "reason": "x", "expires_in": 60})).await;
    assert_eq!(
        (status, v["route"]["route"].as_str()),
        (200, Some("poll")),
        "{v}"
    );
    assert_eq!(s.get("/v1/route?channel=a.room").await.1["route"], "poll");
    assert_eq!(s.get("/v1/route").await.1["route"], "self");
    let (status, v) = put(json!({"tenant": "clinic-a", "mode": "inherit", "reason": "over"})).await;
    assert_eq!(
        (status, v["route"]["route"].as_str(), v["mode"].is_null()),
        (200, Some("self"), true),
        "{v}"
    );
}
