//! Running totals of the figures the dashboard charts (publishes, deliveries, connections,
//! slow-consumer closes and resets by transport), kept beside the Prometheus series because a
//! `metrics` handle cannot be read back. Process-wide, like the Prometheus recorder; the hot paths
//! pay one relaxed atomic add on top of the Prometheus one.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{Counter, CounterFn};
use serde::Serialize;

use super::Transport;

/// One slot per [`Transport`], indexed by [`Transport::index`].
type PerTransport<T> = [T; Transport::ALL.len()];

struct Totals {
    published: AtomicU64,
    delivered: PerTransport<AtomicU64>,
    /// Open WebSocket and SSE connections (a gauge: goes up and down).
    connections: PerTransport<AtomicI64>,
    slow_consumer: PerTransport<AtomicU64>,
    resets: PerTransport<AtomicU64>,
}

static TOTALS: Totals = Totals {
    published: AtomicU64::new(0),
    delivered: [const { AtomicU64::new(0) }; Transport::ALL.len()],
    connections: [const { AtomicI64::new(0) }; Transport::ALL.len()],
    slow_consumer: [const { AtomicU64::new(0) }; Transport::ALL.len()],
    resets: [const { AtomicU64::new(0) }; Transport::ALL.len()],
};

/// The totals at one moment. Counters only grow; `connections` is a level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct TotalsSnapshot {
    /// Publishes accepted (duplicates and rejections are not counted).
    pub published: u64,
    pub delivered: PerTransport<u64>,
    pub connections: PerTransport<i64>,
    pub slow_consumer: PerTransport<u64>,
    pub resets: PerTransport<u64>,
}

/// Reads every total now.
pub(crate) fn snapshot() -> TotalsSnapshot {
    let load = |a: &PerTransport<AtomicU64>| a.each_ref().map(|c| c.load(Ordering::Relaxed));
    TotalsSnapshot {
        published: TOTALS.published.load(Ordering::Relaxed),
        delivered: load(&TOTALS.delivered),
        connections: TOTALS
            .connections
            .each_ref()
            .map(|c| c.load(Ordering::Relaxed)),
        slow_consumer: load(&TOTALS.slow_consumer),
        resets: load(&TOTALS.resets),
    }
}

/// Which total a teed counter adds to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Total {
    Published,
    Delivered(Transport),
    SlowConsumer(Transport),
    Reset(Transport),
}

impl Total {
    fn cell(self) -> &'static AtomicU64 {
        match self {
            Total::Published => &TOTALS.published,
            Total::Delivered(t) => &TOTALS.delivered[t.index()],
            Total::SlowConsumer(t) => &TOTALS.slow_consumer[t.index()],
            Total::Reset(t) => &TOTALS.resets[t.index()],
        }
    }
}

/// A counter that increments the Prometheus counter and the total.
pub(super) fn tee(counter: Counter, total: Total) -> Counter {
    Counter::from_arc(Arc::new(Tee {
        counter,
        total: total.cell(),
    }))
}

struct Tee {
    counter: Counter,
    total: &'static AtomicU64,
}

impl CounterFn for Tee {
    fn increment(&self, value: u64) {
        self.counter.increment(value);
        self.total.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.counter.absolute(value);
        self.total.fetch_max(value, Ordering::Relaxed);
    }
}

/// Counts one more (or, with `-1`, one fewer) open connection of `transport`.
pub(super) fn connection(transport: Transport, delta: i64) {
    TOTALS.connections[transport.index()].fetch_add(delta, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teed_counters_add_to_the_counter_and_to_their_own_total() {
        // The totals are process-wide and other tests count into them too: check the tee on a
        // cell of its own, and the mapping of each total to its cell, exactly.
        #[derive(Default)]
        struct Seen(AtomicU64);
        impl CounterFn for Seen {
            fn increment(&self, n: u64) {
                self.0.fetch_add(n, Ordering::Relaxed);
            }
            fn absolute(&self, n: u64) {
                self.0.store(n, Ordering::Relaxed);
            }
        }
        let seen = Arc::new(Seen::default());
        let cell: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let c = Counter::from_arc(Arc::new(Tee {
            counter: Counter::from_arc(seen.clone()),
            total: cell,
        }));
        c.increment(3);
        assert_eq!(seen.0.load(Ordering::Relaxed), 3);
        assert_eq!(cell.load(Ordering::Relaxed), 3);
        assert!(std::ptr::eq(
            Total::Delivered(Transport::Sse).cell(),
            &TOTALS.delivered[Transport::Sse.index()]
        ));
        assert!(std::ptr::eq(
            Total::Reset(Transport::Poll).cell(),
            &TOTALS.resets[Transport::Poll.index()]
        ));
        assert!(std::ptr::eq(
            Total::SlowConsumer(Transport::Ws).cell(),
            &TOTALS.slow_consumer[Transport::Ws.index()]
        ));
        assert!(std::ptr::eq(Total::Published.cell(), &TOTALS.published));
    }
}
