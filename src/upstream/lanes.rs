//! Delivery lanes: per vendor, a bounded queue per [`Priority`] and a bounded number of
//! in-flight requests per priority, so nothing on the publish path ever waits on a vendor.
//!
//! - [`Lanes::enqueue`] is synchronous: it takes a short lock, queues the event (shedding per
//!   the policy in `queue`), wakes the lane and returns. It never awaits and never blocks on I/O.
//! - Within each priority the tenants take turns, and a full queue sheds from the tenant holding
//!   the most: one tenant's flood delays another's next event by at most one request and sheds
//!   only its own events.
//! - Each priority has its own dispatcher task and semaphore: a hung vendor holds at most
//!   `realtime_in_flight` + `bulk_in_flight` requests, and a stuck realtime lane never takes a
//!   bulk slot (or the other way round).
//! - Every attempt runs under `request_timeout` (a `tokio::time` deadline, whatever the
//!   adapter does). A failed attempt is retried at most once, only when the error allows it and
//!   the global [`RetryBudget`] has a token. Ably retries resend the same message `id`.
//! - Every attempt is reported to the failover driver as an
//!   [`Observation`](crate::upstream::observation::Observation) (`try_send`: a full inbox loses the
//!   observation, counted, never blocks).
//!
//! # Layout
//! - `queue`: the pure bounded queues and the shedding order; `queue/turns`: a queue per tenant
//!   within each priority and the turns the tenants take.
//! - `budget`: the global retry budget.
//! - `dispatch`: the dispatcher task and one delivery (attempt, retry, report).
//! - `stats`: counters, metrics, [`LaneStats`]; `stats/tenants`: the same per tenant, with a
//!   bounded label.

mod budget;
mod dispatch;
mod queue;
mod stats;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use budget::{RetryBudget, RetryBudgetConfig};
pub use queue::QueueLimits;
pub use stats::{DropReason, LaneStats, PriorityStats, TenantLaneStats};

use crate::tenant::id::TenantId;
use crate::upstream::observation::Observation;
use crate::upstream::{OutboundEvent, Priority, Vendor};

/// Settings of one vendor's lanes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneConfig {
    /// Events the realtime queue holds. Default 1024.
    pub realtime_queue: usize,
    /// Events the bulk queue holds. Default 1024.
    pub bulk_queue: usize,
    /// Frame bytes both queues hold together. Default 16 MiB.
    pub max_queued_bytes: usize,
    /// Events older than this are dropped instead of sent. Default 30 s.
    pub max_age: Duration,
    /// Concurrent requests of the realtime lane. Default 8.
    pub realtime_in_flight: usize,
    /// Concurrent requests of the bulk lane. Default 2.
    pub bulk_in_flight: usize,
    /// Deadline of one attempt, answer included. Default 2 s.
    pub request_timeout: Duration,
    /// Pause before the single retry. Default 50 ms.
    pub retry_backoff: Duration,
}

impl Default for LaneConfig {
    fn default() -> Self {
        LaneConfig {
            realtime_queue: 1024,
            bulk_queue: 1024,
            max_queued_bytes: 16 * 1024 * 1024,
            max_age: Duration::from_secs(30),
            realtime_in_flight: 8,
            bulk_in_flight: 2,
            request_timeout: Duration::from_secs(2),
            retry_backoff: Duration::from_millis(50),
        }
    }
}

impl LaneConfig {
    fn limits(&self) -> QueueLimits {
        QueueLimits {
            realtime_events: self.realtime_queue,
            bulk_events: self.bulk_queue,
            bytes: self.max_queued_bytes,
            max_age: self.max_age,
        }
    }

    fn in_flight(&self, priority: Priority) -> usize {
        match priority {
            Priority::Realtime => self.realtime_in_flight,
            Priority::Bulk => self.bulk_in_flight,
        }
    }
}

/// What [`Lanes::enqueue`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued; `shed` older events were dropped to make room.
    Queued { shed: usize },
    /// Not queued.
    Dropped(DropReason),
}

/// One vendor's lanes. Cheap to clone.
#[derive(Clone)]
pub struct Lanes {
    shared: Arc<Shared>,
}

/// State shared by the handle, the dispatchers and the deliveries.
pub(crate) struct Shared {
    /// Index of the vendor in the configured priority order (observations carry it).
    pub(crate) index: usize,
    pub(crate) vendor: Arc<dyn Vendor>,
    pub(crate) config: LaneConfig,
    /// Both queues. Held only for short, synchronous sections; never across an `.await`.
    pub(crate) queues: Mutex<queue::Queues>,
    /// Wakes a priority's dispatcher: an event was queued or a channel stopped being busy.
    pub(crate) wake: [Notify; 2],
    /// In-flight slots per priority (a dispatcher holds one while it waits for a batch).
    pub(crate) slots: [Arc<Semaphore>; 2],
    /// Requests in flight per priority (deliveries between take and release).
    pub(crate) in_flight: [AtomicUsize; 2],
    pub(crate) budget: Arc<RetryBudget>,
    pub(crate) observations: mpsc::Sender<Observation>,
    pub(crate) counters: stats::Counters,
    pub(crate) cancel: CancellationToken,
}

impl Lanes {
    /// Starts the two dispatchers of `vendor` (index `index` in priority order) on `tasks`.
    /// They stop when `cancel` fires; deliveries in flight finish within their deadline.
    pub fn start(
        index: usize,
        vendor: Arc<dyn Vendor>,
        config: LaneConfig,
        budget: Arc<RetryBudget>,
        observations: mpsc::Sender<Observation>,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Lanes {
        let shared = Arc::new(Shared {
            index,
            counters: stats::Counters::new(vendor.name()),
            vendor,
            queues: Mutex::new(queue::Queues::new(config.limits())),
            wake: [Notify::new(), Notify::new()],
            slots: Priority::ALL.map(|p| Arc::new(Semaphore::new(config.in_flight(p)))),
            in_flight: [AtomicUsize::new(0), AtomicUsize::new(0)],
            config,
            budget,
            observations,
            cancel,
        });
        for priority in Priority::ALL {
            let span = tracing::info_span!("vendor_lane", vendor = %shared.vendor.name(), priority = priority.as_str());
            tasks.spawn(dispatch::run(shared.clone(), priority, tasks.clone()).instrument(span));
        }
        Lanes { shared }
    }

    /// Queues `event` for delivery. Synchronous and non-blocking: takes the queue lock for a
    /// few hundred nanoseconds and returns.
    pub fn enqueue(&self, event: OutboundEvent) -> Enqueued {
        let s = &self.shared;
        let priority = event.priority;
        let tenant = event.tenant.clone();
        if s.cancel.is_cancelled() {
            s.counters
                .dropped_one(&tenant, priority, DropReason::Closed);
            return Enqueued::Dropped(DropReason::Closed);
        }
        if s.vendor.check(&event).is_err() {
            s.counters
                .dropped_one(&tenant, priority, DropReason::Rejected);
            return Enqueued::Dropped(DropReason::Rejected);
        }
        let pushed = s.queues.lock().push(event, Instant::now());
        let shed = match pushed {
            Ok(shed) => shed,
            Err(reason) => {
                s.counters.dropped_one(&tenant, priority, reason);
                return Enqueued::Dropped(reason);
            }
        };
        for e in &shed {
            s.counters.dropped_one(&e.tenant, e.priority, e.reason);
        }
        s.counters.enqueued(&tenant, priority);
        s.wake[priority.index()].notify_one();
        Enqueued::Queued { shed: shed.len() }
    }

    /// The vendor these lanes deliver to.
    pub fn vendor(&self) -> &Arc<dyn Vendor> {
        &self.shared.vendor
    }

    /// Counters and current depths.
    pub fn stats(&self) -> LaneStats {
        let s = &self.shared;
        let (queued, bytes, by_tenant) = {
            let q = s.queues.lock();
            let by_tenant: Vec<(TenantId, usize)> = Priority::ALL
                .iter()
                .flat_map(|p| q.tenant_lens(*p))
                .map(|(t, n)| (t.clone(), n))
                .collect();
            (
                [q.len(Priority::Realtime), q.len(Priority::Bulk)],
                q.bytes(),
                by_tenant,
            )
        };
        let in_flight = Priority::ALL.map(|p| s.in_flight[p.index()].load(Ordering::Relaxed));
        s.counters.snapshot(
            by_tenant.iter().map(|(t, n)| (t, *n)),
            queued,
            bytes,
            in_flight,
        )
    }
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("vendor", &self.shared.vendor.name())
            .field("index", &self.shared.index)
            .finish()
    }
}

#[cfg(test)]
mod tests;
