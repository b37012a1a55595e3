//! The bounded queues of one vendor, one per [`Priority`], and the shedding policy. Pure: no
//! locks, no tasks, time passed in.
//!
//! Within each priority, every tenant has its own FIFO and the tenants take turns (`turns`), so
//! one tenant's backlog never holds another tenant's next event behind it.
//!
//! Bounds hold for the whole queue, whoever fills it: each priority has an event-count limit,
//! and both together a byte limit. When a push finds the queue full, it sheds the oldest event of
//! the tenant holding the most (counting the event being pushed as its tenant's), so a tenant
//! that floods sheds its own events and a tenant below its fair share loses nothing:
//! - at a priority's count limit: the oldest event of the tenant with the most events of that
//!   priority ([`DropReason::QueueFull`]);
//! - over the byte limit: the tenant with the most bytes in both priorities loses its oldest
//!   `bulk` event, or its oldest `realtime` one when it has no bulk ([`DropReason::MemoryFull`]).
//!
//! Ties go to the tenant whose oldest event is older. Events older than `max_age` are dropped
//! when they reach the head of their tenant's FIFO ([`DropReason::Expired`]).

mod turns;

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::DropReason;
use crate::tenant::id::TenantId;
use crate::upstream::{OutboundEvent, Priority};
use turns::{Holding, Lane, Queued};

/// Bounds of one vendor's queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    pub realtime_events: usize,
    pub bulk_events: usize,
    /// Frame bytes of both queues together.
    pub bytes: usize,
    pub max_age: Duration,
}

impl QueueLimits {
    fn events(&self, priority: Priority) -> usize {
        match priority {
            Priority::Realtime => self.realtime_events,
            Priority::Bulk => self.bulk_events,
        }
    }
}

/// An event shed to make room for another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shed {
    pub(crate) priority: Priority,
    pub(crate) reason: DropReason,
    pub(crate) tenant: TenantId,
}

/// Both queues of one vendor.
#[derive(Debug)]
pub(crate) struct Queues {
    lanes: [Lane; 2],
    /// Sum of the frame lengths of every queued event; never above `limits.bytes`.
    bytes: usize,
    /// `seq` of the next push.
    next_seq: u64,
    limits: QueueLimits,
}

/// What a take produced.
#[derive(Debug, Default)]
pub(crate) struct Take {
    pub(crate) batch: Vec<OutboundEvent>,
    /// The tenant of each event dropped for age on the way.
    pub(crate) expired: Vec<TenantId>,
}

impl Queues {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        Queues {
            lanes: [Lane::default(), Lane::default()],
            bytes: 0,
            next_seq: 0,
            limits,
        }
    }

    pub(crate) fn len(&self, priority: Priority) -> usize {
        self.lanes[priority.index()].len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Events queued per tenant in `priority`.
    pub(crate) fn tenant_lens(
        &self,
        priority: Priority,
    ) -> impl Iterator<Item = (&TenantId, usize)> + '_ {
        self.lanes[priority.index()].lens()
    }

    /// Queues `event`; returns what was shed to make room, or why `event` itself cannot be
    /// queued (larger than the whole byte limit, or a zero-length queue).
    pub(crate) fn push(
        &mut self,
        event: OutboundEvent,
        now: Instant,
    ) -> Result<Vec<Shed>, DropReason> {
        let priority = event.priority;
        let size = event.size();
        if size > self.limits.bytes || self.limits.events(priority) == 0 {
            return Err(DropReason::MemoryFull);
        }
        let mut shed = Vec::new();
        if self.len(priority) >= self.limits.events(priority) {
            let lane = &mut self.lanes[priority.index()];
            let victim = heaviest(lane.holdings(), &event.tenant, |h| h.events, 1);
            if let Some(e) = victim.and_then(|t| lane.pop_oldest(&t)) {
                self.bytes -= e.size();
                shed.push(Shed {
                    priority,
                    reason: DropReason::QueueFull,
                    tenant: e.tenant,
                });
            }
        }
        while self.bytes + size > self.limits.bytes {
            let Some((victim_priority, e)) = self.shed_for_bytes(&event.tenant, size) else {
                break;
            };
            self.bytes -= e.size();
            shed.push(Shed {
                priority: victim_priority,
                reason: DropReason::MemoryFull,
                tenant: e.tenant,
            });
        }
        self.bytes += size;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.lanes[priority.index()].push(Queued {
            event,
            at: now,
            seq,
        });
        Ok(shed)
    }

    /// Removes the oldest event of the tenant with the most bytes queued in both priorities
    /// (`pusher` counted with `size` more): its bulk first, then its realtime.
    fn shed_for_bytes(
        &mut self,
        pusher: &TenantId,
        size: usize,
    ) -> Option<(Priority, OutboundEvent)> {
        let [realtime, bulk] = &self.lanes;
        let mut both: HashMap<&TenantId, Holding> = HashMap::new();
        for (t, h) in realtime.holdings().chain(bulk.holdings()) {
            both.entry(t)
                .and_modify(|sum| {
                    sum.events += h.events;
                    sum.bytes += h.bytes;
                    sum.oldest = sum.oldest.min(h.oldest);
                })
                .or_insert(h);
        }
        let victim = heaviest(both.into_iter(), pusher, |h| h.bytes, size)?;
        for priority in [Priority::Bulk, Priority::Realtime] {
            if let Some(e) = self.lanes[priority.index()].pop_oldest(&victim) {
                return Some((priority, e));
            }
        }
        None
    }

    /// Takes up to `max` events of `priority` whose channels are not busy, the tenants taking
    /// turns, marking their channels busy until [`Queues::release`].
    pub(crate) fn take(&mut self, priority: Priority, max: usize, now: Instant) -> Take {
        let lane = &mut self.lanes[priority.index()];
        let expired = lane.expire(now, self.limits.max_age);
        let mut take = Take::default();
        for e in expired {
            self.bytes -= e.size();
            take.expired.push(e.tenant);
        }
        if max == 0 {
            return take;
        }
        take.batch = lane.take(max);
        self.bytes -= take.batch.iter().map(OutboundEvent::size).sum::<usize>();
        take
    }

    /// Marks the channels of a finished batch as no longer busy.
    pub(crate) fn release(&mut self, priority: Priority, batch: &[OutboundEvent]) {
        self.lanes[priority.index()].release(batch);
    }

    /// Empties one priority's queue (shutdown); returns the events it held.
    pub(crate) fn clear(&mut self, priority: Priority) -> Vec<OutboundEvent> {
        let events = self.lanes[priority.index()].clear();
        self.bytes -= events.iter().map(OutboundEvent::size).sum::<usize>();
        events
    }
}

/// The tenant holding the most by `measure` (`pusher` counted with `extra` more), ties to the
/// one whose oldest event is older.
fn heaviest<'a>(
    holdings: impl Iterator<Item = (&'a TenantId, Holding)>,
    pusher: &TenantId,
    measure: impl Fn(&Holding) -> usize,
    extra: usize,
) -> Option<TenantId> {
    holdings
        .max_by_key(|(t, h)| {
            let held = measure(h) + if *t == pusher { extra } else { 0 };
            (held, std::cmp::Reverse(h.oldest))
        })
        .map(|(t, _)| t.clone())
}

#[cfg(test)]
mod fairness_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ev(channel: &str, id: &str, priority: Priority, size: usize) -> OutboundEvent {
        OutboundEvent::new(channel, "n", id, Bytes::from(vec![b'x'; size]), priority)
    }

    fn limits(realtime: usize, bulk: usize, bytes: usize) -> QueueLimits {
        QueueLimits {
            realtime_events: realtime,
            bulk_events: bulk,
            bytes,
            max_age: Duration::from_secs(30),
        }
    }

    /// An event of the default tenant shed.
    fn shed(priority: Priority, reason: DropReason) -> Shed {
        Shed {
            priority,
            reason,
            tenant: TenantId::default(),
        }
    }

    fn ids(take: &Take) -> Vec<&str> {
        take.batch.iter().map(|e| e.id.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_sheds_its_own_oldest() {
        let now = Instant::now();
        let mut q = Queues::new(limits(2, 2, 1 << 20));
        assert_eq!(
            q.push(ev("a", "r1", Priority::Realtime, 1), now),
            Ok(vec![])
        );
        assert_eq!(
            q.push(ev("b", "r2", Priority::Realtime, 1), now),
            Ok(vec![])
        );
        assert_eq!(q.push(ev("c", "b1", Priority::Bulk, 1), now), Ok(vec![]));
        assert_eq!(
            q.push(ev("d", "r3", Priority::Realtime, 1), now),
            Ok(vec![shed(Priority::Realtime, DropReason::QueueFull)])
        );
        assert_eq!(ids(&q.take(Priority::Realtime, 10, now)), ["r2", "r3"]);
        assert_eq!(q.len(Priority::Bulk), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_limit_sheds_bulk_first_then_realtime() {
        let now = Instant::now();
        let mut q = Queues::new(limits(10, 10, 100));
        for (ch, id, p) in [
            ("a", "r1", Priority::Realtime),
            ("b", "b1", Priority::Bulk),
            ("c", "b2", Priority::Bulk),
        ] {
            assert_eq!(q.push(ev(ch, id, p, 30), now), Ok(vec![]));
        }
        // 90 bytes queued; 40 more needs 30 freed: the oldest bulk goes.
        assert_eq!(
            q.push(ev("d", "r2", Priority::Realtime, 40), now),
            Ok(vec![shed(Priority::Bulk, DropReason::MemoryFull)])
        );
        assert_eq!(q.bytes(), 100);
        // 60 more needs 60 freed: the remaining bulk, then the oldest realtime.
        assert_eq!(
            q.push(ev("e", "r3", Priority::Realtime, 60), now),
            Ok(vec![
                shed(Priority::Bulk, DropReason::MemoryFull),
                shed(Priority::Realtime, DropReason::MemoryFull)
            ])
        );
        assert_eq!(ids(&q.take(Priority::Realtime, 10, now)), ["r2", "r3"]);
        assert_eq!(q.len(Priority::Bulk), 0);
        assert_eq!(q.bytes(), 0);
        // An event bigger than the whole budget is refused without shedding others.
        assert_eq!(
            q.push(ev("f", "r4", Priority::Realtime, 10), now),
            Ok(vec![])
        );
        assert_eq!(
            q.push(ev("g", "huge", Priority::Realtime, 101), now),
            Err(DropReason::MemoryFull)
        );
        assert_eq!(q.len(Priority::Realtime), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_channels_keep_their_order() {
        let now = Instant::now();
        let mut q = Queues::new(limits(10, 10, 1 << 20));
        for (ch, id) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1")] {
            assert_eq!(q.push(ev(ch, id, Priority::Realtime, 1), now), Ok(vec![]));
        }
        let first = q.take(Priority::Realtime, 1, now);
        assert_eq!(ids(&first), ["a1"]);
        // `a` is in flight: a2 must wait, b1 and c1 may go.
        let second = q.take(Priority::Realtime, 10, now);
        assert_eq!(ids(&second), ["b1", "c1"]);
        assert!(q.take(Priority::Realtime, 10, now).batch.is_empty());
        q.release(Priority::Realtime, &first.batch);
        assert_eq!(ids(&q.take(Priority::Realtime, 10, now)), ["a2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_keeps_several_events_of_one_channel_in_order() {
        let now = Instant::now();
        let mut q = Queues::new(limits(10, 10, 1 << 20));
        for id in ["1", "2", "3"] {
            assert_eq!(q.push(ev("a", id, Priority::Bulk, 1), now), Ok(vec![]));
        }
        assert_eq!(ids(&q.take(Priority::Bulk, 2, now)), ["1", "2"]);
        assert!(q.take(Priority::Bulk, 2, now).batch.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn old_events_expire_at_the_head() {
        let start = Instant::now();
        let mut q = Queues::new(limits(10, 10, 1 << 20));
        assert_eq!(
            q.push(ev("a", "old", Priority::Realtime, 5), start),
            Ok(vec![])
        );
        assert_eq!(
            q.push(
                ev("b", "new", Priority::Realtime, 5),
                start + Duration::from_secs(20)
            ),
            Ok(vec![])
        );
        let take = q.take(Priority::Realtime, 10, start + Duration::from_secs(30));
        assert_eq!(take.expired.len(), 1);
        assert_eq!(ids(&take), ["new"]);
        assert_eq!(q.bytes(), 0);
    }
}
