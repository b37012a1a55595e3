//! Vendor faults against the real server over TLS: SIGSTOP (a hung vendor behind its TLS
//! terminator), kill (refused), and a fault-injecting proxy (behind a terminator of its own) for
//! 5xx bursts, slow answers and one-lane hangs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use understudy::failover::{Observation, RequestObservation};
use understudy::upstream::http::{HttpClient, HttpConfig};
use understudy::upstream::lanes::{DropReason, LaneConfig, Lanes, RetryBudget, RetryBudgetConfig};
use understudy::upstream::realtime::RealtimeConfig;
use understudy::upstream::{self, ErrorClass, OutboundEvent, Priority, Vendor, VendorConfig};

use crate::support::fault_proxy::{Fault, FaultProxy};
use crate::support::pusher_client::PusherClient;
use crate::support::sockudo::Sockudo;

const DEADLINE: Duration = Duration::from_secs(1);

fn vendor(url: &str) -> Arc<dyn Vendor> {
    let http = HttpClient::new(&HttpConfig {
        request_timeout: DEADLINE,
        ..crate::support::tls::http_config()
    })
    .expect("http client");
    upstream::build(
        &VendorConfig::from_url(url).expect("url"),
        &http,
        &RealtimeConfig::default(),
    )
    .expect("adapter")
}

/// The Pusher URL of `sockudo` with its REST side sent through `proxy` (both over TLS).
pub(crate) fn through(proxy: &FaultProxy, sockudo: &Sockudo) -> String {
    format!(
        "pusher://{}:{}@127.0.0.1:{}/{}?ws_port={}",
        sockudo.key, sockudo.secret, proxy.tls.port, sockudo.app_id, sockudo.tls.port
    )
}

fn lanes(
    vendor: Arc<dyn Vendor>,
    config: LaneConfig,
) -> (Lanes, mpsc::Receiver<Observation>, CancellationToken) {
    let (tx, rx) = mpsc::channel(4096);
    let cancel = CancellationToken::new();
    let budget = Arc::new(RetryBudget::new(RetryBudgetConfig::default()));
    let lanes = Lanes::start(
        0,
        vendor,
        config,
        budget,
        tx,
        &TaskTracker::new(),
        cancel.clone(),
    );
    (lanes, rx, cancel)
}

fn event(channel: &str, id: &str, priority: Priority) -> OutboundEvent {
    OutboundEvent::new(
        channel,
        "e",
        id,
        Bytes::from(format!(r#"{{"type":"event","id":"{id}"}}"#)),
        priority,
    )
}

async fn request(rx: &mut mpsc::Receiver<Observation>) -> RequestObservation {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(Observation::Request(r))) => r,
        other => panic!("expected a request observation, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stopped_vendor_times_out_on_the_deadline_and_the_lanes_keep_their_bounds() {
    let mut sockudo = Sockudo::start().await;
    let config = LaneConfig {
        realtime_queue: 16,
        bulk_queue: 16,
        realtime_in_flight: 4,
        bulk_in_flight: 1,
        request_timeout: DEADLINE,
        ..LaneConfig::default()
    };
    let (lanes, mut observations, cancel) = lanes(vendor(&sockudo.pusher_url()), config);
    sockudo.pause();

    let mut slowest = Duration::ZERO;
    for i in 0..300 {
        let priority = if i % 5 == 0 {
            Priority::Bulk
        } else {
            Priority::Realtime
        };
        let started = Instant::now();
        lanes.enqueue(event(&format!("c{i}"), &i.to_string(), priority));
        slowest = slowest.max(started.elapsed());
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Waiting on the frozen vendor would take the request deadline; the bound sits well below
    // it and far above a busy machine's scheduling delays.
    assert!(
        slowest < DEADLINE / 2,
        "enqueue took {slowest:?}: it waited on the vendor"
    );

    let first = request(&mut observations).await;
    assert_eq!(first.result, Err(ErrorClass::Timeout));
    // Without the deadline the request would wait on the frozen vendor until SIGCONT.
    assert!(
        first.latency >= DEADLINE && first.latency < DEADLINE * 2,
        "{:?}",
        first.latency
    );

    let stats = lanes.stats();
    assert!(
        stats.realtime.in_flight <= 4 && stats.bulk.in_flight <= 1,
        "{stats:?}"
    );
    assert!(
        stats.realtime.queued <= 16 && stats.bulk.queued <= 16,
        "{stats:?}"
    );
    assert_eq!(stats.realtime.enqueued + stats.bulk.enqueued, 300);
    let dropped = stats.realtime.dropped_total() + stats.bulk.dropped_total();
    // Everything enqueued is queued, dropped, or in one of the 5 in-flight batches (<= 10 each).
    assert!(dropped >= 300 - 2 * 16 - 5 * 10, "{stats:?}");
    assert_eq!(
        stats
            .realtime
            .dropped
            .get(&DropReason::QueueFull)
            .copied()
            .unwrap_or(0)
            + stats
                .bulk
                .dropped
                .get(&DropReason::QueueFull)
                .copied()
                .unwrap_or(0),
        dropped
    );

    // After SIGCONT the vendor delivers again.
    sockudo.resume();
    let mut client = PusherClient::subscribe_signed(
        sockudo.port,
        &sockudo.key,
        &sockudo.secret,
        "private-after",
    )
    .await;
    lanes.enqueue(event("after", "after-1", Priority::Realtime));
    let got = client
        .next_event(Duration::from_secs(10))
        .await
        .expect("delivered after SIGCONT");
    assert!(got.data.as_str().unwrap().contains("after-1"));
    cancel.cancel();
}

#[tokio::test]
async fn the_bulk_lane_keeps_delivering_while_the_realtime_lane_is_stuck() {
    let sockudo = Sockudo::start().await;
    let proxy = FaultProxy::start(sockudo.port).await;
    proxy.set(Fault::HangIfBodyContains("hang-"));
    let config = LaneConfig {
        realtime_in_flight: 2,
        bulk_in_flight: 1,
        request_timeout: DEADLINE,
        ..LaneConfig::default()
    };
    let (lanes, _observations, cancel) = lanes(vendor(&through(&proxy, &sockudo)), config);
    let mut client = PusherClient::subscribe_signed(
        sockudo.port,
        &sockudo.key,
        &sockudo.secret,
        "private-bulk-room",
    )
    .await;
    for i in 0..20 {
        lanes.enqueue(event(
            &format!("hang-{i}"),
            &format!("r{i}"),
            Priority::Realtime,
        ));
    }
    let started = Instant::now();
    for i in 0..5 {
        lanes.enqueue(event("bulk-room", &format!("b{i}"), Priority::Bulk));
    }
    for i in 0..5 {
        let got = client
            .next_event(Duration::from_secs(5))
            .await
            .expect("bulk events arrive");
        assert!(got.data.as_str().unwrap().contains(&format!("\"b{i}\"")));
    }
    assert!(
        started.elapsed() < DEADLINE,
        "bulk was not held up by the stuck realtime lane"
    );
    // Subscribers can see the events before the lane sees the vendor's answer.
    crate::support::eventually_within(
        Duration::from_secs(2),
        "the bulk deliveries to be counted",
        || lanes.stats().bulk.delivered == 5,
    )
    .await;
    assert_eq!(lanes.stats().realtime.in_flight, 2);
    cancel.cancel();
}

#[tokio::test]
async fn a_killed_vendor_is_refused_at_once() {
    let mut sockudo = Sockudo::start().await;
    let vendor = vendor(&sockudo.pusher_url());
    sockudo.kill();
    // Let the terminator's accept task see its abort and close the listener.
    tokio::task::yield_now().await;
    let started = Instant::now();
    let error = vendor
        .publish(&[event("room", "1", Priority::Realtime)])
        .await
        .expect_err("refused");
    assert_eq!(error.class(), ErrorClass::Connect, "{error}");
    assert!(error.retry_allowed() && !error.outcome_unknown());
    // Refused at once: not after the connect deadline, nor the request deadline.
    let took = started.elapsed();
    assert!(took < HttpConfig::default().connect_timeout, "{took:?}");
}

#[tokio::test]
async fn a_5xx_burst_is_retried_once_then_counted() {
    let sockudo = Sockudo::start().await;
    let proxy = FaultProxy::start(sockudo.port).await;
    proxy.set(Fault::Status(503, r#"{"error":"upstream unavailable"}"#));
    let config = LaneConfig {
        request_timeout: DEADLINE,
        ..LaneConfig::default()
    };
    let (lanes, mut observations, cancel) = lanes(vendor(&through(&proxy, &sockudo)), config);
    lanes.enqueue(event("room", "1", Priority::Realtime));
    let first = request(&mut observations).await;
    let second = request(&mut observations).await;
    assert_eq!(
        (first.attempt, first.result),
        (0, Err(ErrorClass::Unavailable))
    );
    assert_eq!(
        (second.attempt, second.result),
        (1, Err(ErrorClass::Unavailable))
    );
    crate::support::eventually_within(Duration::from_secs(2), "the failure to be counted", || {
        lanes.stats().realtime.failed == 1
    })
    .await;
    assert_eq!(proxy.requests(), 2, "one attempt and one retry, no more");

    proxy.set(Fault::Pass);
    let mut client =
        PusherClient::subscribe_signed(sockudo.port, &sockudo.key, &sockudo.secret, "private-room")
            .await;
    lanes.enqueue(event("room", "2", Priority::Realtime));
    assert!(client.next_event(Duration::from_secs(5)).await.is_some());
    cancel.cancel();
}

#[tokio::test]
async fn a_slow_answer_past_the_deadline_is_a_time_out() {
    let sockudo = Sockudo::start().await;
    let proxy = FaultProxy::start(sockudo.port).await;
    proxy.set(Fault::Slow(Duration::from_secs(3)));
    let vendor = vendor(&through(&proxy, &sockudo));
    let started = Instant::now();
    let error = vendor
        .publish(&[event("room", "1", Priority::Realtime)])
        .await
        .expect_err("too slow");
    let took = started.elapsed();
    assert_eq!(error.class(), ErrorClass::Timeout, "{error}");
    assert!(error.outcome_unknown());
    // Waiting for the answer would take the proxy's 3 s.
    assert!(took >= DEADLINE && took < DEADLINE * 2, "{took:?}");
}

#[tokio::test]
async fn a_connection_that_is_accepted_but_never_answered_times_out() {
    let sockudo = Sockudo::start().await;
    let proxy = FaultProxy::start(sockudo.port).await;
    proxy.set(Fault::Hang);
    let vendor = vendor(&through(&proxy, &sockudo));
    let started = Instant::now();
    let error = vendor
        .publish(&[event("room", "1", Priority::Realtime)])
        .await
        .expect_err("no answer");
    assert_eq!(error.class(), ErrorClass::Timeout, "{error}");
    // Without the deadline the call would never end.
    let took = started.elapsed();
    assert!(took >= DEADLINE && took < DEADLINE * 2, "{took:?}");
}
