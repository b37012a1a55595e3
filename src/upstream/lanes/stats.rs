//! Counters of one vendor's lanes: lock-free atomics read by [`super::Lanes::stats`], and the
//! same numbers as Prometheus metrics (registered once per vendor, so the hot path never builds
//! label sets).
//!
//! Metrics (labels `vendor`, `priority`, plus the one named):
//! `understudy_vendor_enqueued_total`, `understudy_vendor_delivered_total`,
//! `understudy_vendor_dropped_total{reason}`, `understudy_vendor_failed_total{class}` (events
//! whose delivery failed for good), `understudy_vendor_requests_total{outcome}` (`ok` or an
//! error class), `understudy_vendor_request_seconds` (histogram),
//! `understudy_vendor_retries_total{outcome="attempted"|"denied"}`; per tenant, see `tenants`.

mod tenants;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Histogram};
use serde::Serialize;

use crate::tenant::id::TenantId;
use crate::upstream::{ErrorClass, OutboundEvent, Priority};

pub use tenants::TenantLaneStats;

/// Why an event left a queue without being delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Its priority queue was at its event limit (the oldest of that priority is shed).
    QueueFull,
    /// The vendor's byte limit was reached (oldest bulk shed first, then oldest realtime).
    MemoryFull,
    /// It waited longer than `max_age`.
    Expired,
    /// The vendor cannot take it (too large, bad channel name): refused at enqueue.
    Rejected,
    /// The lanes were shut down.
    Closed,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::QueueFull,
        DropReason::MemoryFull,
        DropReason::Expired,
        DropReason::Rejected,
        DropReason::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::MemoryFull => "memory_full",
            DropReason::Expired => "expired",
            DropReason::Rejected => "rejected",
            DropReason::Closed => "closed",
        }
    }

    fn index(self) -> usize {
        match self {
            DropReason::QueueFull => 0,
            DropReason::MemoryFull => 1,
            DropReason::Expired => 2,
            DropReason::Rejected => 3,
            DropReason::Closed => 4,
        }
    }
}

/// One priority's counters and metric handles.
#[derive(Debug)]
struct PriorityCounters {
    enqueued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: [AtomicU64; 5],
    m_enqueued: Counter,
    m_delivered: Counter,
    m_dropped: [Counter; 5],
    m_failed: [Counter; ErrorClass::ALL.len()],
    m_requests_ok: Counter,
    m_requests_err: [Counter; ErrorClass::ALL.len()],
    m_latency: Histogram,
}

impl PriorityCounters {
    fn new(vendor: &str, priority: Priority) -> Self {
        let labels = |extra: Option<(&'static str, &'static str)>| {
            let mut l = vec![
                metrics::Label::new("vendor", vendor.to_owned()),
                metrics::Label::new("priority", priority.as_str()),
            ];
            if let Some((k, v)) = extra {
                l.push(metrics::Label::new(k, v));
            }
            l
        };
        PriorityCounters {
            enqueued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: Default::default(),
            m_enqueued: metrics::counter!("understudy_vendor_enqueued_total", labels(None)),
            m_delivered: metrics::counter!("understudy_vendor_delivered_total", labels(None)),
            m_dropped: DropReason::ALL.map(|r| {
                metrics::counter!(
                    "understudy_vendor_dropped_total",
                    labels(Some(("reason", r.as_str())))
                )
            }),
            m_failed: ErrorClass::ALL.map(|c| {
                metrics::counter!(
                    "understudy_vendor_failed_total",
                    labels(Some(("class", c.as_str())))
                )
            }),
            m_requests_ok: metrics::counter!(
                "understudy_vendor_requests_total",
                labels(Some(("outcome", "ok")))
            ),
            m_requests_err: ErrorClass::ALL.map(|c| {
                metrics::counter!(
                    "understudy_vendor_requests_total",
                    labels(Some(("outcome", c.as_str())))
                )
            }),
            m_latency: metrics::histogram!("understudy_vendor_request_seconds", labels(None)),
        }
    }
}

/// Every counter of one vendor's lanes.
#[derive(Debug)]
pub(crate) struct Counters {
    priorities: [PriorityCounters; 2],
    retries: AtomicU64,
    retries_denied: AtomicU64,
    failed_by_class: [AtomicU64; ErrorClass::ALL.len()],
    observations_lost: AtomicU64,
    tenants: tenants::TenantCounters,
    m_retries: Counter,
    m_retries_denied: Counter,
}

fn class_index(class: ErrorClass) -> usize {
    ErrorClass::ALL
        .iter()
        .position(|c| *c == class)
        .unwrap_or(0)
}

impl Counters {
    pub(crate) fn new(vendor: &str) -> Self {
        let retry = |outcome: &'static str| metrics::counter!("understudy_vendor_retries_total", "vendor" => vendor.to_owned(), "outcome" => outcome);
        Counters {
            priorities: [
                PriorityCounters::new(vendor, Priority::Realtime),
                PriorityCounters::new(vendor, Priority::Bulk),
            ],
            retries: AtomicU64::new(0),
            retries_denied: AtomicU64::new(0),
            failed_by_class: Default::default(),
            observations_lost: AtomicU64::new(0),
            tenants: tenants::TenantCounters::new(vendor),
            m_retries: retry("attempted"),
            m_retries_denied: retry("denied"),
        }
    }

    fn of(&self, priority: Priority) -> &PriorityCounters {
        &self.priorities[priority.index()]
    }

    pub(crate) fn enqueued(&self, tenant: &TenantId, priority: Priority) {
        self.tenants.enqueued(tenant, priority);
        let p = self.of(priority);
        p.enqueued.fetch_add(1, Ordering::Relaxed);
        p.m_enqueued.increment(1);
    }

    /// One event of `tenant` dropped.
    pub(crate) fn dropped_one(&self, tenant: &TenantId, priority: Priority, reason: DropReason) {
        self.tenants.dropped(tenant, priority, reason);
        self.dropped(priority, reason, 1);
    }

    /// Each of `tenants` lost one event.
    pub(crate) fn dropped_each(
        &self,
        tenants: &[TenantId],
        priority: Priority,
        reason: DropReason,
    ) {
        for tenant in tenants {
            self.dropped_one(tenant, priority, reason);
        }
    }

    fn dropped(&self, priority: Priority, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        let p = self.of(priority);
        p.dropped[reason.index()].fetch_add(n, Ordering::Relaxed);
        p.m_dropped[reason.index()].increment(n);
    }

    pub(crate) fn delivered(&self, priority: Priority, batch: &[OutboundEvent]) {
        let p = self.of(priority);
        p.delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
        p.m_delivered.increment(batch.len() as u64);
        for event in batch {
            self.tenants.delivered(&event.tenant, priority, 1);
        }
    }

    pub(crate) fn failed(&self, priority: Priority, class: ErrorClass, n: u64) {
        let p = self.of(priority);
        p.failed.fetch_add(n, Ordering::Relaxed);
        p.m_failed[class_index(class)].increment(n);
        self.failed_by_class[class_index(class)].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn request(
        &self,
        priority: Priority,
        result: Result<(), ErrorClass>,
        latency: Duration,
    ) {
        let p = self.of(priority);
        match result {
            Ok(()) => p.m_requests_ok.increment(1),
            Err(class) => p.m_requests_err[class_index(class)].increment(1),
        }
        p.m_latency.record(latency.as_secs_f64());
    }

    pub(crate) fn retry(&self, allowed: bool) {
        if allowed {
            self.retries.fetch_add(1, Ordering::Relaxed);
            self.m_retries.increment(1);
        } else {
            self.retries_denied.fetch_add(1, Ordering::Relaxed);
            self.m_retries_denied.increment(1);
        }
    }

    pub(crate) fn observation_lost(&self) {
        self.observations_lost.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot<'a>(
        &self,
        queued_by_tenant: impl Iterator<Item = (&'a TenantId, usize)>,
        queued: [usize; 2],
        queued_bytes: usize,
        in_flight: [usize; 2],
    ) -> LaneStats {
        let lane = |priority: Priority| {
            let p = self.of(priority);
            let i = priority.index();
            PriorityStats {
                queued: queued[i],
                in_flight: in_flight[i],
                enqueued: p.enqueued.load(Ordering::Relaxed),
                delivered: p.delivered.load(Ordering::Relaxed),
                failed: p.failed.load(Ordering::Relaxed),
                dropped: DropReason::ALL
                    .iter()
                    .map(|r| (*r, p.dropped[r.index()].load(Ordering::Relaxed)))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            }
        };
        LaneStats {
            realtime: lane(Priority::Realtime),
            bulk: lane(Priority::Bulk),
            queued_bytes,
            retries: self.retries.load(Ordering::Relaxed),
            retries_denied: self.retries_denied.load(Ordering::Relaxed),
            failed_by_class: ErrorClass::ALL
                .iter()
                .map(|c| {
                    (
                        *c,
                        self.failed_by_class[class_index(*c)].load(Ordering::Relaxed),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            observations_lost: self.observations_lost.load(Ordering::Relaxed),
            tenants: self.tenants.snapshot(queued_by_tenant),
        }
    }
}

/// A snapshot of one vendor's lanes, for `/admin/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LaneStats {
    pub realtime: PriorityStats,
    pub bulk: PriorityStats,
    /// Frame bytes queued in both lanes.
    pub queued_bytes: usize,
    /// Retries attempted (all priorities).
    pub retries: u64,
    /// Retries refused by the retry budget.
    pub retries_denied: u64,
    /// Events whose delivery failed for good, by the last error's class.
    pub failed_by_class: std::collections::BTreeMap<ErrorClass, u64>,
    /// Observations not reported because the driver's inbox was full.
    pub observations_lost: u64,
    /// Each tenant's share, by metrics label (the first tenants seen, then `other`).
    pub tenants: std::collections::BTreeMap<String, TenantLaneStats>,
}

/// One priority's lane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PriorityStats {
    pub queued: usize,
    pub in_flight: usize,
    pub enqueued: u64,
    pub delivered: u64,
    /// Events whose delivery failed for good (after the retry, or not retryable).
    pub failed: u64,
    /// Events dropped from the queue, by reason.
    pub dropped: std::collections::BTreeMap<DropReason, u64>,
}

impl PriorityStats {
    /// All drops of this lane.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}
