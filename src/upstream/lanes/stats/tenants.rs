//! Per-tenant counters of one vendor's lanes, with a bounded label: the first
//! [`LABELLED_TENANTS`] tenants the lanes see are labelled by their id, every later one shares
//! [`OTHER_LABEL`]. The lanes have no [`Tenants`](crate::tenant::Tenants) to ask, and tenant ids
//! come from the configuration, so the map stays as small as the tenant list.
//!
//! Metrics (labels `vendor`, `priority`, `tenant`, plus the one named):
//! `understudy_vendor_tenant_enqueued_total`, `understudy_vendor_tenant_delivered_total`,
//! `understudy_vendor_tenant_dropped_total{reason}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::Counter;
use parking_lot::RwLock;
use serde::Serialize;

use super::DropReason;
use crate::tenant::id::{TenantId, LABELLED_TENANTS, OTHER_LABEL};
use crate::upstream::Priority;

/// One label's counters, per priority.
#[derive(Debug)]
struct TenantLane {
    label: Arc<str>,
    enqueued: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    m_enqueued: [Counter; 2],
    m_delivered: [Counter; 2],
    m_dropped: [[Counter; DropReason::ALL.len()]; 2],
}

impl TenantLane {
    fn new(vendor: &str, label: &str) -> Self {
        let labels = |priority: Priority, reason: Option<DropReason>| {
            let mut l = vec![
                metrics::Label::new("vendor", vendor.to_owned()),
                metrics::Label::new("priority", priority.as_str()),
                metrics::Label::new("tenant", label.to_owned()),
            ];
            if let Some(r) = reason {
                l.push(metrics::Label::new("reason", r.as_str()));
            }
            l
        };
        TenantLane {
            label: Arc::from(label),
            enqueued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            m_enqueued: Priority::ALL.map(|p| {
                metrics::counter!("understudy_vendor_tenant_enqueued_total", labels(p, None))
            }),
            m_delivered: Priority::ALL.map(|p| {
                metrics::counter!("understudy_vendor_tenant_delivered_total", labels(p, None))
            }),
            m_dropped: Priority::ALL.map(|p| {
                DropReason::ALL.map(|r| {
                    metrics::counter!("understudy_vendor_tenant_dropped_total", labels(p, Some(r)))
                })
            }),
        }
    }
}

/// Every tenant's counters of one vendor's lanes.
#[derive(Debug)]
pub(crate) struct TenantCounters {
    vendor: String,
    /// Tenants with a label of their own; never more than [`LABELLED_TENANTS`].
    labelled: RwLock<HashMap<TenantId, Arc<TenantLane>>>,
    /// Every tenant past the first [`LABELLED_TENANTS`].
    other: Arc<TenantLane>,
}

impl TenantCounters {
    pub(crate) fn new(vendor: &str) -> Self {
        TenantCounters {
            vendor: vendor.to_owned(),
            labelled: RwLock::new(HashMap::new()),
            other: Arc::new(TenantLane::new(vendor, OTHER_LABEL)),
        }
    }

    fn of(&self, tenant: &TenantId) -> Arc<TenantLane> {
        if let Some(lane) = self.labelled.read().get(tenant) {
            return lane.clone();
        }
        let mut labelled = self.labelled.write();
        if let Some(lane) = labelled.get(tenant) {
            return lane.clone();
        }
        if labelled.len() >= LABELLED_TENANTS || tenant.as_str() == OTHER_LABEL {
            return self.other.clone();
        }
        let lane = Arc::new(TenantLane::new(&self.vendor, tenant.as_str()));
        labelled.insert(tenant.clone(), lane.clone());
        lane
    }

    pub(crate) fn enqueued(&self, tenant: &TenantId, priority: Priority) {
        let t = self.of(tenant);
        t.enqueued.fetch_add(1, Ordering::Relaxed);
        t.m_enqueued[priority.index()].increment(1);
    }

    pub(crate) fn dropped(&self, tenant: &TenantId, priority: Priority, reason: DropReason) {
        let t = self.of(tenant);
        t.dropped.fetch_add(1, Ordering::Relaxed);
        t.m_dropped[priority.index()][reason.index()].increment(1);
    }

    pub(crate) fn delivered(&self, tenant: &TenantId, priority: Priority, n: u64) {
        let t = self.of(tenant);
        t.delivered.fetch_add(n, Ordering::Relaxed);
        t.m_delivered[priority.index()].increment(n);
    }

    /// Counters by label, with `queued` (events queued per tenant, both priorities) added up
    /// under the same labels.
    pub(crate) fn snapshot<'a>(
        &self,
        queued: impl Iterator<Item = (&'a TenantId, usize)>,
    ) -> BTreeMap<String, TenantLaneStats> {
        let mut out: BTreeMap<String, TenantLaneStats> = BTreeMap::new();
        let mut add = |lane: &TenantLane| {
            let s = out.entry(lane.label.to_string()).or_default();
            s.enqueued += lane.enqueued.load(Ordering::Relaxed);
            s.delivered += lane.delivered.load(Ordering::Relaxed);
            s.dropped += lane.dropped.load(Ordering::Relaxed);
        };
        for lane in self.labelled.read().values() {
            add(lane);
        }
        if self.other.enqueued.load(Ordering::Relaxed) > 0
            || self.other.dropped.load(Ordering::Relaxed) > 0
        {
            add(&self.other);
        }
        for (tenant, n) in queued {
            let label = self.of(tenant).label.to_string();
            out.entry(label).or_default().queued += n;
        }
        out
    }
}

/// One tenant's share of a vendor's lanes (both priorities), for `/admin/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TenantLaneStats {
    pub queued: usize,
    pub enqueued: u64,
    pub delivered: u64,
    /// Events of this tenant dropped from the queue, any reason.
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tenants_seen_have_their_own_label_and_the_rest_share_other() {
        let counters = TenantCounters::new("v");
        let tenants: Vec<TenantId> = (0..LABELLED_TENANTS + 8)
            .map(|i| TenantId::new(&format!("t{i:02}")))
            .collect();
        for t in &tenants {
            counters.enqueued(t, Priority::Realtime);
        }
        counters.delivered(&tenants[0], Priority::Realtime, 1);
        counters.dropped(
            &tenants[LABELLED_TENANTS + 1],
            Priority::Bulk,
            DropReason::QueueFull,
        );
        let last = &tenants[LABELLED_TENANTS + 7];
        let snapshot = counters.snapshot([(&tenants[1], 3), (last, 2)].into_iter());
        assert_eq!(snapshot.len(), LABELLED_TENANTS + 1);
        assert_eq!(
            snapshot["t00"],
            TenantLaneStats {
                queued: 0,
                enqueued: 1,
                delivered: 1,
                dropped: 0
            }
        );
        assert_eq!(
            snapshot["t01"],
            TenantLaneStats {
                queued: 3,
                enqueued: 1,
                delivered: 0,
                dropped: 0
            }
        );
        assert_eq!(
            snapshot[OTHER_LABEL],
            TenantLaneStats {
                queued: 2,
                enqueued: 8,
                delivered: 0,
                dropped: 1
            }
        );
    }
}
