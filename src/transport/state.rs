//! The handles the edges share (public API, admin listener, demo): built by `app` from its pieces
//! and handed to the routers, so nothing below `app` names `app`. Also what a reload reports,
//! which the admin listener and the one error mapping read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;
use tracing::warn;

use crate::auth::{AdminTokens, Apps, SubscriberAuth};
use crate::config::{Config, ConfigError, ConfigSource};
use crate::engine::Engine;
use crate::failover::{Failover, RebuildError};
use crate::lifecycle::Lifecycle;
use crate::ops::audit::AuditHandle;
use crate::ops::maintenance::Maintenance;
use crate::ops::Metrics;
use crate::tenant::{Tenants, Usage};
use crate::transport::admission::{self, Admission, Listener};
use crate::transport::control::Control;

/// Everything a request handler may touch ([`Handles`], read through `Deref`). One `Arc`: every
/// request and every connection holds a clone, so a clone is one count and the state an idle
/// connection keeps is one pointer.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Handles>);

impl AppState {
    pub fn from_handles(handles: Handles) -> Self {
        Self(Arc::new(handles))
    }
}

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

/// The handles in an [`AppState`]: named `Arc`s, each shared with the part of the node that owns
/// it.
///
/// What a reload changes sits behind an `ArcSwap`: read it with `load()` (lock-free) and do not
/// hold the guard across an `.await` (copy the value out, or `load_full()`).
#[derive(Debug)]
pub struct Handles {
    /// The configuration in force, replaced whole by a reload.
    pub config: Arc<ArcSwap<Config>>,
    /// Channels, sequencing, history and live fan-out: this node's, or shared through Redis.
    pub engine: Arc<Engine>,
    /// The tenants sharing this node: who owns each channel, whose each key and app is (the
    /// publisher keys are looked up here), and the quotas of each. Replaced whole by a reload.
    pub tenants: Arc<ArcSwap<Tenants>>,
    /// What each tenant uses now (publish buckets, connections, counts), by tenant id: kept
    /// across reloads, held against the quotas in `tenants`.
    pub usage: Arc<Usage>,
    pub subscribers: Arc<ArcSwap<SubscriberAuth>>,
    pub admins: Arc<ArcSwap<AdminTokens>>,
    /// `[[apps]]` of the Pusher and Ably protocols, by id and by key.
    pub apps: Arc<ArcSwap<Apps>>,
    /// Nonces of the Ably TokenRequests exchanged recently; kept across reloads, so a reload
    /// does not make a used request good again.
    pub ably_nonces: Arc<crate::auth::ably::Nonces>,
    /// Where the configuration came from, for reloads.
    pub origin: Arc<ConfigOrigin>,
    pub lifecycle: Lifecycle,
    pub metrics: Metrics,
    /// Vendor lanes, health, operator mode and the route. With no vendor configured the route
    /// is understudy's own broadcast.
    pub failover: Failover,
    /// The audit trail; recording never waits.
    pub audit: AuditHandle,
    /// Planned maintenance windows.
    pub maintenance: Maintenance,
    /// Nudges every open connection on a route change or a goodbye.
    pub control: Arc<Control>,
    /// Open connections against each listener's caps (fixed at start).
    pub admission: Admissions,
    /// Re-reads and applies the configuration (`app` provides it; the admin listener asks).
    pub reloader: Arc<dyn Reloader>,
}

impl AppState {
    /// Reads the configuration source again and applies it, or refuses it whole (the running
    /// configuration stays). `by` is who asked (an admin token's name, or `sighup`).
    pub async fn reload(&self, by: &str) -> Result<Reloaded, ReloadError> {
        self.reloader.reload(self, by).await
    }
}

/// A reload as the edges ask for it: `app` implements it, so the admin listener names nothing
/// above itself.
pub trait Reloader: Send + Sync + std::fmt::Debug {
    fn reload<'a>(
        &'a self,
        state: &'a AppState,
        by: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Reloaded, ReloadError>> + Send + 'a>>;
}

/// The listeners' admissions: caps in force and open connections.
#[derive(Clone, Debug)]
pub struct Admissions {
    pub public: Arc<Admission>,
    pub admin: Arc<Admission>,
    /// The public listener's rate of new subscriber connections; its limit is read from the
    /// configuration at each admission, so a reload applies at once.
    pub new_subscribers: Arc<admission::NewSubscribers>,
}

impl Admissions {
    /// The configured caps, lowered to fit the descriptor limit (raised to the hard limit first).
    pub(crate) fn new(limits: &crate::config::ConnectionLimits) -> Self {
        let nofile = admission::raise_descriptor_limit();
        let (public, admin) =
            admission::effective_caps(limits.max_connections, limits.admin_max_connections, nofile);
        if public < limits.max_connections {
            warn!(
                nofile,
                configured = limits.max_connections,
                in_force = public,
                "the descriptor limit lowers server.max_connections"
            );
        }
        Self {
            public: Admission::new(Listener::Public, public, limits.max_connections_per_address),
            admin: Admission::new(Listener::Admin, admin, 0),
            new_subscribers: Arc::default(),
        }
    }
}

/// Where the running configuration came from, and the lock that runs reloads one at a time.
#[derive(Debug, Default)]
pub struct ConfigOrigin {
    /// Unset: the app was built from a `Config` alone; reloads are refused. Set once, at start,
    /// before the state serves anything.
    pub(crate) source: std::sync::OnceLock<ConfigSource>,
    pub(crate) one_at_a_time: tokio::sync::Mutex<()>,
}

impl ConfigOrigin {
    /// Names the source reloads read. The first call wins: the origin of a running node does not
    /// change.
    pub fn set_source(&self, source: ConfigSource) {
        let _ = self.source.set(source);
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    /// Sections with a setting that changed and now applies, in file order.
    pub changed: Vec<&'static str>,
    /// Settings that changed in the file but apply only after a restart (they keep running as
    /// they are), e.g. `server.listen`.
    pub restart_required: Vec<&'static str>,
    /// Whether the vendor side (adapters, lanes, canaries, failover driver) was rebuilt.
    pub vendors_rebuilt: bool,
    /// Events that were waiting in the old vendor queues when it was rebuilt: dropped and
    /// counted (`understudy_vendor_dropped_total{reason="closed"}`), still in history.
    pub vendor_queue_dropped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this node was started without a configuration file to read again")]
    NoSource,
    /// The new configuration is refused whole; the running one stays.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The new configuration was applied but the vendor side could not be restarted.
    #[error("the vendor side could not be rebuilt: {0}")]
    Rebuild(#[from] RebuildError),
}
