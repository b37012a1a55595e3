//! A bounded ring of one channel's recent events, and the `since` question resume asks of it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Event, ResetReason};

/// How much history a channel keeps.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    pub max_events: usize,
    pub max_age: Duration,
}

/// Events of one epoch, contiguous by seq: `events[i].seq == first_seq + i`.
#[derive(Debug, Default)]
pub(crate) struct History {
    events: VecDeque<Arc<Event>>,
    /// Sum of `Event::cost` of the events held.
    bytes: usize,
}

/// The answer to "what came after seq N".
#[derive(Debug)]
pub(crate) enum Since {
    /// Every event after the position, oldest first (possibly none).
    Events(Vec<Arc<Event>>),
    /// The events after the position are no longer all held.
    Gap(ResetReason),
}

impl History {
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Seq of the oldest event held.
    pub(crate) fn first_seq(&self) -> Option<u64> {
        self.events.front().map(|e| e.seq)
    }

    /// Appends the next event and trims to the count limit. Returns the bytes freed by trimming.
    pub(crate) fn push(&mut self, event: Arc<Event>, limits: &HistoryLimits) -> usize {
        debug_assert!(self
            .events
            .back()
            .is_none_or(|last| last.seq + 1 == event.seq));
        self.bytes += event.cost();
        self.events.push_back(event);
        let mut freed = 0;
        while self.events.len() > limits.max_events {
            freed += self.pop_oldest();
        }
        freed
    }

    /// Drops the oldest events beyond `max_events` (the limit was lowered). Returns the bytes
    /// freed.
    pub(crate) fn trim_count(&mut self, max_events: usize) -> usize {
        let mut freed = 0;
        while self.events.len() > max_events {
            freed += self.pop_oldest();
        }
        freed
    }

    /// Drops events older than `max_age` at `now`. Returns the bytes freed.
    pub(crate) fn trim_age(&mut self, max_age: Duration, now: Instant) -> usize {
        let mut freed = 0;
        while self
            .events
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.stored_at) > max_age)
        {
            freed += self.pop_oldest();
        }
        freed
    }

    /// Drops the oldest events, keeping at least `keep`, until `excess` bytes are freed.
    /// Returns the bytes freed.
    pub(crate) fn trim_bytes(&mut self, excess: usize, keep: usize) -> usize {
        let mut freed = 0;
        while freed < excess && self.events.len() > keep {
            freed += self.pop_oldest();
        }
        freed
    }

    fn pop_oldest(&mut self) -> usize {
        let cost = self.events.pop_front().map_or(0, |e| e.cost());
        self.bytes -= cost;
        cost
    }

    /// Events after `seq`, given the channel's `head` (last assigned seq). At most `limit` events.
    pub(crate) fn since(&self, seq: u64, head: u64, limit: usize) -> Since {
        if seq > head {
            return Since::Gap(ResetReason::AheadOfHead);
        }
        if seq == head {
            return Since::Events(Vec::new());
        }
        match self.first_seq() {
            Some(first) if seq + 1 >= first => {
                let start = (seq + 1 - first) as usize;
                Since::Events(self.events.range(start..).take(limit).cloned().collect())
            }
            _ => Since::Gap(ResetReason::HistoryExceeded),
        }
    }

    /// The oldest events held, at most `limit`.
    pub(crate) fn oldest(&self, limit: usize) -> Vec<Arc<Event>> {
        self.events.iter().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ChannelName, Epoch, EventDraft};
    use serde_json::value::RawValue;

    fn ev(seq: u64, at: Instant) -> Arc<Event> {
        let draft = EventDraft::new(
            Arc::from("n"),
            RawValue::from_string("1".into()).unwrap(),
            None,
        );
        Arc::new(Event::build(
            ChannelName::parse("c").unwrap(),
            seq,
            Epoch::from_client("e"),
            &draft,
            Arc::from(format!("id{seq}")),
            0,
            at,
        ))
    }

    fn limits(max_events: usize) -> HistoryLimits {
        HistoryLimits {
            max_events,
            max_age: Duration::from_secs(600),
        }
    }

    fn seqs(s: Since) -> Vec<u64> {
        match s {
            Since::Events(v) => v.iter().map(|e| e.seq).collect(),
            Since::Gap(r) => panic!("unexpected gap {r:?}"),
        }
    }

    #[test]
    fn since_returns_exactly_the_missed_events() {
        let now = Instant::now();
        let mut h = History::default();
        for s in 1..=10 {
            h.push(ev(s, now), &limits(100));
        }
        assert_eq!(seqs(h.since(0, 10, 100)), (1..=10).collect::<Vec<_>>());
        assert_eq!(seqs(h.since(7, 10, 100)), vec![8, 9, 10]);
        assert_eq!(seqs(h.since(10, 10, 100)), Vec::<u64>::new());
        assert_eq!(seqs(h.since(3, 10, 2)), vec![4, 5]);
    }

    #[test]
    fn since_reports_gaps_it_cannot_fill() {
        let now = Instant::now();
        let mut h = History::default();
        for s in 1..=10 {
            h.push(ev(s, now), &limits(4));
        }
        assert_eq!(h.first_seq(), Some(7));
        assert_eq!(seqs(h.since(6, 10, 100)), vec![7, 8, 9, 10]);
        assert!(matches!(
            h.since(5, 10, 100),
            Since::Gap(ResetReason::HistoryExceeded)
        ));
        assert!(matches!(
            h.since(11, 10, 100),
            Since::Gap(ResetReason::AheadOfHead)
        ));
        let empty = History::default();
        assert!(matches!(
            empty.since(2, 3, 100),
            Since::Gap(ResetReason::HistoryExceeded)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn age_trimming_follows_the_clock() {
        let mut h = History::default();
        h.push(ev(1, Instant::now()), &limits(100));
        tokio::time::advance(Duration::from_secs(5)).await;
        h.push(ev(2, Instant::now()), &limits(100));
        tokio::time::advance(Duration::from_secs(6)).await;
        let freed = h.trim_age(Duration::from_secs(10), Instant::now());
        assert!(freed > 0);
        assert_eq!(h.first_seq(), Some(2));
        assert_eq!(h.bytes(), h.oldest(10)[0].cost());
    }

    #[test]
    fn byte_trimming_keeps_the_newest() {
        let now = Instant::now();
        let mut h = History::default();
        for s in 1..=5 {
            h.push(ev(s, now), &limits(100));
        }
        h.trim_bytes(usize::MAX, 1);
        assert_eq!(h.len(), 1);
        assert_eq!(h.first_seq(), Some(5));
    }
}
