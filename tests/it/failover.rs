//! Issue acceptance, end to end through the HTTP server against a real vendor (sockudo): the vendor
//! hangs (SIGSTOP) mid-stream under 100 publishes/s. Publishing stays fast, the route leaves the
//! vendor within the detection bound, understudy's own subscribers get every event exactly once in
//! order, and after SIGCONT the route returns only after the recovery hysteresis, with jitter.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;
use understudy::failover::Path;

use crate::support::pusher_client::PusherClient;
use crate::support::sockudo::Sockudo;
use crate::support::*;

const RATE: u64 = 100;
const EVENTS: u64 = 700;
const STOP_AT: u64 = 150;
const CONT_AT: u64 = 550;

fn config(vendor_url: &str) -> String {
    format!(
        "[auth]\nsubscribe = \"none\"\n[vendors]\nurls = [\"{vendor_url}\"]\n{}min_dwell_ms = 2000\nrecover_after = 3\nmove_back_jitter_ms = 3000\n",
        crate::support::tls::ca_file_toml()
    )
}

async fn wait_for_path(s: &Server, want: Path, within: Duration) -> Instant {
    eventually_within(within, &format!("route {want:?}"), || {
        s.state.failover.route().path == want
    })
    .await;
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_vendor_mid_stream_costs_no_event_and_no_publish_latency() {
    let mut vendor = Sockudo::start().await;
    let s = Server::with(&config(&vendor.pusher_url())).await;
    wait_for_path(&s, Path::Vendor(0), PATIENCE).await;
    let failover = s.state.config.load().vendors.failover.clone();
    let canary = failover
        .canary
        .clone()
        .expect("the canary is on by default");
    // A hang is caught by the first canary round that starts after it: within one interval plus
    // the canary's deadline (docs/vendors.md), plus the driver's turn to act on it.
    let detection = canary.interval + canary.deadline + Duration::from_millis(500);

    let mut on_vendor =
        PusherClient::subscribe_signed(vendor.port, &vendor.key, &vendor.secret, "private-room")
            .await;
    let mut ws = ws_connect(&s.ws_url("?channel=room")).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    let own = tokio::spawn(async move {
        let mut seqs = Vec::new();
        let mut routes = Vec::new();
        while (seqs.len() as u64) < EVENTS {
            let m = ws_next_any(&mut ws).await;
            match m["type"].as_str() {
                Some("event") => seqs.push(m["seq"].as_u64().unwrap()),
                Some("route") => routes.push(m),
                _ => {}
            }
        }
        (seqs, routes)
    });

    // 100 publishes/s on absolute deadlines; the vendor is stopped and resumed on the way.
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(EVENTS as usize);
    let (mut stopped_at, mut resumed_at) = (None, None);
    for n in 1..=EVENTS {
        tokio::time::sleep_until(start + Duration::from_millis(n * 1000 / RATE)).await;
        if n == STOP_AT {
            vendor.pause();
            stopped_at = Some(understudy::core::event::now_ms());
        }
        if n == CONT_AT {
            vendor.resume();
            resumed_at = Some(Instant::now());
        }
        let t = Instant::now();
        let (status, v) = s
            .publish(json!({"channel": "room", "name": "tick", "data": {"n": n}}))
            .await;
        latencies.push(t.elapsed());
        assert_eq!((status, v["seq"].as_u64()), (202, Some(n)));
        if n == CONT_AT - 1 {
            assert_ne!(
                s.state.failover.route().path,
                Path::Vendor(0),
                "the route left the hung vendor"
            );
        }
    }
    let (stopped_at, resumed_at) = (stopped_at.unwrap(), resumed_at.unwrap());

    // Publishing never waited on the vendor: a publish that did would take at least the
    // vendor's connect deadline, and most of the 400 publishes during the hang its request
    // deadline.
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = *latencies.last().unwrap();
    eprintln!("publish round trip p99 {p99:?}, max {max:?}");
    assert!(p99 < failover.http.connect_timeout, "publish p99 {p99:?}");
    assert!(max < failover.lanes.request_timeout, "publish max {max:?}");

    // Every event reached understudy's own subscriber, once, in order.
    let (seqs, routes) = tokio::time::timeout(PATIENCE, own).await.unwrap().unwrap();
    assert_eq!(seqs, (1..=EVENTS).collect::<Vec<_>>());
    // The subscriber was told the route changed to self, within the detection bound.
    let left = routes
        .iter()
        .find(|r| r["route"] == "self")
        .expect("a route message to self");
    let changed_at = left["changed_at"].as_u64().unwrap();
    let left_after = Duration::from_millis(
        (changed_at.checked_sub(stopped_at)).expect("the route left after SIGSTOP, not before"),
    );
    eprintln!("the route left the vendor {left_after:?} after SIGSTOP");
    assert!(
        left_after <= detection,
        "the route left the hung vendor {left_after:?} after SIGSTOP; bound {detection:?}"
    );
    assert!(left["jitter_ms"].as_u64().unwrap() <= 1000);

    // The vendor path delivered the events before the hang, as the same event JSON.
    let first = on_vendor
        .next_event(PATIENCE)
        .await
        .expect("an event through the vendor");
    assert_eq!(first.event, "understudy.event");
    let frame: Value = serde_json::from_str(first.data.as_str().unwrap()).unwrap();
    assert_eq!(
        (frame["channel"].as_str(), frame["type"].as_str()),
        (Some("room"), Some("event"))
    );

    // Back to the vendor only after the recovery hysteresis, spread over the move-back window.
    let back = wait_for_path(&s, Path::Vendor(0), Duration::from_secs(30)).await;
    let recovered_after = back - resumed_at;
    eprintln!("recovered {recovered_after:?} after SIGCONT");
    assert!(
        recovered_after >= Duration::from_secs(2),
        "min dwell respected: {recovered_after:?}"
    );
    assert_eq!(s.state.failover.route().jitter, Duration::from_secs(3));

    // Every automatic transition is in the audit trail with its reason. The audit feed records
    // them from the driver's status snapshots, asynchronously: wait for the last one.
    let deadline = Instant::now() + PATIENCE;
    let (entries, transitions) = loop {
        s.state.audit.flush().await.unwrap();
        let entries = s.state.audit.tail(100).await.unwrap();
        let transitions: Vec<(String, String)> = entries
            .iter()
            .filter(|e| e.action.as_str() == "transition_auto")
            .map(|e| {
                let side = |k: &str| e.details[k].as_str().unwrap().to_string();
                (side("from"), side("to"))
            })
            .collect();
        if transitions.last().is_some_and(|(_, to)| to == "healthy") || Instant::now() > deadline {
            break (entries, transitions);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        transitions.contains(&("healthy".into(), "degraded".into())),
        "{transitions:?}"
    );
    assert!(
        transitions.last().is_some_and(|(_, to)| to == "healthy"),
        "{transitions:?}"
    );
    assert!(entries
        .iter()
        .all(|e| e.actor == "system" && e.reason.is_some()));
}
