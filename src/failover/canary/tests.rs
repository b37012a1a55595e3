//! Canary tests against the in-memory fake vendor, on a paused clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::upstream::fake::{Behaviour, FakeVendor, Realtime};

fn config() -> CanaryConfig {
    CanaryConfig {
        jitter: 0.0,
        ..CanaryConfig::default()
    }
}

/// Starts the canary of `vendor`; returns its observations and the token that stops it.
fn start(vendor: Arc<FakeVendor>) -> (mpsc::Receiver<Observation>, CancellationToken) {
    let (tx, rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move { run(0, vendor.as_ref(), &config(), tx, stop).await });
    (rx, cancel)
}

async fn next(rx: &mut mpsc::Receiver<Observation>) -> (CanaryResult, Instant) {
    match rx.recv().await {
        Some(Observation::Canary(c)) => (c.result, c.at),
        other => panic!("expected a canary observation, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_delivered_canary_arrives_with_its_latency() {
    let vendor = FakeVendor::new("v", 1, Realtime::Working);
    let (mut rx, cancel) = start(vendor.clone());
    for _ in 0..3 {
        let (result, _) = next(&mut rx).await;
        // The fake's realtime side takes 1 ms to deliver.
        assert_eq!(
            result,
            CanaryResult::Arrived {
                latency: Duration::from_millis(1)
            }
        );
    }
    // One canary event per round, on the reserved channel, with a fresh nonce each time.
    let calls = vendor.calls.lock().clone();
    assert_eq!(calls.len(), 3);
    assert!(calls[0] != calls[1] && calls[1] != calls[2]);
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn accepted_but_never_delivered_is_lost_at_the_deadline() {
    let vendor = FakeVendor::new("v", 1, Realtime::Working);
    vendor.set(Behaviour::Swallow);
    let (mut rx, cancel) = start(vendor);
    let started = Instant::now();
    let (result, at) = next(&mut rx).await;
    assert_eq!(
        result,
        CanaryResult::Lost {
            failure: CanaryFailure::NotDelivered
        }
    );
    // Subscribed after 5 ms, then the 2 s deadline.
    assert_eq!(at - started, Duration::from_millis(2005));
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_hung_publish_is_lost_as_a_time_out_and_rounds_continue() {
    let vendor = FakeVendor::new("v", 1, Realtime::Working);
    let (mut rx, cancel) = start(vendor.clone());
    assert!(matches!(
        next(&mut rx).await.0,
        CanaryResult::Arrived { .. }
    ));
    vendor.set(Behaviour::Hang);
    let hung_at = Instant::now();
    let (result, at) = next(&mut rx).await;
    assert_eq!(
        result,
        CanaryResult::Lost {
            failure: CanaryFailure::PublishFailed {
                class: ErrorClass::Timeout
            }
        }
    );
    assert!(
        at - hung_at <= Duration::from_secs(3),
        "detected within interval + deadline"
    );
    vendor.set(Behaviour::Deliver);
    // A round may already have started against the hung vendor; the one after it succeeds.
    let mut arrived = false;
    for _ in 0..2 {
        arrived |= matches!(next(&mut rx).await.0, CanaryResult::Arrived { .. });
    }
    assert!(arrived);
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_configuration_error_is_a_fatal_loss() {
    let vendor = FakeVendor::new("v", 1, Realtime::Working);
    vendor.set(Behaviour::Fail(ErrorClass::Config));
    let (mut rx, cancel) = start(vendor);
    let (result, _) = next(&mut rx).await;
    let CanaryResult::Lost { failure } = result else {
        panic!("{result:?}")
    };
    assert_eq!(
        failure,
        CanaryFailure::PublishFailed {
            class: ErrorClass::Config
        }
    );
    assert!(failure.is_fatal());
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_refused_realtime_connection_is_reported_as_refused() {
    let vendor = FakeVendor::new("v", 1, Realtime::Refused);
    let (mut rx, cancel) = start(vendor.clone());
    let (result, _) = next(&mut rx).await;
    assert_eq!(
        result,
        CanaryResult::Lost {
            failure: CanaryFailure::Refused
        }
    );
    // Nothing is published while not subscribed.
    assert_eq!(vendor.publishes(), 0);
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_untrusted_certificate_is_a_fatal_tls_failure_told_at_once() {
    let vendor = FakeVendor::new("v", 1, Realtime::Untrusted);
    let (mut rx, cancel) = start(vendor.clone());
    let started = Instant::now();
    let (result, at) = next(&mut rx).await;
    let failure = CanaryFailure::Tls {
        problem: crate::upstream::tls::TlsProblem::UnknownIssuer,
    };
    assert_eq!(result, CanaryResult::Lost { failure });
    assert!(failure.is_fatal());
    // As soon as the session ends, not at the end of the round's deadline.
    assert!(
        at - started < Duration::from_millis(100),
        "{:?}",
        at - started
    );
    assert_eq!(
        serde_json::to_string(&result).unwrap(),
        r#"{"outcome":"lost","failure":{"reason":"tls","problem":"unknown_issuer"}}"#
    );
    assert_eq!(vendor.publishes(), 0);
    cancel.cancel();
}

#[test]
fn jitter_only_lengthens_the_delay() {
    let d = Duration::from_millis(100);
    assert_eq!(jittered(d, 0.0), d);
    for _ in 0..100 {
        let j = jittered(d, 0.5);
        assert!(j >= d && j <= Duration::from_millis(150));
    }
}

/// A vendor whose realtime sessions end as scripted; publishes succeed.
struct Scripted {
    /// How each session ends, in order; afterwards sessions stay open.
    script: parking_lot::Mutex<std::collections::VecDeque<SessionEndScript>>,
    /// When each session started.
    starts: parking_lot::Mutex<Vec<Instant>>,
}

#[derive(Clone, Copy)]
enum SessionEndScript {
    /// Fails before subscribing.
    Fail,
    /// Is refused (fatal).
    Refuse,
    /// Subscribes, then drops after 100 ms.
    Drop,
}

impl Vendor for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn kind(&self) -> crate::upstream::VendorKind {
        crate::upstream::VendorKind::Pusher
    }

    fn public_info(&self) -> crate::upstream::PublicInfo {
        crate::upstream::PublicInfo {
            kind: self.kind(),
            key: None,
            host: "h".into(),
            port: 1,
            tls: false,
            cluster: None,
            private: false,
        }
    }

    fn publish<'a>(
        &'a self,
        _: &'a [OutboundEvent],
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::upstream::VendorError>> {
        Box::pin(async { Ok(()) })
    }

    fn has_realtime(&self) -> bool {
        true
    }

    fn listen<'a>(
        &'a self,
        _: &'a str,
        arrivals: mpsc::Sender<Arrival>,
    ) -> futures_util::future::BoxFuture<'a, crate::upstream::realtime::SessionEnd> {
        Box::pin(async move {
            self.starts.lock().push(Instant::now());
            let next = self.script.lock().pop_front();
            let closed = RealtimeError::Closed {
                code: 1006,
                reason: "gone".into(),
            };
            match next {
                Some(SessionEndScript::Fail) => crate::upstream::realtime::SessionEnd {
                    subscribed: false,
                    error: closed,
                },
                Some(SessionEndScript::Refuse) => crate::upstream::realtime::SessionEnd {
                    subscribed: false,
                    error: RealtimeError::Refused {
                        code: 4001,
                        message: "no app".into(),
                    },
                },
                Some(SessionEndScript::Drop) => {
                    let _ = arrivals.send(Arrival::Subscribed).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    crate::upstream::realtime::SessionEnd {
                        subscribed: true,
                        error: closed,
                    }
                }
                None => {
                    let _ = arrivals.send(Arrival::Subscribed).await;
                    std::future::pending().await
                }
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_realtime_session_reconnects_with_exponential_back_off() {
    use SessionEndScript::{Drop, Fail, Refuse};
    let vendor = Arc::new(Scripted {
        script: parking_lot::Mutex::new([Fail, Fail, Fail, Drop, Fail, Refuse].into()),
        starts: parking_lot::Mutex::new(Vec::new()),
    });
    let (tx, _rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let (v, stop) = (vendor.clone(), cancel.clone());
    tokio::spawn(async move { run(0, v.as_ref(), &config(), tx, stop).await });
    tokio::time::sleep(Duration::from_secs(20)).await;
    let starts = vendor.starts.lock().clone();
    let gaps: Vec<u128> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    // 250, 500, 1000 ms after failures; a session that subscribed resets the back-off (100 ms
    // open + 250 ms); then 500 ms; a refusal waits the maximum (5 s).
    assert_eq!(gaps, [250, 500, 1000, 350, 500, 5000]);
    cancel.cancel();
}
