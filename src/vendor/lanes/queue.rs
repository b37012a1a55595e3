//! The bounded queues of one vendor, one per [`Priority`], and the shedding policy. Pure: no
//! locks, no tasks, time passed in.
//!
//! Bounds: each priority has an event-count limit, and both together a byte limit.
//! - A push into a priority queue at its count limit drops that queue's oldest event
//!   ([`DropReason::QueueFull`]).
//! - A push that would take the bytes over the limit drops the oldest `bulk` events first, then
//!   the oldest `realtime` ones ([`DropReason::MemoryFull`]).
//! - Events older than `max_age` are dropped when they reach the head ([`DropReason::Expired`]).
//!
//! Order: a batch never takes an event of a channel that has a request in flight in the same
//! lane, nor one queued behind a skipped event of the same channel, so each channel's events
//! reach the vendor in order within a lane.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::DropReason;
use crate::vendor::{OutboundEvent, Priority};

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

#[derive(Debug)]
struct Queued {
    event: OutboundEvent,
    at: Instant,
}

#[derive(Debug, Default)]
struct Lane {
    items: VecDeque<Queued>,
    /// Channels with a request in flight in this lane, and how many.
    busy: HashMap<String, usize>,
}

/// Both queues of one vendor.
#[derive(Debug)]
pub(crate) struct Queues {
    lanes: [Lane; 2],
    /// Sum of the frame lengths of every queued event; never above `limits.bytes`.
    bytes: usize,
    limits: QueueLimits,
}

/// What a take produced.
#[derive(Debug, Default)]
pub(crate) struct Take {
    pub(crate) batch: Vec<OutboundEvent>,
    /// Events dropped for age on the way.
    pub(crate) expired: u64,
}

impl Queues {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        Queues {
            lanes: [Lane::default(), Lane::default()],
            bytes: 0,
            limits,
        }
    }

    pub(crate) fn len(&self, priority: Priority) -> usize {
        self.lanes[priority.index()].items.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues `event`; returns what was shed to make room, or why `event` itself cannot be
    /// queued (larger than the whole byte limit, or a zero-length queue).
    pub(crate) fn push(
        &mut self,
        event: OutboundEvent,
        now: Instant,
    ) -> Result<Vec<(Priority, DropReason)>, DropReason> {
        let priority = event.priority;
        let size = event.size();
        if size > self.limits.bytes || self.limits.events(priority) == 0 {
            return Err(DropReason::MemoryFull);
        }
        let mut shed = Vec::new();
        if self.len(priority) >= self.limits.events(priority) {
            self.pop_oldest(priority);
            shed.push((priority, DropReason::QueueFull));
        }
        while self.bytes + size > self.limits.bytes {
            let victim = if self.len(Priority::Bulk) > 0 {
                Priority::Bulk
            } else {
                Priority::Realtime
            };
            self.pop_oldest(victim);
            shed.push((victim, DropReason::MemoryFull));
        }
        self.bytes += size;
        self.lanes[priority.index()]
            .items
            .push_back(Queued { event, at: now });
        Ok(shed)
    }

    fn pop_oldest(&mut self, priority: Priority) {
        if let Some(q) = self.lanes[priority.index()].items.pop_front() {
            self.bytes -= q.event.size();
        }
    }

    /// Takes up to `max` events of `priority` whose channels are not busy, marking their
    /// channels busy until [`Queues::release`].
    pub(crate) fn take(&mut self, priority: Priority, max: usize, now: Instant) -> Take {
        let mut take = Take::default();
        let max_age = self.limits.max_age;
        let Lane { items, busy } = &mut self.lanes[priority.index()];
        while items
            .front()
            .is_some_and(|q| now.saturating_duration_since(q.at) >= max_age)
        {
            if let Some(q) = items.pop_front() {
                self.bytes -= q.event.size();
                take.expired += 1;
            }
        }
        if items.is_empty() || max == 0 {
            return take;
        }
        let mut skipped: HashSet<String> = HashSet::new();
        let mut rest = VecDeque::with_capacity(items.len());
        while let Some(q) = items.pop_front() {
            if take.batch.len() == max {
                rest.push_back(q);
                rest.extend(items.drain(..));
                break;
            }
            let channel = &q.event.channel;
            if busy.contains_key(channel) || skipped.contains(channel) {
                skipped.insert(channel.clone());
                rest.push_back(q);
            } else {
                self.bytes -= q.event.size();
                take.batch.push(q.event);
            }
        }
        *items = rest;
        let channels: HashSet<&str> = take.batch.iter().map(|e| e.channel.as_str()).collect();
        for channel in channels {
            *busy.entry(channel.to_owned()).or_default() += 1;
        }
        take
    }

    /// Marks the channels of a finished batch as no longer busy.
    pub(crate) fn release(&mut self, priority: Priority, batch: &[OutboundEvent]) {
        let busy = &mut self.lanes[priority.index()].busy;
        let channels: HashSet<&str> = batch.iter().map(|e| e.channel.as_str()).collect();
        for channel in channels {
            if let Some(n) = busy.get_mut(channel) {
                *n -= 1;
                if *n == 0 {
                    busy.remove(channel);
                }
            }
        }
    }

    /// Empties one priority's queue (shutdown); returns how many events it held.
    pub(crate) fn clear(&mut self, priority: Priority) -> usize {
        let items = &mut self.lanes[priority.index()].items;
        let count = items.len();
        for q in items.drain(..) {
            self.bytes -= q.event.size();
        }
        count
    }
}

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
            Ok(vec![(Priority::Realtime, DropReason::QueueFull)])
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
            Ok(vec![(Priority::Bulk, DropReason::MemoryFull)])
        );
        assert_eq!(q.bytes(), 100);
        // 60 more needs 60 freed: the remaining bulk, then the oldest realtime.
        assert_eq!(
            q.push(ev("e", "r3", Priority::Realtime, 60), now),
            Ok(vec![
                (Priority::Bulk, DropReason::MemoryFull),
                (Priority::Realtime, DropReason::MemoryFull)
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
        assert_eq!(take.expired, 1);
        assert_eq!(ids(&take), ["new"]);
        assert_eq!(q.bytes(), 0);
    }
}
