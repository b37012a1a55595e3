//! Per-connection control signals: "the route changed" and "time to go". Connections do not poll
//! the shared route watch or the shared goodbye token on every wake (both register in a waiter list
//! behind a lock shared by every connection, which costs two contended locks per delivered
//! event). Instead one task watches both and nudges each connection: an atomic version and the
//! connection's waker, registered once and kept, so the per-event path takes no lock.
//!
//! Routes are per tenant: a connection follows the tenant of the first channel it subscribes
//! (the default tenant until then), and a route change nudges only the connections of the
//! tenants whose route changed.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::core::live::{Registration, TaskSlot};
use tokio::sync::watch;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::core::ChannelName;
use crate::failover::Route;
use crate::tenant::TenantId;

#[derive(Default)]
struct Nudge {
    version: AtomicU64,
    /// The connection's task.
    waker: TaskSlot,
    /// The tenant whose route the connection follows; set once, at its first subscription.
    tenant: ArcSwap<TenantId>,
}

/// Every open connection's nudge. The lock is taken on connect, disconnect and broadcast only.
#[derive(Default)]
pub struct Control {
    nudges: Mutex<HashMap<u64, Arc<Nudge>>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("connections", &self.nudges.lock().len())
            .finish()
    }
}

/// A connection's end: resolves when it has been nudged since it last looked.
pub(crate) struct Nudged {
    id: u64,
    nudge: Arc<Nudge>,
    seen: u64,
    registered: Registration,
    control: Arc<Control>,
}

impl Control {
    pub(crate) fn register(self: &Arc<Self>) -> Nudged {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let nudge = Arc::new(Nudge::default());
        self.nudges.lock().insert(id, nudge.clone());
        Nudged {
            id,
            nudge,
            seen: 0,
            registered: Registration::default(),
            control: self.clone(),
        }
    }

    /// Nudges every connection.
    pub(crate) fn nudge_all(&self) {
        self.nudge_where(|_| true);
    }

    /// Nudges the connections whose tenant `pick` names.
    pub(crate) fn nudge_where(&self, pick: impl Fn(&TenantId) -> bool) {
        let nudges: Vec<Arc<Nudge>> = (self.nudges.lock().values())
            .filter(|n| pick(&n.tenant.load()))
            .cloned()
            .collect();
        for n in nudges {
            n.version.fetch_add(1, Ordering::Release);
            n.waker.wake();
        }
    }

    /// The tenants of the open connections.
    fn tenants(&self) -> std::collections::HashSet<TenantId> {
        let nudges = self.nudges.lock();
        nudges
            .values()
            .map(|n| (**n.tenant.load()).clone())
            .collect()
    }
}

impl Nudged {
    /// Ready once a nudge arrived since the last time this was ready.
    pub(crate) fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let v = self.nudge.version.load(Ordering::Acquire);
        if v != self.seen {
            self.seen = v;
            return Poll::Ready(());
        }
        self.registered.register(&self.nudge.waker, cx.waker());
        let v = self.nudge.version.load(Ordering::Acquire);
        if v != self.seen {
            self.seen = v;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves once a nudge arrived since the last time this resolved.
    #[cfg(test)]
    async fn changed(&mut self) {
        poll_fn(|cx| self.poll_changed(cx)).await
    }
}

impl Drop for Nudged {
    fn drop(&mut self) {
        self.control.nudges.lock().remove(&self.id);
    }
}

/// Nudges every connection when the goodbye is given, and the connections of each tenant whose
/// route changed when one did (`routes` wakes on every route change of the node). Ends when
/// `stop` (the node's background tasks) is cancelled.
pub(crate) async fn run(
    state: crate::transport::AppState,
    mut routes: watch::Receiver<u64>,
    goodbye: CancellationToken,
    stop: CancellationToken,
) {
    let control = state.control.clone();
    // The route version each tenant's connections were last nudged for.
    let mut told: HashMap<TenantId, u64> = HashMap::new();
    let mut said_goodbye = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = goodbye.cancelled(), if !said_goodbye => {
                said_goodbye = true;
                control.nudge_all();
                continue;
            }
            changed = routes.changed() => if changed.is_err() { return },
        }
        let tenants = control.tenants();
        told.retain(|t, _| tenants.contains(t));
        let moved: std::collections::HashSet<TenantId> = (tenants.into_iter())
            .filter(|t| {
                let version = state.failover.route_for(t).version;
                told.insert(t.clone(), version) != Some(version)
            })
            .collect();
        if !moved.is_empty() {
            control.nudge_where(|t| moved.contains(t));
        }
    }
}

/// What a connection must act on.
pub(crate) enum Signal {
    /// The route changed: tell the client.
    Route(Arc<Route>),
    /// This connection's turn to say goodbye has come.
    Goodbye,
}

/// A connection's view of the control signals: the route version it last told its client, and
/// the moment it must say goodbye once a drain has begun.
pub(crate) struct Signals {
    nudged: Nudged,
    route_version: u64,
    /// Whether the connection's tenant is settled (by its first subscription).
    tenant_known: bool,
    /// Armed once a drain has begun: fires when this connection's turn to say goodbye comes.
    goodbye: Option<Pin<Box<Sleep>>>,
    /// What the signals are read from: these three, not a whole `AppState`, which every
    /// connection's session holds already.
    tenants: Arc<ArcSwap<crate::tenant::Tenants>>,
    lifecycle: crate::lifecycle::Lifecycle,
    failover: crate::failover::Failover,
}

impl Signals {
    /// `route_version` is the version the client already has (0: none).
    pub(crate) fn new(state: &crate::transport::AppState, route_version: u64) -> Self {
        let mut signals = Self {
            nudged: state.control.register(),
            route_version,
            tenant_known: false,
            goodbye: None,
            tenants: state.tenants.clone(),
            lifecycle: state.lifecycle.clone(),
            failover: state.failover.clone(),
        };
        signals.arm_goodbye();
        signals
    }

    /// The connection subscribes `channel`: the first one settles whose route it follows. If
    /// that route is not the one the client was told, the next signal tells it.
    pub(crate) fn follow(&mut self, channel: &ChannelName) {
        if std::mem::replace(&mut self.tenant_known, true) {
            return;
        }
        let tenant = self.tenants.load().of_channel(channel.as_str()).id.clone();
        self.nudged.nudge.tenant.store(Arc::new(tenant));
        self.nudged.nudge.version.fetch_add(1, Ordering::Release);
    }

    /// The client was told the route of version `version`.
    pub(crate) fn told(&mut self, version: u64) {
        self.route_version = version;
    }

    /// The tenant whose route the connection follows.
    pub(crate) fn tenant(&self) -> TenantId {
        (**self.nudged.nudge.tenant.load()).clone()
    }

    fn arm_goodbye(&mut self) {
        let lifecycle = &self.lifecycle;
        if self.goodbye.is_none() && lifecycle.goodbye_requested() {
            self.goodbye = Some(Box::pin(tokio::time::sleep(lifecycle.goodbye_delay())));
        }
    }

    /// The next signal. Cancel-safe: progress is kept in `self`.
    pub(crate) async fn next(&mut self) -> Signal {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Signal> {
        loop {
            if let Some(goodbye) = &mut self.goodbye {
                if goodbye.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Signal::Goodbye);
                }
            }
            ready!(self.nudged.poll_changed(cx));
            self.arm_goodbye();
            let route = self.failover.route_for(&self.nudged.nudge.tenant.load());
            if route.version != self.route_version {
                self.route_version = route.version;
                return Poll::Ready(Signal::Route(route));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_nudge_is_seen_once_and_unregisters_on_drop() {
        let control = Arc::new(Control::default());
        let mut a = control.register();
        assert!(a.changed().now_or_never().is_none());
        control.nudge_all();
        control.nudge_all();
        assert!(a.changed().now_or_never().is_some());
        assert!(
            a.changed().now_or_never().is_none(),
            "two nudges before a look count once"
        );
        drop(a);
        assert_eq!(control.nudges.lock().len(), 0);
    }
}
