//! The Ably adapter against a real Ably-compatible server (sockudo's `ably-compat`), over TLS.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use understudy::upstream::http::HttpClient;
use understudy::upstream::realtime::RealtimeConfig;
use understudy::upstream::{
    self, ErrorClass, OutboundEvent, Party, Priority, Vendor, VendorConfig,
};

use crate::support::ably_client::AblyClient;
use crate::support::sockudo::Sockudo;

pub(crate) fn ably(url: &str) -> Arc<dyn Vendor> {
    let http = HttpClient::new(&crate::support::tls::http_config()).expect("http client");
    let config = VendorConfig::from_url(url).expect("vendor url");
    upstream::build(&config, &http, &RealtimeConfig::default()).expect("adapter")
}

fn event(channel: &str, id: &str) -> OutboundEvent {
    let frame = format!(
        r#"{{"type":"event","channel":"{channel}","seq":3,"epoch":"e1","id":"{id}","name":"cart.updated","data":{{"v":42}},"ts":1}}"#
    );
    OutboundEvent::new(
        channel,
        "cart.updated",
        id,
        Bytes::from(frame),
        Priority::Realtime,
    )
}

#[tokio::test]
async fn a_published_event_arrives_on_an_attached_channel_with_its_id() {
    let sockudo = Sockudo::start().await;
    let vendor = ably(&sockudo.ably_url());
    let key = format!("{}:{}", sockudo.key, sockudo.secret);
    // Ably keeps understudy's channel name as it is, `:` included.
    let mut client = AblyClient::attach(sockudo.port, &key, "shop:cart-7").await;
    let sent = event("shop:cart-7", "evt-7f3c");
    vendor
        .publish(std::slice::from_ref(&sent))
        .await
        .expect("publish");

    let messages = client
        .next_messages(Duration::from_secs(5))
        .await
        .expect("the message arrives");
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["id"], "evt-7f3c", "the event id is the Ably message id");
    assert_eq!(m["name"], "cart.updated");
    assert_eq!(
        m["data"].as_str(),
        Some(std::str::from_utf8(&sent.frame).unwrap())
    );
}

#[tokio::test]
async fn a_retry_with_the_same_id_is_delivered_once() {
    let sockudo = Sockudo::start().await;
    let vendor = ably(&sockudo.ably_url());
    let key = format!("{}:{}", sockudo.key, sockudo.secret);
    let mut client = AblyClient::attach(sockudo.port, &key, "room").await;
    let sent = event("room", "same-id");
    vendor
        .publish(std::slice::from_ref(&sent))
        .await
        .expect("first");
    vendor
        .publish(std::slice::from_ref(&sent))
        .await
        .expect("retry");
    vendor
        .publish(&[event("room", "next-id")])
        .await
        .expect("next");
    let mut ids = Vec::new();
    while let Some(messages) = client.next_messages(crate::support::PATIENCE).await {
        ids.extend(
            messages
                .iter()
                .map(|m| m["id"].as_str().unwrap_or_default().to_owned()),
        );
        if ids.last().map(String::as_str) == Some("next-id") {
            break;
        }
    }
    assert_eq!(ids, ["same-id", "next-id"]);
}

#[tokio::test]
async fn a_wrong_secret_is_a_configuration_error_with_its_ably_code() {
    let sockudo = Sockudo::start().await;
    let url = sockudo
        .ably_url()
        .replace(&format!(":{}@", sockudo.secret), ":not-the-secret@");
    let error = ably(&url)
        .publish(&[event("room", "x")])
        .await
        .expect_err("refused");
    assert_eq!(error.class(), ErrorClass::Config, "{error}");
    assert_eq!(error.party(), Party::Client);
    assert!(!error.retry_allowed());
    assert!(
        matches!(
            error,
            upstream::VendorError::Rejected {
                status: 401,
                code: Some(40101),
                ..
            }
        ),
        "{error:?}"
    );
}
