//! The engine: where channels are sequenced, their history kept and their events fanned out.
//!
//! Two implementations behind one type. `memory` is this node's [`Registry`], which sequences
//! its own channels. `redis` shares sequencing, history and fan-out between every node pointed at
//! the same Redis ([`redis::RedisEngine`]); this node's registry then mirrors the channels its
//! clients watch, and the transports subscribe and read from that mirror exactly as in memory
//! mode, so resume, replay, slow-consumer handling and long polls behave the same on both.

pub(crate) mod breaker;
pub(crate) mod metrics;
pub(crate) mod redis;

use std::sync::Arc;

use tokio::time::Instant;

use crate::core::{
    ChannelName, CoreError, EventDraft, Position, Published, Read, ReadFrom, Registry, Subscription,
};

/// What an engine call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The shared engine could not be reached in time. Nothing was published.
    #[error("the shared engine (Redis) did not answer: {0}; nothing was published or read, retry in a moment")]
    Unavailable(String),
    /// The breaker is tripped: the call was refused without trying Redis.
    #[error("the shared engine (Redis) stopped answering {for_ms} ms ago; publishes are refused at once until it answers again; nothing was published, retry in a moment")]
    Tripped { for_ms: u64 },
    /// A batch's deadline passed before this item was tried.
    #[error("the batch's deadline passed before this event was published; nothing was published for it, retry it")]
    DeadlinePassed,
}

/// What a client is told to wait, in seconds (`Retry-After`), after `engine_unavailable`: the
/// breaker probes Redis several times a second, so publishes can resume within it.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Channels, sequencing, history and fan-out, local or shared.
pub struct Engine {
    registry: Arc<Registry>,
    shared: Option<Arc<redis::RedisEngine>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("kind", &self.kind())
            .field("stats", &self.registry.stats())
            .finish()
    }
}

/// How often a call retries after installing a mirror that was reclaimed again before use.
const INSTALL_ATTEMPTS: usize = 3;

impl Engine {
    /// The memory engine: this node sequences its own channels.
    pub fn memory(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            shared: None,
        }
    }

    /// The Redis engine, over a mirror registry.
    pub fn shared(registry: Arc<Registry>, redis: Arc<redis::RedisEngine>) -> Self {
        Self {
            registry,
            shared: Some(redis),
        }
    }

    /// `"memory"` or `"redis"`.
    pub fn kind(&self) -> &'static str {
        if self.shared.is_some() {
            "redis"
        } else {
            "memory"
        }
    }

    /// This node's channels: the channels themselves in memory mode, the mirrors in Redis mode.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The Redis engine, when shared.
    pub fn redis(&self) -> Option<&Arc<redis::RedisEngine>> {
        self.shared.as_ref()
    }

    /// Whether the engine can take publishes now (always, in memory mode).
    pub fn is_up(&self) -> bool {
        self.shared.as_ref().is_none_or(|r| r.is_up())
    }

    /// Sequences the draft on every channel (all or none refused up front) and fans it out.
    /// `shared` is a deadline several calls share (a batch's, from [`Engine::batch_deadline`]):
    /// no call outlasts it, and none starts after it.
    pub async fn publish_all(
        &self,
        names: &[ChannelName],
        draft: &EventDraft,
        shared: Option<Instant>,
    ) -> Result<Vec<Published>, EngineError> {
        match &self.shared {
            None => Ok(self.registry.publish_all(names, draft)?),
            Some(redis) => redis.publish_all(names, draft, shared).await,
        }
    }

    /// The one deadline of a batch starting now: the engine's single-call deadline, so a whole
    /// batch never holds its caller longer than one publish could. `None` in memory mode, which
    /// never waits.
    pub fn batch_deadline(&self) -> Option<Instant> {
        self.shared.as_ref().map(|r| Instant::now() + r.timeout())
    }

    /// Joins the live feed and answers the position in one step.
    pub async fn subscribe(
        &self,
        name: &ChannelName,
        since: Option<&Position>,
    ) -> Result<Subscription, EngineError> {
        self.mirrored(name, || self.registry.subscribe(name, since))
            .await
    }

    /// Reads events for a poll; see [`Registry::read`].
    pub async fn read(
        &self,
        name: &ChannelName,
        from: &ReadFrom,
        limit: usize,
        watch: bool,
    ) -> Result<Read, EngineError> {
        self.mirrored(name, || self.registry.read(name, from, limit, watch))
            .await
    }

    /// Runs `op` on the registry, installing the channel's mirror first when it is missing.
    async fn mirrored<T>(
        &self,
        name: &ChannelName,
        op: impl Fn() -> Result<T, CoreError>,
    ) -> Result<T, EngineError> {
        for _ in 0..INSTALL_ATTEMPTS {
            match op() {
                Err(CoreError::NotMirrored(_)) => {}
                other => return Ok(other?),
            }
            let Some(redis) = &self.shared else {
                // Only a mirror registry answers NotMirrored, and only the Redis engine has one.
                return Err(CoreError::NotMirrored(name.to_string()).into());
            };
            redis.install(name).await?;
        }
        Err(EngineError::Unavailable(format!(
            "channel {name} could not be loaded"
        )))
    }
}
