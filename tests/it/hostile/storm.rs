//! Reconnect storms: past `server.max_new_subscribers_per_second` (and its burst) a new WebSocket
//! or SSE subscriber is answered `503 reconnect_later` with a retry hint, while publishes, the
//! subscribers already admitted and the health routes keep being served.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;

use crate::support::*;

const ADMIN: &str = "test-admin-token-0123456789";
const BURST: usize = 10;
const TRIED: usize = 16;

fn config(per_second: u32, jitter_ms: u64) -> String {
    format!(
        "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"ops\", token = \"{ADMIN}\" }}]\n\
         [server]\nmax_new_subscribers_per_second = {per_second}\nnew_subscribers_burst = {BURST}\nreconnect_later_jitter_ms = {jitter_ms}\n"
    )
}

/// A WebSocket connect: the socket, or the refusal's status, `Retry-After` and JSON body.
async fn try_ws(s: &Server, channel: &str) -> Result<Ws, (u16, String, Value)> {
    match tokio_tungstenite::connect_async(s.ws_url(&format!("?channel={channel}"))).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(r)) => {
            let retry_after = r.headers()["retry-after"].to_str().unwrap().to_string();
            let body = serde_json::from_slice(r.body().as_deref().unwrap_or_default()).unwrap();
            Err((r.status().as_u16(), retry_after, body))
        }
        Err(e) => panic!("the connect failed below HTTP: {e}"),
    }
}

#[tokio::test]
async fn a_burst_past_the_bucket_is_told_to_come_back_while_publishes_are_answered() {
    let s = Server::with(&config(1, 0)).await;
    let started = Instant::now();
    let mut open = Vec::new();
    let mut refusals = Vec::new();
    for i in 0..TRIED {
        match try_ws(&s, "storm").await {
            Ok(mut ws) => {
                ws_expect(&mut ws, "welcome").await;
                ws_expect(&mut ws, "subscribed").await;
                open.push((i as u64, ws));
            }
            Err(refused) => refusals.push(refused),
        }
        // Publishes never count against the bucket and are answered throughout.
        let (status, v) = s
            .publish(json!({"channel": "storm", "name": "n", "data": {"i": i}}))
            .await;
        assert_eq!(status, 202, "{v}");
    }
    let sse = s
        .http
        .get(format!("{}/v1/sse?channel=storm", s.base))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    // The bucket refills one place a second: counts are exact only within the first second.
    assert!(
        elapsed < Duration::from_secs(1),
        "the attempts took {elapsed:?}; the refill would blur the counts"
    );
    assert_eq!(
        open.len(),
        BURST,
        "the burst is admitted whole, and no more"
    );
    assert_eq!(refusals.len(), TRIED - BURST);
    for (status, retry_after, body) in &refusals {
        assert_eq!(*status, 503);
        assert_eq!(retry_after, "1", "whole seconds, rounded up");
        assert_eq!(body["error"]["code"], "reconnect_later", "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry_after_ms"));
        // No jitter: the wait is until the next place, at most a second at 1/s.
        let ms = body["error"]["retry_after_ms"].as_u64().unwrap();
        assert!((1..=1000).contains(&ms), "{body}");
    }
    assert_eq!(sse.status(), 503, "SSE streams share the bucket");
    assert_eq!(sse.headers()["retry-after"], "1");
    let body: Value = sse.json().await.unwrap();
    assert_eq!(body["error"]["code"], "reconnect_later");

    // Each admitted subscriber got every publish made after it joined, in order.
    for (joined, ws) in &mut open {
        let want: Vec<u64> = (*joined + 1..=TRIED as u64).collect();
        let mut seqs = Vec::new();
        while seqs.len() < want.len() {
            let e = ws_expect(ws, "event").await;
            seqs.push(e["seq"].as_u64().unwrap());
        }
        assert_eq!(seqs, want);
    }

    // Polls, health and the admin listener are never refused by the bucket.
    let (status, _) = s.get("/v1/channels/storm/events?since=0").await;
    assert_eq!(status, 200);
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.get("/readyz").await.0, 200);
    let (status, v) = s
        .admin_call(reqwest::Method::GET, "/admin/status", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    let rate = &v["listeners"][0]["new_subscribers"];
    assert_eq!(
        rate,
        &json!({"max_per_second": 1, "burst": BURST, "jitter_ms": 0,
                "admitted": BURST, "refused": TRIED - BURST + 1}),
        "{v}"
    );
    // The recorder is shared by every server of this test process: at least ours are counted.
    let metrics = s.metrics_text().await;
    for (series, least) in [
        ("{transport=\"ws\",outcome=\"refused\"}", TRIED - BURST),
        ("{transport=\"sse\",outcome=\"refused\"}", 1),
    ] {
        let name = format!("understudy_new_subscribers_total{series} ");
        let n: usize = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&name))
            .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
            .parse()
            .unwrap();
        assert!(n >= least, "{name}{n}");
    }
}

#[tokio::test]
async fn refused_subscribers_are_told_waits_spread_over_the_jitter_window() {
    let s = Server::with(&config(1, 5000)).await;
    let mut open = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..BURST + 20 {
        match try_ws(&s, "spread").await {
            Ok(ws) => open.push(ws),
            Err((_, _, body)) => waits.push(body["error"]["retry_after_ms"].as_u64().unwrap()),
        }
    }
    assert!(waits.len() >= 19, "{waits:?}");
    assert!(waits.iter().all(|w| *w <= 6000), "{waits:?}");
    // Twenty uniform draws over five seconds: the spread of all landing within one second of
    // each other is below one in a billion.
    let (min, max) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
    assert!(max - min > 1000, "{waits:?}");
}

#[tokio::test]
async fn browsers_are_told_in_band_what_they_could_not_read_from_a_503() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let s = Server::with(&config(1, 0)).await;
    let mut open = Vec::new();
    for _ in 0..BURST {
        open.push(try_ws(&s, "b").await.expect("within the burst"));
    }
    // A browser's handshake carries Origin: accepted, then closed with 1013 and the wait.
    let mut req = s.ws_url("?channel=b").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "https://screens.example.com".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(response.status(), 101);
    let frame = tokio::time::timeout(PATIENCE, ws_frame(&mut ws))
        .await
        .unwrap()
        .expect("a frame")
        .unwrap();
    let Message::Close(Some(close)) = frame else {
        panic!("expected a close frame, got {frame:?}");
    };
    assert_eq!(u16::from(close.code), 1013);
    let reason: Value = serde_json::from_str(&close.reason).unwrap();
    assert_eq!(reason["code"], "reconnect_later");
    assert!((1..=1000).contains(&reason["retry_after_ms"].as_u64().unwrap()));

    // A browser's EventSource (Sec-Fetch-Mode): a stream with retry: and a reconnect message.
    let r = s
        .http
        .get(format!("{}/v1/sse?channel=b", s.base))
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let body = r.text().await.unwrap();
    let (retry, data) = body.split_once('\n').unwrap();
    let retry_ms: u64 = retry.strip_prefix("retry: ").unwrap().parse().unwrap();
    let msg: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap().trim_end()).unwrap();
    assert_eq!(
        msg,
        json!({"type": "reconnect", "reason": "reconnect_later", "retry_ms": retry_ms})
    );
    // Both were refused, not admitted.
    let (_, v) = s
        .admin_call(reqwest::Method::GET, "/admin/status", Some(ADMIN), None)
        .await;
    assert_eq!(v["listeners"][0]["new_subscribers"]["refused"], 2, "{v}");
    drop(open);
}
