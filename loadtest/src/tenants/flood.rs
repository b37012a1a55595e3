//! Tenant A's flood: `POST /v1/publish/batch` with A's key at a fixed event rate over many of A's
//! channels, counting each event accepted, refused by A's quota (`429`, the whole request or one
//! item) or failed otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};

/// Concurrent batch requests: enough to keep the rate while one waits on the server.
const WORKERS: u64 = 4;
/// A's channels the flood spreads over (`a.flood.0` ..), so per-channel order never holds
/// A's lane back and the lane itself is what fills.
const CHANNELS: u64 = 64;

#[derive(Debug, Default)]
pub(super) struct FloodCounts {
    pub(super) sent: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) refused_429: AtomicU64,
    pub(super) other: AtomicU64,
}

/// Floods at `rate` events/s in batches of `batch` until `until`.
pub(super) async fn run(
    http: reqwest::Client,
    url: reqwest::Url,
    key: String,
    rate: u64,
    batch: u64,
    until: Instant,
    counts: Arc<FloodCounts>,
) {
    let batch = batch.clamp(1, 500);
    // Each worker sends rate / WORKERS events a second, `batch` at a time.
    let period = Duration::from_secs_f64(batch as f64 * WORKERS as f64 / rate.max(1) as f64);
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (http, url, key, counts) = (http.clone(), url.clone(), key.clone(), counts.clone());
        workers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                Instant::now() + period.mul_f64(w as f64 / WORKERS as f64),
                period,
            );
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let mut n = w * 1_000_000;
            while tick.tick().await < until {
                let events: Vec<Value> = (0..batch)
                    .map(|_| {
                        n += 1;
                        serde_json::json!({
                            "channel": format!("a.flood.{}", n % CHANNELS),
                            "name": "flood",
                            "data": {"n": n},
                        })
                    })
                    .collect();
                counts.sent.fetch_add(batch, Ordering::Relaxed);
                send(&http, &url, &key, events, batch, &counts).await;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

async fn send(
    http: &reqwest::Client,
    url: &reqwest::Url,
    key: &str,
    events: Vec<Value>,
    batch: u64,
    counts: &FloodCounts,
) {
    let answer = http
        .post(url.clone())
        .bearer_auth(key)
        .json(&serde_json::json!({ "events": events }))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let answer = match answer {
        Ok(a) => a,
        Err(_) => {
            counts.other.fetch_add(batch, Ordering::Relaxed);
            return;
        }
    };
    match answer.status().as_u16() {
        429 => {
            counts.refused_429.fetch_add(batch, Ordering::Relaxed);
        }
        200 => {
            let body: Value = answer.json().await.unwrap_or_default();
            let results = body["results"].as_array().cloned().unwrap_or_default();
            for r in &results {
                let counter = match r["status"].as_u64() {
                    Some(202) => &counts.accepted,
                    Some(429) => &counts.refused_429,
                    _ => &counts.other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            let missing = batch.saturating_sub(results.len() as u64);
            counts.other.fetch_add(missing, Ordering::Relaxed);
        }
        _ => {
            counts.other.fetch_add(batch, Ordering::Relaxed);
        }
    }
}
