//! Forwarding by the app's `forward` setting, against a real vendor (sockudo's Ably protocol over
//! TLS): an `as_published` app's messages reach the vendor under their own ids, a `none` app's
//! never do, and both are in understudy's history.

use serde_json::json;
use understudy::failover::Path;

use super::{apps_toml, basic, history, publish_json, APP_KEY, APP_SECRET};
use crate::support::ably_client::AblyClient;
use crate::support::sockudo::Sockudo;
use crate::support::*;

#[tokio::test]
async fn an_as_published_apps_messages_reach_the_vendor_and_a_none_apps_stay_home() {
    let sockudo = Sockudo::start().await;
    let toml = format!(
        "{}[vendors]\nurls = [\"{}\"]\n{}public_channels = true\n",
        apps_toml(),
        sockudo.ably_url(),
        crate::support::tls::ca_file_toml()
    );
    let s = Server::with(&toml).await;
    eventually_within(PATIENCE, "route to the vendor", || {
        s.state.failover.route().path == Path::Vendor(0)
    })
    .await;
    let vendor_key = format!("{}:{}", sockudo.key, sockudo.secret);
    let mut on_vendor = AblyClient::attach(sockudo.port, &vendor_key, "fwd-1").await;
    let clinic = basic(APP_KEY, APP_SECRET);
    let quiet = basic("quiet.app", "quietQuietQuiet_0123");
    // The vendor lane keeps order: had the quiet app's message been forwarded, it would arrive
    // before the clinic's.
    for n in 0..2 {
        let (status, v) = publish_json(
            &s,
            "fwd-1",
            &quiet,
            json!({"id": format!("q:{n}"), "name": "quiet", "data": "q"}),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        let (status, v) = publish_json(
            &s,
            "fwd-1",
            &clinic,
            json!({"id": format!("c:{n}"), "name": "clinic", "data": "c"}),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        let got = on_vendor
            .next_messages(PATIENCE)
            .await
            .expect("the clinic's message reaches the vendor");
        let ids: Vec<_> = got.iter().map(|m| m["id"].clone()).collect();
        assert_eq!(ids, [json!(format!("c:{n}"))], "{got:?}");
        assert_eq!(got[0]["name"], "clinic");
    }
    let names: Vec<_> = history(&s, "fwd-1")
        .await
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, ["quiet", "clinic", "quiet", "clinic"]);
}
