//! `vendors.signal_only` against a real vendor (sockudo): a matching channel's events reach the
//! vendor as `{type, channel, epoch, seq, id}` only, never the publisher's name or data, while
//! the body stays in understudy's history; other channels still get the full event. Pusher and
//! Ably.

use serde_json::{json, Value};
use understudy::failover::Path;

use crate::support::ably_client::AblyClient;
use crate::support::pusher_client::PusherClient;
use crate::support::sockudo::Sockudo;
use crate::support::*;

/// Something no vendor may ever see for a signal-only channel.
const PATIENT: &str = "Jane Roe, bed 4";

fn config(vendor_url: &str) -> String {
    format!(
        "[vendors]\nurls = [\"{vendor_url}\"]\n{}public_channels = true\nsignal_only = [\"clinic-*\"]\n",
        crate::support::tls::ca_file_toml()
    )
}

async fn on_vendor(vendor_url: &str) -> Server {
    let s = Server::with(&config(vendor_url)).await;
    eventually_within(PATIENCE, "route to the vendor", || {
        s.state.failover.route().path == Path::Vendor(0)
    })
    .await;
    s
}

/// Publishes the patient's check-in on `channel`; answers (epoch, seq, id).
async fn check_in(s: &Server, channel: &str) -> (String, u64, String) {
    let (status, v) = s
        .publish(
            json!({"channel": channel, "name": "patient.checked_in", "data": {"who": PATIENT}}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    (
        v["epoch"].as_str().unwrap().to_owned(),
        v["seq"].as_u64().unwrap(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

/// The body is still served by understudy's own history, to a subscriber token for the channel.
async fn assert_body_at_home(s: &Server, channel: &str, epoch: &str, seq: u64) {
    let token = token(&[channel], 3600, SECRET);
    let (status, v) = s
        .get(&format!(
            "/v1/channels/{channel}/events?epoch={epoch}&since={}&token={token}",
            seq - 1
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["events"][0]["seq"].as_u64(), Some(seq), "{v}");
    assert_eq!(v["events"][0]["name"], "patient.checked_in", "{v}");
    assert_eq!(v["events"][0]["data"]["who"], PATIENT, "{v}");
}

#[tokio::test]
async fn pusher_gets_only_the_signal_for_a_signal_only_channel() {
    let sockudo = Sockudo::start().await;
    let s = on_vendor(&sockudo.pusher_url()).await;
    let mut clinic = PusherClient::subscribe(sockudo.port, &sockudo.key, "clinic-42").await;
    let mut lobby = PusherClient::subscribe(sockudo.port, &sockudo.key, "lobby").await;

    let (epoch, seq, id) = check_in(&s, "clinic-42").await;
    let got = clinic
        .next_event(PATIENCE)
        .await
        .expect("the signal arrives");
    assert_eq!(got.event, "understudy.event");
    let data = got.data.as_str().expect("data is a string");
    assert!(
        !data.contains(PATIENT) && !data.contains("checked_in"),
        "{data}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap(),
        json!({"type": "signal", "channel": "clinic-42", "epoch": epoch, "seq": seq, "id": id})
    );
    assert_body_at_home(&s, "clinic-42", &epoch, seq).await;

    // Any other channel still carries the whole event on the vendor.
    let (_, lobby_seq, _) = check_in(&s, "lobby").await;
    let got = lobby.next_event(PATIENCE).await.expect("the event arrives");
    let frame: Value = serde_json::from_str(got.data.as_str().unwrap()).unwrap();
    assert_eq!(
        (
            &frame["type"],
            &frame["seq"],
            &frame["name"],
            &frame["data"]["who"]
        ),
        (
            &json!("event"),
            &json!(lobby_seq),
            &json!("patient.checked_in"),
            &json!(PATIENT)
        ),
        "{frame}"
    );
}

#[tokio::test]
async fn ably_gets_only_the_signal_for_a_signal_only_channel() {
    let sockudo = Sockudo::start().await;
    let s = on_vendor(&sockudo.ably_url()).await;
    let key = format!("{}:{}", sockudo.key, sockudo.secret);
    let mut clinic = AblyClient::attach(sockudo.port, &key, "clinic-42").await;
    let mut lobby = AblyClient::attach(sockudo.port, &key, "lobby").await;

    let (epoch, seq, id) = check_in(&s, "clinic-42").await;
    let messages = clinic.next_messages(PATIENCE).await.expect("the signal");
    let m = &messages[0];
    assert_eq!(
        (&m["name"], &m["id"]),
        (&json!("understudy.signal"), &json!(id))
    );
    let data = m["data"].as_str().expect("data is a string");
    assert!(!m.to_string().contains(PATIENT), "{m}");
    assert!(!m.to_string().contains("checked_in"), "{m}");
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap(),
        json!({"type": "signal", "channel": "clinic-42", "epoch": epoch, "seq": seq, "id": id})
    );
    assert_body_at_home(&s, "clinic-42", &epoch, seq).await;

    check_in(&s, "lobby").await;
    let messages = lobby.next_messages(PATIENCE).await.expect("the event");
    assert_eq!(messages[0]["name"], "patient.checked_in");
    assert!(messages[0]["data"].as_str().unwrap().contains(PATIENT));
}
