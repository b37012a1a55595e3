//! The Redis engine: one sequence, one history and one fan-out per channel, shared by every node.
//!
//! - Publishing is one Lua script per publish ([`publish.lua`](redis/publish.lua)): it assigns
//!   the next seq, appends to the capped history, honours the idempotency key and publishes the
//!   event on the channel's pub/sub channel, atomically, so concurrent publishers on several
//!   nodes never produce a duplicate or skipped seq and pub/sub order is seq order.
//! - Each node mirrors, in its own registry, the channels its clients watch: it subscribes to
//!   their pub/sub channels once (not once per client), loads their history
//!   ([`load.lua`](redis/load.lua)) and applies arriving events in seq order. A gap (missed
//!   pub/sub messages, a reconnect) is filled from the Redis history before anything after it is
//!   delivered; a new epoch (Redis lost the data) restarts the mirror, and its clients resume and
//!   get the `reset` their positions call for. See [`ingest`].
//! - Every call has a deadline: when Redis cannot answer, a publish fails with
//!   `engine_unavailable` instead of hanging, and local subscribers keep their connections. A
//!   batch shares one deadline between its items. After a call goes unanswered, a breaker
//!   ([`guard`]) refuses publishes at once until Redis answers a probe, so no other caller waits
//!   out a deadline for the same fault.

mod guard;
mod ingest;
pub(crate) mod keys;
pub(crate) mod record;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::breaker::{Outcome, Policy, Signal};
use super::EngineError;
use crate::config::engine::RedisConfig;
use crate::core::event::now_ms;
use crate::core::{
    ChannelLimits, ChannelName, Epoch, Event, EventDraft, Installed, Published, Registry, Snapshot,
};
pub(crate) use guard::BreakerView;
pub(crate) use keys::Keys;

/// The share of the deadline a call must go unanswered to trip the breaker. Redis answers in well
/// under a millisecond, so half a deadline of silence is a fault, not a slow moment; a call a
/// batch's deadline cut short sooner is not counted.
const SILENCE: f64 = 0.5;

/// History and idempotency caps, in the units the scripts take.
#[derive(Debug, Clone, Copy)]
struct Caps {
    max_events: usize,
    max_age_ms: u64,
    id_window_ms: u64,
    /// Lifetime of a channel's keys after its last publish or its last watch: the longer of
    /// history age and idempotency window, plus the idle reclaim time.
    ttl_ms: u64,
}

impl Caps {
    fn new(limits: &ChannelLimits) -> Self {
        let max_age_ms = limits.history.max_age.as_millis() as u64;
        let id_window_ms = limits.idempotency.window.as_millis() as u64;
        Self {
            max_events: limits.history.max_events,
            max_age_ms,
            id_window_ms,
            ttl_ms: max_age_ms.max(id_window_ms) + limits.idle_reclaim.as_millis() as u64,
        }
    }
}

/// A request to the ingest task: subscribe to a channel's events, answer when Redis confirmed.
struct Want {
    channel: ChannelName,
    done: oneshot::Sender<Result<(), String>>,
}

pub struct RedisEngine {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    timeout: Duration,
    registry: Arc<Registry>,
    publish: Script,
    load: Script,
    wants: mpsc::Sender<Want>,
    /// Bumped when another node announces a change of the shared operator settings, and after
    /// every reconnect (a change may have been missed): readers reload them from Redis.
    control: watch::Sender<u64>,
    /// Canary results shared by the lease holder, as they arrive.
    canary: broadcast::Sender<Arc<str>>,
    /// The pub/sub connection is up and every mirror has been brought up to date.
    up: AtomicBool,
    /// Refuses publishes at once after a call went unanswered, until a probe is answered.
    guard: guard::Guard,
    /// Where this node's URL points, without credentials.
    display: String,
    /// This node, in leases and logs.
    node: String,
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine")
            .field("url", &self.display)
            .field("up", &self.is_up())
            .finish()
    }
}

impl RedisEngine {
    /// Starts the engine over a mirror registry. Redis need not be up yet: the connection is
    /// made lazily and retried; until then publishes answer `engine_unavailable`.
    pub fn start(
        config: &RedisConfig,
        registry: Arc<Registry>,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, EngineError> {
        let client = redis::Client::open(config.url.expose())
            .map_err(|e| EngineError::Unavailable(format!("engine.url: {e}")))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let (wants, wanted) = mpsc::channel(256);
        let engine = Arc::new(Self {
            client,
            conn,
            keys: Keys::new(&config.prefix),
            timeout: config.timeout,
            registry,
            publish: Script::new(include_str!("redis/publish.lua")),
            load: Script::new(include_str!("redis/load.lua")),
            wants,
            control: watch::channel(0).0,
            canary: broadcast::channel(64).0,
            up: AtomicBool::new(false),
            guard: guard::Guard::new(Policy::default()),
            display: config.display(),
            node: Epoch::random().to_string(),
        });
        tasks.spawn(guard::run_probes(engine.clone(), cancel.clone()));
        tasks.spawn(ingest::run(engine.clone(), wanted, cancel));
        Ok(engine)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The publish breaker's state.
    pub fn breaker(&self) -> BreakerView {
        self.guard.view()
    }

    /// The Redis URL without credentials.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// This node's id in the cluster.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Wakes when the shared operator settings may have changed.
    pub fn watch_control(&self) -> watch::Receiver<u64> {
        self.control.subscribe()
    }

    /// Canary results published by the node holding the canary lease.
    pub fn watch_canary(&self) -> broadcast::Receiver<Arc<str>> {
        self.canary.subscribe()
    }

    /// Publishes a message to every node.
    pub async fn publish_message(&self, channel: &str, message: &str) -> Result<(), EngineError> {
        let mut conn = self.conn.clone();
        self.bounded(
            "settings",
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query_async::<()>(&mut conn),
        )
        .await
    }

    fn control_changed(&self) {
        self.control.send_modify(|v| *v += 1);
    }

    /// Stores a value and announces the change to every node, in one script call.
    pub async fn announce(&self, key: &str, value: &str) -> Result<(), EngineError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(key, value)
            .ignore()
            .publish(self.keys.control(), key)
            .ignore();
        self.bounded("settings", pipe.query_async::<()>(&mut conn))
            .await
    }

    /// Reads a value stored with [`RedisEngine::announce`].
    pub async fn read_setting(&self, key: &str) -> Result<Option<String>, EngineError> {
        let mut conn = self.conn.clone();
        self.bounded(
            "settings",
            redis::cmd("GET").arg(key).query_async(&mut conn),
        )
        .await
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A command connection (multiplexed; cheap to clone).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The deadline of every Redis call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs a Redis call under the engine's deadline; a failure is counted under `op`.
    pub async fn bounded<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, EngineError> {
        self.bounded_until(op, None, call).await
    }

    /// [`RedisEngine::bounded`], cut short at `shared` (a batch's deadline) if that comes first.
    /// The breaker is told of a call that could not reach Redis, and of one that went unanswered
    /// for at least [`SILENCE`] of the deadline; a call the shared deadline cut short sooner
    /// proves nothing about Redis.
    async fn bounded_until<T>(
        &self,
        op: &'static str,
        shared: Option<Instant>,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, EngineError> {
        let started = Instant::now();
        let own = started + self.timeout;
        let until = shared.map_or(own, |at| at.min(own));
        let (failed, outcome) = match tokio::time::timeout_at(until, call).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => (describe(&e), Some(guard::outcome_of(&e))),
            Err(_) => {
                let silent = started.elapsed() >= self.timeout.mul_f64(SILENCE);
                let why = if until < own {
                    "the batch's deadline passed before Redis answered; the outcome is unknown, \
                     retry with the same id"
                        .to_string()
                } else {
                    format!("no answer within {} ms", self.timeout.as_millis())
                };
                (why, silent.then_some(Outcome::NoAnswer))
            }
        };
        crate::engine::metrics::EngineMetrics::engine_error(op).increment(1);
        // The pub/sub connection is the ingest's own: it reconnects it and reports `up`.
        if let Some(outcome) = outcome.filter(|_| op != "pubsub") {
            self.guard.signal(Signal::Call(outcome), &self.display);
        }
        Err(EngineError::Unavailable(failed))
    }

    /// One PING on the command connection, under the engine's deadline.
    async fn probe(&self) -> Outcome {
        let mut conn = self.conn.clone();
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.timeout, ping.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Outcome::Answered,
            Ok(Err(e)) => guard::outcome_of(&e),
            Err(_) => Outcome::NoAnswer,
        }
    }

    /// The caps in force (a configuration reload may change them).
    fn caps(&self) -> Caps {
        Caps::new(&self.registry.limits().channel)
    }

    /// Sequences the draft on every channel in one script call: all channels or none. Refused
    /// at once while the breaker is tripped or once `shared` (a batch's deadline) has passed.
    pub async fn publish_all(
        &self,
        names: &[ChannelName],
        draft: &EventDraft,
        shared: Option<Instant>,
    ) -> Result<Vec<Published>, EngineError> {
        if let Some(refused) = self.guard.refusal() {
            return Err(refused);
        }
        if shared.is_some_and(|at| at <= Instant::now()) {
            return Err(EngineError::DeadlinePassed);
        }
        let ts = now_ms();
        let caps = self.caps();
        let body = record::body(draft);
        let mut call = self.publish.prepare_invoke();
        for ch in names {
            call.key(self.keys.meta(ch))
                .key(self.keys.history(ch))
                .key(self.keys.id(ch, &draft.id));
        }
        call.arg(ts)
            .arg(&body)
            .arg(if draft.idempotent { "1" } else { "0" })
            .arg(caps.max_events)
            .arg(caps.max_age_ms)
            .arg(caps.ttl_ms)
            .arg(caps.id_window_ms);
        for ch in names {
            call.arg(Epoch::random().as_str()).arg(self.keys.events(ch));
        }
        let mut conn = self.conn.clone();
        let answers: Vec<(String, u64, u8)> = self
            .bounded_until("publish", shared, call.invoke_async(&mut conn))
            .await?;
        if answers.len() != names.len() {
            return Err(EngineError::Unavailable(
                "the publish script answered for the wrong number of channels".into(),
            ));
        }
        let now = Instant::now();
        let published = names
            .iter()
            .zip(answers)
            .map(|(ch, (epoch, seq, dup))| {
                let epoch = Epoch::from_client(&epoch);
                let event = (dup == 0).then(|| {
                    let ev = Arc::new(Event::build(
                        ch.clone(),
                        seq,
                        epoch.clone(),
                        draft,
                        draft.id.clone(),
                        ts,
                        now,
                    ));
                    // Local subscribers need not wait for the pub/sub round trip; if this node
                    // is behind on the channel, the ingest delivers it in order instead.
                    self.registry.apply(ev.clone());
                    ev
                });
                Published {
                    seq,
                    epoch,
                    id: draft.id.clone(),
                    duplicate: dup != 0,
                    event,
                }
            })
            .collect();
        Ok(published)
    }

    /// Makes this node mirror a channel: subscribe to its events, then load its history.
    pub async fn install(&self, name: &ChannelName) -> Result<(), EngineError> {
        let (done, confirmed) = oneshot::channel();
        let want = Want {
            channel: name.clone(),
            done,
        };
        let unavailable = |why: &str| EngineError::Unavailable(why.to_string());
        tokio::time::timeout(self.timeout, self.wants.send(want))
            .await
            .map_err(|_| unavailable("the subscription queue is full"))?
            .map_err(|_| unavailable("the engine is stopping"))?;
        tokio::time::timeout(self.timeout * 2, confirmed)
            .await
            .map_err(|_| unavailable("Redis did not confirm the subscription in time"))?
            .map_err(|_| unavailable("the engine is stopping"))?
            .map_err(|e| unavailable(&e))?;
        let snapshot = self.load(name, 0).await?;
        self.registry.install(name, snapshot)?;
        Ok(())
    }

    /// Brings an installed mirror up to Redis: the events after its head, or a restart when the
    /// epoch changed or history no longer joins up.
    async fn sync(&self, name: &ChannelName) -> Result<Installed, EngineError> {
        let Some(head) = self.registry.head_of(name) else {
            return Ok(Installed::Current);
        };
        let mut snapshot = self.load(name, head.seq).await?;
        if snapshot.epoch == head.epoch && snapshot.head < head.seq {
            // Redis went back in time under the same epoch (restored from an older snapshot):
            // its next seqs would repeat ones clients already hold. A new epoch makes every
            // client reset instead of dropping those events as duplicates.
            tracing::error!(channel = %name, redis_head = snapshot.head, node_head = head.seq, "Redis lost events without losing the epoch; starting a new epoch");
            self.rotate_epoch(name, &head.epoch).await?;
            snapshot = self.load(name, 0).await?;
        } else if snapshot.epoch != head.epoch && head.seq > 0 {
            snapshot = self.load(name, 0).await?;
        }
        Ok(self.registry.install(name, snapshot)?)
    }

    /// Replaces the channel's epoch (and drops its history), if it is still `old`.
    async fn rotate_epoch(&self, name: &ChannelName, old: &Epoch) -> Result<(), EngineError> {
        const ROTATE: &str = r"
            if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
              redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'seq', 0)
              redis.call('DEL', KEYS[2])
            end
            return 0";
        let mut conn = self.conn.clone();
        let script = Script::new(ROTATE);
        let mut call = script.prepare_invoke();
        call.key(self.keys.meta(name))
            .key(self.keys.history(name))
            .arg(old.as_str())
            .arg(Epoch::random().as_str());
        self.bounded("load", call.invoke_async::<i64>(&mut conn))
            .await?;
        Ok(())
    }

    /// The channel's epoch, head and history after `since`, in one atomic read.
    async fn load(&self, name: &ChannelName, since: u64) -> Result<Snapshot, EngineError> {
        let mut conn = self.conn.clone();
        let mut call = self.load.prepare_invoke();
        call.key(self.keys.meta(name))
            .key(self.keys.history(name))
            .arg(Epoch::random().as_str())
            .arg(self.caps().ttl_ms)
            .arg(since);
        let (epoch, head, members): (String, u64, Vec<Vec<u8>>) =
            self.bounded("load", call.invoke_async(&mut conn)).await?;
        let epoch = Epoch::from_client(&epoch);
        let events = members
            .iter()
            .map(|m| record::from_member(name, &epoch, m).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let contiguous = events
            .iter()
            .zip(events.iter().skip(1))
            .all(|(a, b)| a.seq + 1 == b.seq);
        if !contiguous || events.last().is_some_and(|e| e.seq != head) {
            return Err(EngineError::Unavailable(format!(
                "history of {name} in Redis is not contiguous up to seq {head}"
            )));
        }
        Ok(Snapshot {
            epoch,
            head,
            events,
        })
    }
}

/// A Redis error in words, never with the URL (which may hold a password).
fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "Redis timed out".into()
    } else if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
        "Redis is unreachable".into()
    } else {
        match e.code() {
            Some(code) => format!("Redis answered {code}"),
            None => format!("unexpected answer from Redis ({:?})", e.kind()),
        }
    }
}
