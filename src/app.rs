//! Wires the core, the transports and the admin side together; owns the listeners, the background
//! upkeep and the shutdown sequence.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::{AdminTokens, PublisherKeys, SubscriberAuth};
use crate::config::Config;
use crate::core::history::HistoryLimits;
use crate::core::idempotency::IdempotencyLimits;
use crate::core::{ChannelLimits, Registry, RegistryLimits};
use crate::failover::Failover;
use crate::lifecycle::Lifecycle;
use crate::ops::audit::{Audit, AuditAction, AuditEntry, AuditHandle};
use crate::ops::maintenance::Maintenance;
use crate::ops::{self, Metrics};
use crate::transport;
use crate::transport::control::Control;
use crate::vendor::BuildError;

mod serve;

/// Everything a request handler may touch. Cheap to clone: named `Arc` handles.
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Channels, sequencing, history and live fan-out on this node.
    pub registry: Arc<Registry>,
    pub publishers: Arc<PublisherKeys>,
    pub subscribers: Arc<SubscriberAuth>,
    pub admins: Arc<AdminTokens>,
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
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("stats", &self.stats())
            .finish()
    }
}

impl AppState {
    /// Builds the state and starts the vendor side (lanes, canaries, the failover driver) on
    /// `background`, which outlives the connections and stops last.
    pub fn new(config: Config, background: &Background) -> Result<Self, BuildError> {
        let limits = RegistryLimits {
            channel: ChannelLimits {
                history: HistoryLimits {
                    max_events: config.history.max_events,
                    max_age: config.history.max_age,
                },
                idempotency: IdempotencyLimits {
                    window: config.publish.idempotency_window,
                    max_keys: config.publish.idempotency_max_keys,
                },
                live_buffer: config.subscribers.buffer_events,
                idle_reclaim: config.channels.idle_reclaim,
                max_history_bytes: config.history.max_bytes,
            },
            max_channels: config.channels.max_channels,
        };
        let failover = Failover::build(
            &config.vendors.vendors,
            config.vendors.failover.clone(),
            &background.tasks,
            background.cancel.clone(),
        )?;
        let (audit, _writer) = Audit::start(config.audit.clone());
        Ok(Self {
            maintenance: Maintenance::default(),
            control: Arc::new(Control::default()),
            audit,
            failover,
            registry: Arc::new(Registry::new(limits)),
            publishers: Arc::new(PublisherKeys::new(config.auth.publisher_keys.clone())),
            subscribers: Arc::new(SubscriberAuth::new(
                config.auth.subscribe,
                &config.auth.subscriber_secret,
            )),
            admins: Arc::new(AdminTokens::new(config.auth.admin_tokens.clone())),
            lifecycle: Lifecycle::new(config.server.reconnect_jitter, config.server.drain_window),
            metrics: Metrics::install(),
            config: Arc::new(config),
        })
    }
}

/// Background tasks that serve the whole node rather than one connection (vendor lanes,
/// canaries, the failover driver). They stop after every connection has said goodbye.
#[derive(Debug, Default)]
pub struct Background {
    pub tasks: TaskTracker,
    pub cancel: CancellationToken,
}

/// Binds a listener with a deep accept queue: a reconnect wave after a failover or a deploy
/// opens thousands of connections at once, and the default backlog of 128 drops SYNs (clients
/// then wait a full second to retry).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The sockets the app serves on, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

pub struct App {
    state: AppState,
    listeners: Listeners,
    background: Background,
}

impl App {
    /// Builds the app and starts its background side. Must be called inside a Tokio runtime.
    pub fn build(config: Config, listeners: Listeners) -> Result<Self, BuildError> {
        for warning in config.uses_dev_credentials() {
            warn!("{warning}: anyone who has read the docs can use it; set your own before exposing this server");
        }
        let background = Background::default();
        Ok(Self {
            state: AppState::new(config, &background)?,
            listeners,
            background,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then: readiness 503, stop accepting, tell every open
    /// connection to reconnect, and wait for them within `server.shutdown_timeout`.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            state,
            listeners,
            background,
        } = self;
        let lifecycle = state.lifecycle.clone();
        let stop = lifecycle.goodbye_token();

        let upkeep = tokio::spawn(upkeep(state.clone()));
        background.tasks.spawn(crate::transport::control::run(
            state.control.clone(),
            state.failover.watch_route(),
            lifecycle.goodbye_token(),
        ));
        background.tasks.spawn(ops::maintenance::run(
            state.maintenance.clone(),
            state.failover.clone(),
            state.audit.clone(),
            background.cancel.clone(),
        ));
        background.tasks.spawn(ops::audit_feed::run(
            state.failover.watch_status(),
            state.audit.clone(),
            background.cancel.clone(),
        ));
        // The listeners keep answering while connections leave (readiness says 503, new streams
        // are refused); they close once the connections are gone or at the limit.
        let close_listeners = CancellationToken::new();
        let public = tokio::spawn(serve::serve(
            listeners.public,
            transport::router(state.clone()),
            close_listeners.clone(),
        ));
        let admin = tokio::spawn(serve::serve(
            listeners.admin,
            ops::admin::router(state.clone()),
            close_listeners.clone(),
        ));

        tokio::select! {
            () = shutdown => {}
            () = stop.cancelled() => {}
        }
        info!("shutting down: telling open connections to reconnect");
        if !lifecycle.is_draining() {
            state.audit.record(
                AuditEntry::system(AuditAction::Drain).with_reason("shutdown signal: node leaving"),
            );
        }
        lifecycle.begin_shutdown();
        let limit = state.config.server.shutdown_timeout;
        let drained = tokio::time::timeout(limit, lifecycle.connections_closed()).await;
        state.audit.record(
            AuditEntry::system(AuditAction::DrainCompleted).with_details(serde_json::json!({
                "open_connections": lifecycle.open_connections(),
                "within_limit": drained.is_ok(),
            })),
        );
        close_listeners.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            let _ = public.await;
            let _ = admin.await;
        })
        .await;
        upkeep.abort();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), state.audit.flush()).await;
        background.cancel.cancel();
        background.tasks.close();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), background.tasks.wait()).await;
        match drained {
            Ok(()) => info!("all connections closed"),
            Err(_) => warn!(?limit, "shutdown limit reached with connections still open"),
        }
        Ok(())
    }
}

/// Background upkeep: drains metric samples into histograms, trims history by age and reclaims
/// idle channels, one channel lock at a time.
async fn upkeep(state: AppState) {
    let mut tick = tokio::time::interval(state.config.history.prune_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.metrics.run_upkeep();
        let registry = state.registry.clone();
        let reclaimed = tokio::task::spawn_blocking(move || registry.prune())
            .await
            .unwrap_or(0);
        if reclaimed > 0 {
            tracing::debug!(reclaimed, "reclaimed idle channels");
        }
    }
}
