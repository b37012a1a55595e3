//! Metric names, the Prometheus recorder, and pre-resolved handles for the hot paths. Labels are
//! bounded: transport, outcome, reason; never a channel name or a client id. [`totals`] keeps the
//! dashboard's readable running totals beside them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::core::RegistryStats;
use crate::transport::admission::Listener;

pub(crate) mod totals;

use totals::Total;

pub(crate) const PUBLISH_TOTAL: &str = "understudy_publish_total";
pub(crate) const PUBLISH_SECONDS: &str = "understudy_publish_duration_seconds";
pub(crate) const DELIVERED_TOTAL: &str = "understudy_events_delivered_total";
pub(crate) const CONNECTIONS: &str = "understudy_connections";
pub(crate) const SLOW_CONSUMER_TOTAL: &str = "understudy_slow_consumer_closes_total";
pub(crate) const RESETS_TOTAL: &str = "understudy_resets_total";
pub(crate) const CHANNELS: &str = "understudy_channels";
pub(crate) const HISTORY_EVENTS: &str = "understudy_history_events";
pub(crate) const HISTORY_BYTES: &str = "understudy_history_bytes";
pub(crate) const ENGINE_UP: &str = "understudy_engine_up";
pub(crate) const LISTENER_CONNECTIONS: &str = "understudy_listener_connections";
pub(crate) const CONNECTION_CAP: &str = "understudy_connection_cap";
pub(crate) const CONNECTIONS_REFUSED_TOTAL: &str = "understudy_connections_refused_total";
pub(crate) const CONNECTIONS_TIMED_OUT_TOTAL: &str = "understudy_connections_timed_out_total";
pub(crate) const NEW_SUBSCRIBERS_TOTAL: &str = "understudy_new_subscribers_total";
pub(crate) const TENANT_PUBLISH_TOTAL: &str = "understudy_tenant_publish_total";
pub(crate) const TENANT_SUBSCRIBE_REFUSED_TOTAL: &str = "understudy_tenant_subscribe_refused_total";
pub(crate) const TENANT_CONNECTIONS: &str = "understudy_tenant_connections";
pub(crate) const TENANT_CHANNELS: &str = "understudy_tenant_channels";

/// Transports, as metric label values.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Ws,
    Sse,
    Poll,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Self::Ws, Self::Sse, Self::Poll];

    /// Position in [`Transport::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Self::Ws => 0,
            Self::Sse => 1,
            Self::Poll => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Sse => "sse",
            Self::Poll => "poll",
        }
    }
}

fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                &[
                    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0,
                ],
            )
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed by an embedding program; then ours only renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Handles resolved once, so the hot paths only touch atomics.
#[derive(Clone)]
pub struct Metrics {
    prometheus: PrometheusHandle,
    pub publish_accepted: Counter,
    pub publish_duplicate: Counter,
    pub publish_rejected: Counter,
    pub publish_seconds: Histogram,
    channels: Gauge,
    history_events: Gauge,
    history_bytes: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn install() -> Self {
        let prometheus = handle().clone();
        Self {
            prometheus,
            publish_accepted: totals::tee(
                counter!(PUBLISH_TOTAL, "outcome" => "accepted"),
                Total::Published,
            ),
            publish_duplicate: counter!(PUBLISH_TOTAL, "outcome" => "duplicate"),
            publish_rejected: counter!(PUBLISH_TOTAL, "outcome" => "rejected"),
            publish_seconds: histogram!(PUBLISH_SECONDS),
            channels: gauge!(CHANNELS),
            history_events: gauge!(HISTORY_EVENTS),
            history_bytes: gauge!(HISTORY_BYTES),
        }
    }

    pub fn delivered(transport: Transport) -> Counter {
        totals::tee(
            counter!(DELIVERED_TOTAL, "transport" => transport.as_str()),
            Total::Delivered(transport),
        )
    }

    pub fn slow_consumer(transport: Transport) -> Counter {
        totals::tee(
            counter!(SLOW_CONSUMER_TOTAL, "transport" => transport.as_str()),
            Total::SlowConsumer(transport),
        )
    }

    pub fn reset(transport: Transport, reason: &'static str) -> Counter {
        totals::tee(
            counter!(RESETS_TOTAL, "transport" => transport.as_str(), "reason" => reason),
            Total::Reset(transport),
        )
    }

    /// 1 while the shared engine is connected and every mirror is up to date (always 1 in
    /// memory mode).
    pub fn engine_up() -> Gauge {
        gauge!(ENGINE_UP)
    }

    /// Connections open on a listener (HTTP, SSE and WebSocket alike).
    pub fn listener_connections(listener: Listener) -> Gauge {
        gauge!(LISTENER_CONNECTIONS, "listener" => listener.as_str())
    }

    /// A listener's cap in force; `scope`: "listener" or "address" (0: no per-address cap).
    pub fn connection_cap(listener: Listener, scope: &'static str) -> Gauge {
        gauge!(CONNECTION_CAP, "listener" => listener.as_str(), "scope" => scope)
    }

    /// Connections refused at the accept; `reason`: listener_full or address_full.
    pub fn connection_refused(listener: Listener, reason: &'static str) -> Counter {
        counter!(CONNECTIONS_REFUSED_TOTAL, "listener" => listener.as_str(), "reason" => reason)
    }

    /// A new WebSocket or SSE subscriber passed through the admission rate; `outcome`:
    /// admitted or refused (answered `503 reconnect_later`).
    pub fn new_subscriber(transport: Transport, outcome: &'static str) -> Counter {
        counter!(NEW_SUBSCRIBERS_TOTAL, "transport" => transport.as_str(), "outcome" => outcome)
    }

    /// Connections closed for missing a deadline; `stage`: header, body or write.
    pub fn connection_timed_out(stage: &'static str) -> Counter {
        counter!(CONNECTIONS_TIMED_OUT_TOTAL, "stage" => stage)
    }

    /// Events a tenant's publishes carried past its scope and quotas (`outcome="accepted"`,
    /// one per channel), or publishes refused whole (`outcome="refused"`, `reason`: scope,
    /// rate, channels). `tenant` is [`crate::tenant::Tenants::metric_label`]: bounded. Added to
    /// at each scrape from the tenants' usage, not per publish.
    pub fn tenant_publish(tenant: &str, refused: Option<&'static str>) -> Counter {
        match refused {
            None => {
                counter!(TENANT_PUBLISH_TOTAL, "tenant" => tenant.to_owned(), "outcome" => "accepted")
            }
            Some(reason) => {
                counter!(TENANT_PUBLISH_TOTAL, "tenant" => tenant.to_owned(), "outcome" => "refused", "reason" => reason)
            }
        }
    }

    /// Subscribes refused for the channel's tenant (`reason`: scope, connections).
    pub fn tenant_subscribe_refused(tenant: &str, reason: &'static str) -> Counter {
        counter!(TENANT_SUBSCRIBE_REFUSED_TOTAL, "tenant" => tenant.to_owned(), "reason" => reason)
    }

    /// Subscriber connections holding one of a tenant's channels on this node (sampled at
    /// each scrape).
    pub fn tenant_connections(tenant: &str) -> Gauge {
        gauge!(TENANT_CONNECTIONS, "tenant" => tenant.to_owned())
    }

    /// Channels a tenant has on this node (sampled at each scrape).
    pub fn tenant_channels(tenant: &str) -> Gauge {
        gauge!(TENANT_CHANNELS, "tenant" => tenant.to_owned())
    }

    /// Counts a connection for as long as the guard lives.
    pub fn connection(transport: Transport) -> ConnectionGuard {
        let g = gauge!(CONNECTIONS, "transport" => transport.as_str());
        g.increment(1.0);
        totals::connection(transport, 1);
        ConnectionGuard(g, transport)
    }

    /// Drains histogram samples into their buckets. The exporter keeps every sample until a
    /// scrape or an upkeep: without this a node nobody scrapes grows by each sample it records
    /// (about 18 bytes per publish).
    pub fn run_upkeep(&self) {
        self.prometheus.run_upkeep();
    }

    /// Prometheus text, with the registry figures sampled now.
    pub fn render(&self, stats: RegistryStats) -> String {
        self.channels.set(stats.channels as f64);
        self.history_events.set(stats.history_events as f64);
        self.history_bytes.set(stats.history_bytes as f64);
        self.prometheus.render()
    }
}

pub struct ConnectionGuard(Gauge, Transport);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
        totals::connection(self.1, -1);
    }
}

/// A per-connection tally in front of a shared counter. Every connection adding to the same
/// shared counter on every delivery makes its cache line bounce between cores; the tally is
/// flushed every [`BatchedCounter::FLUSH_EVERY`] events, on its first add after the tally clock
/// ([`run_tally_clock`]) ticked, and on drop.
pub(crate) struct BatchedCounter {
    shared: Counter,
    pending: u64,
    /// [`TALLY_TICK`] at the last flush.
    flushed_at: u32,
}

/// Advanced once a second by [`run_tally_clock`]. Tallies compare it with the value at their
/// last flush: one shared read instead of a clock read on every delivery.
static TALLY_TICK: AtomicU32 = AtomicU32::new(0);

/// Ticks the tallies' clock until `cancel`.
pub(crate) async fn run_tally_clock(cancel: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => {
                tick();
            }
        }
    }
}

fn tick() {
    TALLY_TICK.fetch_add(1, Ordering::Relaxed);
}

impl BatchedCounter {
    pub(crate) const FLUSH_EVERY: u64 = 64;

    pub(crate) fn new(shared: Counter) -> Self {
        Self {
            shared,
            pending: 0,
            flushed_at: TALLY_TICK.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(&mut self, n: u64) {
        self.pending += n;
        if self.pending >= Self::FLUSH_EVERY
            || TALLY_TICK.load(Ordering::Relaxed) != self.flushed_at
        {
            self.flush();
        }
    }

    pub(crate) fn flush(&mut self) {
        if self.pending > 0 {
            self.shared.increment(self.pending);
            self.pending = 0;
        }
        self.flushed_at = TALLY_TICK.load(Ordering::Relaxed);
    }
}

impl Drop for BatchedCounter {
    fn drop(&mut self) {
        self.flush();
    }
}

thread_local! {
    /// Deliveries counted by the thread that made them, per transport: no connection keeps a
    /// counter of its own, and a publisher writing to many connections touches one.
    static DELIVERED: std::cell::RefCell<[Option<BatchedCounter>; 3]> =
        const { std::cell::RefCell::new([None, None, None]) };
}

/// Counts `n` events delivered over `transport`, by whichever task or publisher wrote them. A
/// thread's tally reaches the shared counter as a [`BatchedCounter`]'s does, except at the end of
/// a connection: what a thread counted last waits for its next delivery or the tally clock.
pub(crate) fn count_delivered(transport: Transport, n: u64) {
    DELIVERED.with_borrow_mut(|tallies| {
        tallies[transport.index()]
            .get_or_insert_with(|| BatchedCounter::new(Metrics::delivered(transport)))
            .add(n);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn deliveries_counted_on_a_thread_reach_the_totals_in_batches() {
        let poll = Transport::Poll.index();
        let before = totals::snapshot().delivered[poll];
        // A thread of its own, so its tally starts empty; a full batch is flushed at once.
        std::thread::spawn(|| count_delivered(Transport::Poll, BatchedCounter::FLUSH_EVERY))
            .join()
            .unwrap();
        // Other tests may count too: at least this thread's batch arrived.
        let after = totals::snapshot().delivered[poll];
        assert!(
            after - before >= BatchedCounter::FLUSH_EVERY,
            "{before} -> {after}"
        );
    }

    #[derive(Default)]
    struct Total(AtomicU64);

    impl metrics::CounterFn for Total {
        fn increment(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
        fn absolute(&self, n: u64) {
            self.0.store(n, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_tally_flushes_after_a_tick_every_64_and_on_drop() {
        let total = Arc::new(Total::default());
        let shown = || total.0.load(Ordering::Relaxed);
        let mut tally = BatchedCounter::new(Counter::from_arc(total.clone()));
        tally.add(1);
        tick();
        tally.add(1);
        assert_eq!(shown(), 2, "the first add after a tick flushes");
        tally.add(BatchedCounter::FLUSH_EVERY);
        assert_eq!(
            shown(),
            2 + BatchedCounter::FLUSH_EVERY,
            "a full batch flushes"
        );
        tally.add(1);
        drop(tally);
        assert_eq!(
            shown(),
            3 + BatchedCounter::FLUSH_EVERY,
            "dropping flushes the rest"
        );
    }
}
