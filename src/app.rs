//! Wires the core, the transports and the admin side together; owns the listeners, the background
//! upkeep and the shutdown sequence.
//!
//! # Layout
//! - `reload`: re-reading the configuration at run time (SIGHUP, `POST /admin/reload`).

pub mod reload;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::{AdminTokens, Apps, SubscriberAuth};
use crate::config::{Config, ConfigSource, EngineConfig};
use crate::core::history::HistoryLimits;
use crate::core::idempotency::IdempotencyLimits;
use crate::core::{ChannelLimits, Registry, RegistryLimits};
use crate::engine::redis::RedisEngine;
use crate::engine::{Engine, EngineError};
use crate::failover::{Failover, SelfPath};
use crate::lifecycle::Lifecycle;
use crate::ops::audit::{Audit, AuditAction, AuditEntry};
use crate::ops::maintenance::Maintenance;
use crate::ops::{self, Metrics};
use crate::tenant::{Owners, TenantConfig, Tenants};
use crate::transport;
use crate::transport::admission::Admission;
use crate::transport::control::Control;
pub use crate::transport::state::{Admissions, AppState, Handles};
use crate::upstream::BuildError;

pub(crate) mod serve;

impl AppState {
    /// Builds the state and starts the vendor side (lanes, canaries, the failover driver) on
    /// `background`, which outlives the connections and stops last.
    pub fn new(config: Config, background: &Background) -> Result<Self, StartError> {
        // First: what starts below may set a gauge at once, which is lost without a recorder.
        let metrics = Metrics::install();
        let limits = registry_limits(&config);
        let failover = Failover::build(
            &config.vendors.vendors,
            config.vendors.failover.clone(),
            &background.tasks,
            background.cancel.clone(),
        )?;
        failover.start_tenants(tenant_vendors(&config), &config.vendors.failover)?;
        let (audit, _writer) = Audit::start(config.audit.clone());
        let engine = match &config.engine {
            EngineConfig::Memory => Engine::memory(Arc::new(Registry::new(limits))),
            EngineConfig::Redis(redis) => {
                let registry = Arc::new(Registry::mirror(limits));
                let shared = RedisEngine::start(
                    redis,
                    registry.clone(),
                    &background.tasks,
                    background.cancel.clone(),
                )?;
                info!(redis = %shared.display(), node = shared.node(), "engine: redis");
                Engine::shared(registry, shared)
            }
        };
        let tenants = Arc::new(ArcSwap::from_pointee(tenants(&config)));
        engine
            .registry()
            .set_owners(Arc::new(Owners(tenants.clone())));
        let state = Self::from_handles(Handles {
            maintenance: Maintenance::default(),
            control: Arc::new(Control::default()),
            audit,
            failover,
            engine: Arc::new(engine),
            tenants,
            usage: Arc::default(),
            subscribers: Arc::new(ArcSwap::from_pointee(subscriber_auth(&config))),
            admins: Arc::new(ArcSwap::from_pointee(admin_tokens(&config))),
            apps: Arc::new(ArcSwap::from_pointee(Apps::new(&config.apps))),
            ably_nonces: Arc::default(),
            origin: Arc::default(),
            lifecycle: Lifecycle::new(config.server.reconnect_jitter, config.server.drain_window),
            metrics,
            // After the recorder is installed: it sets the caps' gauges.
            admission: Admissions::new(&config.server.connections),
            reloader: Arc::new(reload::ConfigReloader),
            config: Arc::new(ArcSwap::from_pointee(config)),
        });
        state.refresh_self_path();
        Ok(state)
    }

    /// Tells the route whether understudy's own broadcast can take clients: not when neither
    /// WebSocket nor SSE is served (`subscribers.transports`). Then the route is `poll` unless a
    /// vendor is healthy. Called at start and on every reload.
    ///
    /// A draining node does not count as unavailable: its clients are told to reconnect to
    /// another node, whose own broadcast serves them; a `poll` route pushed on the way out would
    /// move every client of the node down the ladder during each deploy.
    pub fn refresh_self_path(&self) {
        let on = self.config.load().subscribers.transports;
        let available = on.ws || on.sse;
        self.failover.set_self_path(if available {
            SelfPath::Available
        } else {
            SelfPath::Unavailable
        });
    }
}

/// Why the node's state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Vendor(#[from] BuildError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn registry_limits(config: &Config) -> RegistryLimits {
    RegistryLimits {
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
    }
}

pub(crate) fn tenants(config: &Config) -> Tenants {
    Tenants::new(
        TenantConfig::default_tenant(config.auth.publisher_keys.clone(), config.tenant_defaults),
        &config.tenants,
    )
}

/// Every tenant with vendors of its own.
pub(crate) fn tenant_vendors(config: &Config) -> Vec<crate::failover::TenantVendors> {
    (config.tenants.iter())
        .filter_map(|t| {
            let vendors = t.vendors.as_ref().filter(|v| !v.is_empty())?;
            Some(crate::failover::TenantVendors {
                tenant: t.id.clone(),
                vendors: crate::upstream::own_vendors(&t.id, vendors),
            })
        })
        .collect()
}

fn subscriber_auth(config: &Config) -> SubscriberAuth {
    SubscriberAuth::new(config.auth.subscribe, &config.auth.subscriber_secret)
}

fn admin_tokens(config: &Config) -> AdminTokens {
    AdminTokens::new(config.auth.admin_tokens.clone())
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
    pub fn build(config: Config, listeners: Listeners) -> Result<Self, StartError> {
        for warning in config.uses_dev_credentials() {
            warn!("{warning}: anyone who has read the docs can use it; set your own before exposing this server");
        }
        if let Some(warning) = config.public_vendor_channels() {
            warn!("{warning}");
        }
        let background = Background::default();
        Ok(Self {
            state: AppState::new(config, &background)?,
            listeners,
            background,
        })
    }

    /// Reloads (SIGHUP, `POST /admin/reload`) read `source` again: the file and environment the
    /// configuration was loaded from. Without it a reload is refused.
    pub fn with_source(self, source: ConfigSource) -> Self {
        self.state.origin.set_source(source);
        self
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
            state.clone(),
            state.failover.watch_routes(),
            lifecycle.goodbye_token(),
            background.cancel.clone(),
        ));
        background.tasks.spawn(ops::maintenance::run(
            state.maintenance.clone(),
            state.failover.clone(),
            state.audit.clone(),
            background.cancel.clone(),
        ));
        background
            .tasks
            .spawn(ops::cluster::run(state.clone(), background.cancel.clone()));
        background.tasks.spawn(ops::cluster::run_canary_lease(
            state.clone(),
            background.cancel.clone(),
        ));
        background
            .tasks
            .spawn(ops::metrics::run_tally_clock(background.cancel.clone()));
        background.tasks.spawn(ops::audit_feed::run(
            state.failover.watch_status(),
            state.audit.clone(),
            background.cancel.clone(),
        ));
        // The listeners keep answering while connections leave (readiness says 503, new streams
        // are refused); they close once the connections are gone or at the limit.
        let close_listeners = CancellationToken::new();
        let gate = |admission: &Arc<Admission>| serve::Gate {
            admission: admission.clone(),
            config: state.config.clone(),
        };
        let public = tokio::spawn(serve::serve(
            listeners.public,
            serve::Answer {
                router: transport::router(state.clone()),
                publish: Some(state.clone()),
            },
            gate(&state.admission.public),
            close_listeners.clone(),
        ));
        let admin = tokio::spawn(serve::serve(
            listeners.admin,
            serve::Answer {
                router: ops::admin::router(state.clone()),
                publish: None,
            },
            gate(&state.admission.admin),
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
        let limit = state.config.load().server.shutdown_timeout;
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
/// idle channels, one channel lock at a time. Follows `history.prune_interval_ms` across reloads.
async fn upkeep(state: AppState) {
    let every = |state: &AppState| state.config.load().history.prune_interval;
    let mut period = every(&state);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if every(&state) != period {
            period = every(&state);
            tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        state.metrics.run_upkeep();
        crate::ops::metrics::Metrics::engine_up().set(if state.engine.is_up() { 1.0 } else { 0.0 });
        let registry = state.engine.registry().clone();
        let reclaimed = tokio::task::spawn_blocking(move || registry.prune())
            .await
            .unwrap_or(0);
        if reclaimed > 0 {
            tracing::debug!(reclaimed, "reclaimed idle channels");
        }
    }
}
