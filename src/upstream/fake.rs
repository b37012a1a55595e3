//! A scriptable in-memory [`Vendor`] for unit tests (paused clock, no sockets): it can answer,
//! fail with a class, hang, answer slowly, or accept without delivering; its realtime side
//! delivers what was published, like a real vendor, unless told otherwise.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::realtime::{Arrival, RealtimeError, SessionEnd};
use super::{ErrorClass, OutboundEvent, PublicInfo, Vendor, VendorError, VendorKind};

/// How the fake answers a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// 2xx, and the events arrive on the realtime side.
    Deliver,
    /// Fails with this class.
    Fail(ErrorClass),
    /// Never answers.
    Hang,
    /// Answers (and delivers) after this long.
    Slow(Duration),
    /// 2xx, but nothing ever arrives on the realtime side.
    Swallow,
}

/// How the fake's realtime side behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Realtime {
    None,
    Working,
    Refused,
    /// Every session fails its TLS handshake: the certificate's CA is not trusted.
    Untrusted,
}

pub(crate) struct FakeVendor {
    name: String,
    max_batch: usize,
    realtime: Realtime,
    behaviour: Mutex<Behaviour>,
    /// Channels whose publishes hang whatever the behaviour.
    hang_prefix: Mutex<Option<String>>,
    /// Every publish call's event ids, in call order.
    pub(crate) calls: Mutex<Vec<Vec<String>>>,
    /// The channel of every event published, in order.
    pub(crate) channels: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    pub(crate) max_in_flight: AtomicUsize,
    delivered: broadcast::Sender<String>,
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeVendor {
    pub(crate) fn new(name: &str, max_batch: usize, realtime: Realtime) -> Arc<FakeVendor> {
        Arc::new(FakeVendor {
            name: name.into(),
            max_batch,
            realtime,
            behaviour: Mutex::new(Behaviour::Deliver),
            hang_prefix: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            channels: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            delivered: broadcast::channel(1024).0,
        })
    }

    pub(crate) fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock() = behaviour;
    }

    pub(crate) fn hang_channels_starting_with(&self, prefix: &str) {
        *self.hang_prefix.lock() = Some(prefix.into());
    }

    pub(crate) fn publishes(&self) -> usize {
        self.calls.lock().len()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

impl Vendor for FakeVendor {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> VendorKind {
        VendorKind::Webhook
    }

    fn public_info(&self) -> PublicInfo {
        PublicInfo {
            kind: VendorKind::Webhook,
            key: None,
            host: "fake".into(),
            port: 0,
            tls: false,
            cluster: None,
            private: false,
        }
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn publish<'a>(
        &'a self,
        events: &'a [OutboundEvent],
    ) -> BoxFuture<'a, Result<(), VendorError>> {
        Box::pin(async move {
            let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            let _guard = InFlight(&self.in_flight);
            self.max_in_flight.fetch_max(n, Ordering::SeqCst);
            self.calls
                .lock()
                .push(events.iter().map(|e| e.id.clone()).collect());
            self.channels
                .lock()
                .extend(events.iter().map(|e| e.channel.clone()));
            let hang = self
                .hang_prefix
                .lock()
                .as_deref()
                .is_some_and(|p| events.iter().any(|e| e.channel.starts_with(p)));
            let behaviour = if hang {
                Behaviour::Hang
            } else {
                *self.behaviour.lock()
            };
            match behaviour {
                Behaviour::Hang => std::future::pending().await,
                Behaviour::Fail(class) => Err(VendorError::Rejected {
                    class,
                    status: 500,
                    code: None,
                    message: "fake".into(),
                }),
                Behaviour::Swallow => Ok(()),
                Behaviour::Deliver | Behaviour::Slow(_) => {
                    if let Behaviour::Slow(d) = behaviour {
                        tokio::time::sleep(d).await;
                    }
                    for e in events {
                        let _ = self.delivered.send(e.id.clone());
                    }
                    Ok(())
                }
            }
        })
    }

    fn has_realtime(&self) -> bool {
        self.realtime != Realtime::None
    }

    fn listen<'a>(
        &'a self,
        _channel: &'a str,
        arrivals: mpsc::Sender<Arrival>,
    ) -> BoxFuture<'a, SessionEnd> {
        Box::pin(async move {
            match self.realtime {
                Realtime::None => {
                    return SessionEnd {
                        subscribed: false,
                        error: RealtimeError::Unsupported,
                    }
                }
                Realtime::Refused => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let error = RealtimeError::Refused {
                        code: 4001,
                        message: "App does not exist".into(),
                    };
                    return SessionEnd {
                        subscribed: false,
                        error,
                    };
                }
                Realtime::Untrusted => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let error = RealtimeError::Tls {
                        problem: crate::upstream::tls::TlsProblem::UnknownIssuer,
                        detail: "invalid peer certificate: UnknownIssuer".into(),
                    };
                    return SessionEnd {
                        subscribed: false,
                        error,
                    };
                }
                Realtime::Working => {}
            }
            let mut delivered = self.delivered.subscribe();
            tokio::time::sleep(Duration::from_millis(5)).await;
            if arrivals.send(Arrival::Subscribed).await.is_err() {
                return SessionEnd {
                    subscribed: true,
                    error: RealtimeError::Abandoned,
                };
            }
            loop {
                let id = match delivered.recv().await {
                    Ok(id) => id,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        return SessionEnd {
                            subscribed: true,
                            error: RealtimeError::Dead,
                        };
                    }
                };
                tokio::time::sleep(Duration::from_millis(1)).await;
                if arrivals
                    .send(Arrival::Message {
                        id,
                        at: Instant::now(),
                    })
                    .await
                    .is_err()
                {
                    return SessionEnd {
                        subscribed: true,
                        error: RealtimeError::Abandoned,
                    };
                }
            }
        })
    }
}
