//! One priority's queue of one vendor: a FIFO per tenant, and the turn order between tenants.
//! Pure: no locks, no clock of its own.
//!
//! Turns: a take walks the tenants in turn order, one event from each tenant that has
//! something sendable per round, round after round, until the batch is full or nobody has
//! anything sendable. Tenants served move to the back in the order they were last served;
//! tenants that had nothing sendable keep their place. So with batches of one event, a tenant
//! with 10,000 queued events holds another tenant's next event back by at most one request.
//!
//! Order: a take never takes an event of a channel with a request in flight in this lane (and
//! so never one queued behind a passed-over event of the same channel), so each channel's
//! events reach the vendor in order within a lane. A channel belongs to one tenant, so one tenant's FIFO holds
//! all of a channel's events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::tenant::TenantId;
use crate::vendor::OutboundEvent;

/// An event waiting in a queue.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) event: OutboundEvent,
    pub(super) at: Instant,
    /// Push order across both priorities: smaller is older.
    pub(super) seq: u64,
}

/// One tenant's events of one priority, oldest first.
#[derive(Debug, Default)]
struct TenantQueue {
    items: VecDeque<Queued>,
    /// Sum of the sizes of `items`.
    bytes: usize,
}

impl TenantQueue {
    fn pop_front(&mut self) -> Option<Queued> {
        let q = self.items.pop_front()?;
        self.bytes -= q.event.size();
        Some(q)
    }

    /// Removes and returns the first event at or after `*cursor` whose channel is not busy.
    /// `*cursor` ends on the position after the events passed over, so the next call of the same
    /// take resumes there. Every event passed over has a busy channel, and so does every later
    /// event of that channel: nothing overtakes an event of its own channel.
    fn next_sendable(
        &mut self,
        cursor: &mut usize,
        busy: &HashMap<String, usize>,
    ) -> Option<OutboundEvent> {
        while let Some(q) = self.items.get(*cursor) {
            if busy.contains_key(&q.event.channel) {
                *cursor += 1;
                continue;
            }
            let q = self.items.remove(*cursor)?;
            self.bytes -= q.event.size();
            return Some(q.event);
        }
        None
    }
}

/// What one tenant holds in a lane, for choosing whom to shed.
#[derive(Clone, Copy, Debug)]
pub(super) struct Holding {
    pub(super) events: usize,
    pub(super) bytes: usize,
    /// `seq` of its oldest event.
    pub(super) oldest: u64,
}

/// One priority's queue.
#[derive(Debug, Default)]
pub(super) struct Lane {
    /// Each tenant's events. A tenant is here only while it has events queued.
    tenants: HashMap<TenantId, TenantQueue>,
    /// The tenants of `tenants`, each once, in the order they are served next.
    turns: VecDeque<TenantId>,
    /// Events queued, all tenants together.
    len: usize,
    /// Channels with a request in flight in this lane, and how many.
    busy: HashMap<String, usize>,
}

impl Lane {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Queues `q` at the back of its tenant's FIFO; a tenant new to the lane takes its turn
    /// after every tenant already waiting.
    pub(super) fn push(&mut self, q: Queued) {
        let tenant = q.event.tenant.clone();
        let tq = self.tenants.entry(tenant.clone()).or_insert_with(|| {
            self.turns.push_back(tenant);
            TenantQueue::default()
        });
        tq.bytes += q.event.size();
        tq.items.push_back(q);
        self.len += 1;
    }

    /// What `tenant` holds here, if anything.
    pub(super) fn holding(&self, tenant: &TenantId) -> Option<Holding> {
        let tq = self.tenants.get(tenant)?;
        Some(Holding {
            events: tq.items.len(),
            bytes: tq.bytes,
            oldest: tq.items.front()?.seq,
        })
    }

    /// Every tenant with events here and what it holds.
    pub(super) fn holdings(&self) -> impl Iterator<Item = (&TenantId, Holding)> + '_ {
        self.turns
            .iter()
            .filter_map(|t| Some((t, self.holding(t)?)))
    }

    /// Removes `tenant`'s oldest event.
    pub(super) fn pop_oldest(&mut self, tenant: &TenantId) -> Option<OutboundEvent> {
        let q = self.tenants.get_mut(tenant)?.pop_front()?;
        self.len -= 1;
        self.forget_if_empty(tenant);
        Some(q.event)
    }

    /// Removes every event that has waited `max_age` or longer at the head of its tenant's
    /// FIFO, and returns them.
    pub(super) fn expire(&mut self, now: Instant, max_age: Duration) -> Vec<OutboundEvent> {
        let mut expired = Vec::new();
        for tenant in &self.turns {
            let Some(tq) = self.tenants.get_mut(tenant) else {
                continue;
            };
            while tq
                .items
                .front()
                .is_some_and(|q| now.saturating_duration_since(q.at) >= max_age)
            {
                if let Some(q) = tq.pop_front() {
                    expired.push(q.event);
                }
            }
        }
        if !expired.is_empty() {
            self.len -= expired.len();
            self.forget_empty();
        }
        expired
    }

    /// Takes up to `max` sendable events, the tenants taking turns (see the module header), and
    /// marks their channels busy until [`Lane::release`].
    pub(super) fn take(&mut self, max: usize) -> Vec<OutboundEvent> {
        let mut batch = Vec::new();
        let n = self.turns.len();
        let mut cursors = vec![0usize; n];
        // When each tenant was last served in this take, for the turn order of the next one.
        let mut served: Vec<Option<usize>> = vec![None; n];
        'rounds: while batch.len() < max {
            let before = batch.len();
            for i in 0..n {
                if batch.len() == max {
                    break 'rounds;
                }
                let Some(tq) = self.tenants.get_mut(&self.turns[i]) else {
                    continue;
                };
                if let Some(event) = tq.next_sendable(&mut cursors[i], &self.busy) {
                    served[i] = Some(batch.len());
                    batch.push(event);
                }
            }
            if batch.len() == before {
                break;
            }
        }
        if batch.is_empty() {
            return batch;
        }
        self.len -= batch.len();
        let mut order: Vec<(Option<usize>, TenantId)> =
            served.into_iter().zip(self.turns.drain(..)).collect();
        // Stable: those not served keep their order, ahead of those served.
        order.sort_by_key(|(served, _)| *served);
        self.turns = order.into_iter().map(|(_, t)| t).collect();
        self.forget_empty();
        let channels: HashSet<&str> = batch.iter().map(|e| e.channel.as_str()).collect();
        for channel in channels {
            *self.busy.entry(channel.to_owned()).or_default() += 1;
        }
        batch
    }

    /// Marks the channels of a finished batch as no longer busy.
    pub(super) fn release(&mut self, batch: &[OutboundEvent]) {
        let channels: HashSet<&str> = batch.iter().map(|e| e.channel.as_str()).collect();
        for channel in channels {
            if let Some(n) = self.busy.get_mut(channel) {
                *n -= 1;
                if *n == 0 {
                    self.busy.remove(channel);
                }
            }
        }
    }

    /// Empties the lane; returns the events it held.
    pub(super) fn clear(&mut self) -> Vec<OutboundEvent> {
        self.turns.clear();
        self.len = 0;
        self.tenants
            .drain()
            .flat_map(|(_, tq)| tq.items.into_iter().map(|q| q.event))
            .collect()
    }

    /// Events queued per tenant.
    pub(super) fn lens(&self) -> impl Iterator<Item = (&TenantId, usize)> + '_ {
        self.tenants.iter().map(|(t, tq)| (t, tq.items.len()))
    }

    fn forget_if_empty(&mut self, tenant: &TenantId) {
        if self
            .tenants
            .get(tenant)
            .is_some_and(|tq| tq.items.is_empty())
        {
            self.tenants.remove(tenant);
            self.turns.retain(|t| t != tenant);
        }
    }

    fn forget_empty(&mut self) {
        self.tenants.retain(|_, tq| !tq.items.is_empty());
        let tenants = &self.tenants;
        self.turns.retain(|t| tenants.contains_key(t));
    }
}
