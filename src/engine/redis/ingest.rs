//! The ingest task: this node's one pub/sub connection to Redis. It subscribes to the events of
//! every channel the node mirrors, applies what arrives in seq order, fills gaps from the Redis
//! history, and after any reconnect resubscribes and brings every mirror up to date before it
//! reports the engine up again. It also keeps watched channels' keys alive and unsubscribes from
//! channels the node no longer holds.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{record, RedisEngine, Want};
use crate::core::{Applied, ChannelName};

/// How often the connection is checked, keys are kept alive and unused channels dropped.
const TICK: Duration = Duration::from_secs(1);
/// A subscription younger than this is kept even if its mirror is not installed yet.
const GRACE: Duration = Duration::from_secs(10);
/// Longest wait between reconnect attempts: a mirror is stale until its node reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Subscribe in chunks of this many channels after a reconnect.
const CHUNK: usize = 500;

/// Why the connected loop ended.
enum Ended {
    Cancelled,
    Lost(String),
}

pub(super) async fn run(
    engine: Arc<RedisEngine>,
    mut wants: mpsc::Receiver<Want>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    let mut reported_down = false;
    loop {
        match connect(&engine).await {
            Ok(pubsub) => {
                backoff = Duration::from_millis(50);
                let (sink, stream) = pubsub.split();
                let mut conn = Connected {
                    engine: &engine,
                    sink,
                    subscribed: HashMap::new(),
                    last_refresh: Instant::now(),
                };
                match conn.serve(stream, &mut wants, &cancel).await {
                    Ended::Cancelled => return,
                    Ended::Lost(why) => {
                        engine.up.store(false, Ordering::Relaxed);
                        warn!(redis = %engine.display, "engine connection lost: {why}; reconnecting");
                        reported_down = true;
                    }
                }
            }
            Err(why) => {
                if !reported_down {
                    warn!(redis = %engine.display, "engine unreachable: {why}; retrying");
                    reported_down = true;
                }
            }
        }
        // Refuse subscriptions while down, so callers answer at once instead of at the deadline.
        let until = Instant::now() + backoff;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(until) => break,
                Some(want) = wants.recv() => {
                    let _ = want.done.send(Err("Redis is unreachable".into()));
                }
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(engine: &RedisEngine) -> Result<redis::aio::PubSub, String> {
    match tokio::time::timeout(engine.timeout, engine.client.get_async_pubsub()).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(super::describe(&e)),
        Err(_) => Err("connect timed out".into()),
    }
}

struct Connected<'a> {
    engine: &'a RedisEngine,
    sink: PubSubSink,
    /// Pub/sub channel subscriptions, by channel, with when they were made.
    subscribed: HashMap<ChannelName, Instant>,
    last_refresh: Instant,
}

impl Connected<'_> {
    async fn serve(
        &mut self,
        mut stream: PubSubStream,
        wants: &mut mpsc::Receiver<Want>,
        cancel: &CancellationToken,
    ) -> Ended {
        if let Err(why) = self.recover().await {
            return Ended::Lost(why);
        }
        self.engine.up.store(true, Ordering::Relaxed);
        info!(redis = %self.engine.display, channels = self.subscribed.len(), "engine connected");
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                () = cancel.cancelled() => return Ended::Cancelled,
                msg = stream.next() => match msg {
                    Some(msg) => self.ingest(&msg).await,
                    None => Err("pub/sub connection closed".into()),
                },
                Some(want) = wants.recv() => {
                    let result = self.subscribe(std::slice::from_ref(&want.channel)).await;
                    let failed = result.clone().err();
                    let _ = want.done.send(result);
                    failed.map_or(Ok(()), Err)
                }
                _ = tick.tick() => self.upkeep().await,
            };
            if let Err(why) = step {
                return Ended::Lost(why);
            }
        }
    }

    /// After a (re)connect: subscribe to every mirrored channel, then bring each up to date.
    async fn recover(&mut self) -> Result<(), String> {
        self.engine
            .bounded(
                "pubsub",
                self.sink.subscribe(&[
                    self.engine.keys.control(),
                    self.engine.keys.canary_results(),
                ]),
            )
            .await
            .map_err(|e| e.to_string())?;
        let names = self.engine.registry.names();
        for chunk in names.chunks(CHUNK) {
            self.subscribe(chunk).await?;
        }
        for name in &names {
            self.engine.sync(name).await.map_err(|e| e.to_string())?;
        }
        // Settings may have changed while this node was away.
        self.engine.control_changed();
        Ok(())
    }

    async fn subscribe(&mut self, names: &[ChannelName]) -> Result<(), String> {
        let fresh: Vec<&ChannelName> = names
            .iter()
            .filter(|n| !self.subscribed.contains_key(*n))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let pubsub: Vec<String> = fresh.iter().map(|n| self.engine.keys.events(n)).collect();
        self.engine
            .bounded("pubsub", self.sink.subscribe(pubsub))
            .await
            .map_err(|e| e.to_string())?;
        let now = Instant::now();
        self.subscribed
            .extend(fresh.into_iter().map(|n| (n.clone(), now)));
        Ok(())
    }

    /// One event from Redis: applied in order, or the gap before it filled first.
    async fn ingest(&mut self, msg: &redis::Msg) -> Result<(), String> {
        let Some(ch) = self.engine.keys.channel_of_events(msg.get_channel_name()) else {
            let name = msg.get_channel_name();
            if name == self.engine.keys.control() {
                self.engine.control_changed();
            } else if name == self.engine.keys.canary_results() {
                if let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) {
                    let _ = self.engine.canary.send(Arc::from(text));
                }
            }
            return Ok(());
        };
        let applied = match record::from_message(&ch, msg.get_payload_bytes()) {
            Ok(ev) => self.engine.registry.apply(Arc::new(ev)),
            Err(e) => {
                warn!(channel = %ch, "{e}; reloading the channel from Redis");
                Some(Applied::Gap { head: 0 })
            }
        };
        match applied {
            None | Some(Applied::Applied | Applied::Stale) => Ok(()),
            Some(Applied::Gap { .. } | Applied::OtherEpoch) => {
                crate::engine::metrics::EngineMetrics::engine_resync().increment(1);
                self.engine
                    .sync(&ch)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Checks the connection, drops subscriptions of channels no longer held, keeps watched
    /// channels' keys alive.
    async fn upkeep(&mut self) -> Result<(), String> {
        self.engine
            .bounded("pubsub", self.sink.ping::<redis::Value>())
            .await
            .map_err(|e| e.to_string())?;
        let now = Instant::now();
        let held = &self.engine.registry;
        let gone: Vec<ChannelName> = self
            .subscribed
            .iter()
            .filter(|(n, since)| now - **since > GRACE && held.head_of(n).is_none())
            .map(|(n, _)| n.clone())
            .collect();
        if !gone.is_empty() {
            let pubsub: Vec<String> = gone.iter().map(|n| self.engine.keys.events(n)).collect();
            self.engine
                .bounded("pubsub", self.sink.unsubscribe(pubsub))
                .await
                .map_err(|e| e.to_string())?;
            for n in &gone {
                self.subscribed.remove(n);
            }
        }
        let ttl = Duration::from_millis(self.engine.caps().ttl_ms);
        if now - self.last_refresh > ttl / 3 {
            self.last_refresh = now;
            self.refresh(ttl).await?;
        }
        Ok(())
    }

    /// Extends the keys' lifetime of every channel a client here still watches, so a quiet
    /// channel with subscribers keeps its epoch.
    async fn refresh(&self, ttl: Duration) -> Result<(), String> {
        let names = self.engine.registry.names();
        for chunk in names.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for n in chunk {
                pipe.pexpire(self.engine.keys.meta(n), ttl.as_millis() as i64)
                    .ignore()
                    .pexpire(self.engine.keys.history(n), ttl.as_millis() as i64)
                    .ignore();
            }
            let mut conn = self.engine.connection();
            self.engine
                .bounded("keepalive", pipe.query_async::<()>(&mut conn))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
