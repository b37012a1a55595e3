//! One priority's queue of one vendor: a FIFO per tenant, and the turn order between tenants.
//! Pure: no locks, no clock of its own.
//!
//! Turns: a take gives one event to each tenant with something sendable, in turn order, then
//! lets each tenant in turn fill what room is left, the first one first. The turn order is least
//! recently served first (a tenant never served before all), and a tenant keeps its place while
//! its queue runs empty for a moment. So with batches of one event a tenant with 10,000 queued
//! events holds another tenant's next event back by at most one request; with larger batches
//! that event rides in the next one; and a steady tenant, whose events of one channel wait for
//! that channel's request in flight, fills its own next request instead of sharing it event by
//! event with the flood (which would cap it at half a request per round trip).
//!
//! Order: a take never takes an event of a channel with a request in flight in this lane (and
//! so never one queued behind a passed-over event of the same channel), so each channel's
//! events reach the vendor in order within a lane. A channel belongs to one tenant, so one tenant's FIFO holds
//! all of a channel's events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::tenant::id::TenantId;
use crate::upstream::OutboundEvent;

/// Idle tenants whose last turn is remembered; past it, only queued tenants' are kept.
const MAX_STAMPS: usize = 4096;

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
    /// The tenants of `tenants`, each once, in the order they are served next: least recently
    /// served first (by `served`), never served before all.
    turns: VecDeque<TenantId>,
    /// When each tenant was last served (`next_stamp` at the time), kept while it is idle so a
    /// tenant whose queue ran empty for a moment comes back at its old place, not behind
    /// everyone served since. At most [`MAX_STAMPS`] entries.
    served: HashMap<TenantId, u64>,
    next_stamp: u64,
    /// Events queued, all tenants together.
    len: usize,
    /// Channels with a request in flight in this lane, and how many.
    busy: HashMap<String, usize>,
}

impl Lane {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Queues `q` at the back of its tenant's FIFO. A tenant with nothing queued joins the turn
    /// order by when it was last served: ahead of the tenants served since, or, never served,
    /// ahead of every tenant served and behind the others never served.
    pub(super) fn push(&mut self, q: Queued) {
        let tenant = q.event.tenant.clone();
        if !self.tenants.contains_key(&tenant) {
            let stamp = self.served.get(&tenant).copied();
            let at = self
                .turns
                .iter()
                .position(|t| self.served.get(t).copied() > stamp)
                .unwrap_or(self.turns.len());
            self.turns.insert(at, tenant.clone());
        }
        let tq = self.tenants.entry(tenant).or_default();
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
        // One event from each tenant in turn, then each in turn fills what room is left: the
        // first with something sendable fills first, the others after it.
        for one_each in [true, false] {
            for i in 0..n {
                let Some(tq) = self.tenants.get_mut(&self.turns[i]) else {
                    continue;
                };
                while batch.len() < max {
                    let Some(event) = tq.next_sendable(&mut cursors[i], &self.busy) else {
                        break;
                    };
                    served[i] = Some(batch.len());
                    batch.push(event);
                    if one_each {
                        break;
                    }
                }
            }
        }
        if batch.is_empty() {
            return batch;
        }
        self.len -= batch.len();
        for (at, tenant) in served.into_iter().zip(&self.turns) {
            if let Some(at) = at {
                self.served
                    .insert(tenant.clone(), self.next_stamp + at as u64);
            }
        }
        self.next_stamp += batch.len() as u64;
        let stamps = &self.served;
        // Stable: tenants not served keep their order.
        self.turns
            .make_contiguous()
            .sort_by_key(|t| stamps.get(t).copied());
        self.forget_empty();
        if self.served.len() > MAX_STAMPS {
            let tenants = &self.tenants;
            self.served.retain(|t, _| tenants.contains_key(t));
        }
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
