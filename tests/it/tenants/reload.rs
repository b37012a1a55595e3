//! Tenant quotas changed by a reload apply at once, and the publish bucket carries over.

use serde_json::json;

use super::quotas::usage;
use super::*;

async fn reload(s: &Server, toml: &str) {
    std::fs::write(s.config_file.as_ref().unwrap(), toml).unwrap();
    let (status, v) = s
        .admin_call(reqwest::Method::POST, "/admin/reload", Some(ADMIN), None)
        .await;
    assert_eq!((status, &v["changed"]), (200, &json!(["tenants"])), "{v}");
}

#[tokio::test]
async fn a_reload_changes_quotas_live_and_keeps_the_bucket() {
    let start = config(
        "publish_per_second = 1\npublish_burst = 1\nmax_channels = 1",
        "",
    );
    let s = Server::from_file(&start).await;
    assert_eq!(publish_as(&s, KEY_A, "clinic-a.1").await.0, 202);
    assert_eq!(publish_as(&s, KEY_A, "clinic-a.1").await.0, 429);
    // Another setting changes: the bucket is the same, still empty.
    let wider = config(
        "publish_per_second = 1\npublish_burst = 1\nmax_channels = 3",
        "",
    );
    reload(&s, &wider).await;
    let (status, retry, body) = publish_as(&s, KEY_A, "clinic-a.2").await;
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "{body}");
    assert_eq!(body["error"]["code"], "tenant_rate_limited");
    // No rate at all now, and three channels: both apply to the next publish.
    let free = config("max_channels = 3", "");
    reload(&s, &free).await;
    for channel in ["clinic-a.2", "clinic-a.3", "clinic-a.3"] {
        assert_eq!(publish_as(&s, KEY_A, channel).await.0, 202, "{channel}");
    }
    let (status, _, body) = publish_as(&s, KEY_A, "clinic-a.4").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("tenant_channels_exceeded"))
    );
    let a = usage(&s, "clinic-a").await;
    assert_eq!(
        a["quotas"],
        json!({"publish_per_second": null, "publish_burst": null, "max_connections": null,
               "max_channels": 3, "history_max_bytes": null})
    );
    assert_eq!(a["usage"]["channels"], 3);
    assert_eq!(a["publisher_keys"], 1);
    let listed = s
        .admin_call(reqwest::Method::GET, "/admin/tenants", Some(ADMIN), None)
        .await
        .1
        .to_string();
    assert!(
        !listed.contains(KEY_A) && !listed.contains(APP_A.2),
        "no secrets: {listed}"
    );
    // Without the admin token: refused like every admin route.
    let (status, _) = s
        .admin_call(reqwest::Method::GET, "/admin/tenants", None, None)
        .await;
    assert_eq!(status, 401);
}
