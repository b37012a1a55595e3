//! The Pusher adapter against a real Pusher-compatible server (sockudo), over TLS.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use understudy::upstream::http::HttpClient;
use understudy::upstream::lanes::{LaneConfig, Lanes, RetryBudget, RetryBudgetConfig};
use understudy::upstream::realtime::RealtimeConfig;
use understudy::upstream::{
    self, ErrorClass, OutboundEvent, Party, Priority, Vendor, VendorConfig,
};

use crate::support::pusher_client::PusherClient;
use crate::support::sockudo::Sockudo;

pub(crate) fn pusher(url: &str) -> Arc<dyn Vendor> {
    let http = HttpClient::new(&crate::support::tls::http_config()).expect("http client");
    let config = VendorConfig::from_url(url).expect("vendor url");
    upstream::build(&config, &http, &RealtimeConfig::default()).expect("adapter")
}

fn event(channel: &str, seq: u64) -> OutboundEvent {
    let frame = format!(
        r#"{{"type":"event","channel":"{channel}","seq":{seq},"epoch":"k3v9q2m8x1ab","id":"chk-{seq}","name":"patient.checked_in","data":{{"ticket":"A-{seq}","note":"ünïcode \"quoted\""}},"ts":1763895123456}}"#
    );
    OutboundEvent::new(
        channel,
        "patient.checked_in",
        format!("chk-{seq}"),
        Bytes::from(frame),
        Priority::Realtime,
    )
}

#[tokio::test]
async fn a_published_event_arrives_on_a_websocket_subscription_intact() {
    let sockudo = Sockudo::start().await;
    let vendor = pusher(&sockudo.pusher_url());
    // understudy's `:` becomes `;` on Pusher, on a private channel.
    let mut client = PusherClient::subscribe_signed(
        sockudo.port,
        &sockudo.key,
        &sockudo.secret,
        "private-clinic-42;waiting-room",
    )
    .await;
    let sent = event("clinic-42:waiting-room", 17);
    vendor
        .publish(std::slice::from_ref(&sent))
        .await
        .expect("publish");

    let got = client
        .next_event(Duration::from_secs(5))
        .await
        .expect("the event arrives");
    assert_eq!(got.event, "understudy.event");
    assert_eq!(got.channel, "private-clinic-42;waiting-room");
    assert_eq!(
        got.data.as_str(),
        Some(std::str::from_utf8(&sent.frame).unwrap()),
        "data is the event JSON, byte for byte"
    );
}

#[tokio::test]
async fn batches_through_the_lanes_arrive_complete_and_in_order() {
    let sockudo = Sockudo::start().await;
    let vendor = pusher(&sockudo.pusher_url());
    let mut client =
        PusherClient::subscribe_signed(sockudo.port, &sockudo.key, &sockudo.secret, "private-room")
            .await;
    let (tx, mut observations) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let lanes = Lanes::start(
        0,
        vendor,
        LaneConfig::default(),
        Arc::new(RetryBudget::new(RetryBudgetConfig::default())),
        tx,
        &TaskTracker::new(),
        cancel.clone(),
    );
    for seq in 1..=25 {
        lanes.enqueue(event("room", seq));
    }
    let mut seqs = Vec::new();
    while seqs.len() < 25 {
        let got = client
            .next_event(Duration::from_secs(5))
            .await
            .expect("every event arrives");
        let inner: serde_json::Value = serde_json::from_str(got.data.as_str().unwrap()).unwrap();
        seqs.push(inner["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (1..=25).collect::<Vec<_>>());
    // Subscribers can see the events before the lane sees the vendor's answer.
    crate::support::eventually_within(
        Duration::from_secs(5),
        "the lane to count 25 deliveries",
        || lanes.stats().realtime.delivered == 25,
    )
    .await;
    // One channel: batches of up to 10 go out one after another (10, 10, 5 or smaller).
    let mut events = 0;
    while let Ok(o) = observations.try_recv() {
        let understudy::failover::Observation::Request(r) = o else {
            panic!("{o:?}")
        };
        assert!(r.result.is_ok() && r.events <= 10, "{r:?}");
        events += r.events;
    }
    assert_eq!(events, 25);
    cancel.cancel();
}

#[tokio::test]
async fn a_wrong_secret_is_a_configuration_error() {
    let sockudo = Sockudo::start().await;
    let url = sockudo
        .pusher_url()
        .replace(&format!(":{}@", sockudo.secret), ":not-the-secret@");
    let error = pusher(&url)
        .publish(&[event("room", 1)])
        .await
        .expect_err("refused");
    assert_eq!(error.class(), ErrorClass::Config, "{error}");
    assert_eq!(error.party(), Party::Client);
    assert!(!error.retry_allowed());
}

#[tokio::test]
async fn an_oversized_event_is_refused_before_sending_and_by_the_vendor() {
    let sockudo = Sockudo::start().await;
    let vendor = pusher(&sockudo.pusher_url());
    let big = OutboundEvent::new(
        "room",
        "n",
        "big",
        Bytes::from(format!("\"{}\"", "x".repeat(11 * 1024))),
        Priority::Bulk,
    );
    assert_eq!(
        vendor.check(&big).map_err(|e| e.class()),
        Err(ErrorClass::Request)
    );
    let error = vendor.publish(&[big]).await.expect_err("413");
    assert_eq!(error.class(), ErrorClass::Request, "{error}");
}

#[tokio::test]
async fn throttling_is_classified_as_rate_limited() {
    let sockudo = Sockudo::start_with(&[
        ("RATE_LIMITER_ENABLED", "true"),
        ("RATE_LIMITER_API_MAX_REQUESTS", "2"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
    ])
    .await;
    let vendor = pusher(&sockudo.pusher_url());
    let mut classes = Vec::new();
    for seq in 0..4 {
        classes.push(
            vendor
                .publish(&[event("room", seq)])
                .await
                .err()
                .map(|e| e.class()),
        );
    }
    assert!(
        classes.contains(&Some(ErrorClass::RateLimited)),
        "{classes:?}\n{}",
        sockudo.log()
    );
}
