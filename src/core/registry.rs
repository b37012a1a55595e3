//! The registry of channels on this node: lookup and creation, and the background upkeep that
//! trims history and reclaims idle channels without holding any lock the hot path waits on for
//! longer than one channel's trim.
//!
//! Subscribers cannot deny publishers: a channel created by a subscribe or a read (a poll) is
//! *unpublished* until something is published to it, and unpublished channels count against a
//! bound of their own (`max_channels` of them). A publish creating a channel counts only the
//! channels that have been published to, so a subscriber that opens or polls thousands of empty
//! channels is refused itself (`channel_limit_reached`) and never takes a publisher's place.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use tokio::time::Instant;

use super::channel::{
    Applied, ChannelLimits, ChannelOwners, ReadFrom, Reclaimed, Shared, Snapshot,
};
use super::event::now_ms;
use super::{
    Channel, ChannelName, CoreError, Event, EventDraft, Position, Published, Read, Subscription,
};

/// Limits of the registry as a whole.
#[derive(Debug, Clone, Copy)]
pub struct RegistryLimits {
    pub channel: ChannelLimits,
    pub max_channels: usize,
}

/// What [`Registry::install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    Created,
    /// Already at the snapshot, or ahead of it.
    Current,
    /// Missing events applied in order.
    CaughtUp,
    /// Replaced by the snapshot; live subscribers cut off.
    Restarted,
}

/// Figures for metrics and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    pub channels: usize,
    pub history_events: usize,
    pub history_bytes: usize,
}

pub struct Registry {
    channels: DashMap<ChannelName, Arc<Channel>>,
    shared: Arc<Shared>,
    /// Read without a lock when a channel is created; changed by a reload.
    max_channels: AtomicUsize,
    /// Channels reclaimed since start.
    reclaimed: AtomicUsize,
    /// Channels in the map created by a subscribe or a read and not published to since.
    unpublished: AtomicUsize,
    /// Channels in the map that have been published to, by owner ([`Registry::set_owners`]):
    /// like the publishers' bound, a subscriber opening empty channels takes no owner's place.
    per_owner: DashMap<Arc<str>, usize>,
}

/// Who is about to create a channel: each counts against its own bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creator {
    Publisher,
    Subscriber,
}

impl Registry {
    /// A registry that sequences its own channels (the memory engine).
    pub fn new(limits: RegistryLimits) -> Self {
        Self::build(limits, false)
    }

    /// A registry of mirrors: channels are sequenced by a shared engine and enter through
    /// [`Registry::install`]; subscribe and read on a channel not installed answer
    /// [`CoreError::NotMirrored`].
    pub fn mirror(limits: RegistryLimits) -> Self {
        Self::build(limits, true)
    }

    fn build(limits: RegistryLimits, mirror: bool) -> Self {
        Self {
            channels: DashMap::new(),
            shared: Arc::new(Shared {
                limits: ArcSwap::from_pointee(limits.channel),
                history_bytes: AtomicUsize::new(0),
                history_events: AtomicUsize::new(0),
                mirror,
                owners: std::sync::OnceLock::new(),
            }),
            max_channels: AtomicUsize::new(limits.max_channels),
            reclaimed: AtomicUsize::new(0),
            unpublished: AtomicUsize::new(0),
            per_owner: DashMap::new(),
        }
    }

    /// Tells the registry who owns each channel, once, before the first channel is created:
    /// channels are then counted per owner, and each keeps at most its owner's history bytes.
    pub fn set_owners(&self, owners: Arc<dyn ChannelOwners>) {
        let _ = self.shared.owners.set(owners);
    }

    /// Channels of `owner` in the registry now that have been published to.
    pub fn channels_of(&self, owner: &str) -> usize {
        self.per_owner.get(owner).map_or(0, |n| *n)
    }

    /// Whether the registry holds `name` now and it has been published to (it counts for its
    /// owner).
    pub fn holds_published(&self, name: &ChannelName) -> bool {
        (self.channels.get(name)).is_some_and(|c| !c.is_unpublished())
    }

    fn count_in(&self, ch: &Channel) {
        if let Some(owner) = ch.owner() {
            *self.per_owner.entry(owner.clone()).or_insert(0) += 1;
        }
    }

    fn count_out(&self, ch: &Channel) {
        if let Some(owner) = ch.owner() {
            // Removed at zero, so owners gone from the configuration leave nothing behind.
            if let dashmap::mapref::entry::Entry::Occupied(mut n) =
                self.per_owner.entry(owner.clone())
            {
                *n.get_mut() -= 1;
                if *n.get() == 0 {
                    n.remove();
                }
            }
        }
    }

    /// The channel, created if new. The map guard is dropped before the caller locks the channel.
    fn channel(
        &self,
        name: &ChannelName,
        now: Instant,
        by: Creator,
    ) -> Result<Arc<Channel>, CoreError> {
        if let Some(ch) = self.channels.get(name) {
            return Ok(ch.clone());
        }
        if self.shared.mirror {
            return Err(CoreError::NotMirrored(name.to_string()));
        }
        let max_channels = self.max_channels.load(Ordering::Relaxed);
        let unpublished = self.unpublished.load(Ordering::Relaxed);
        let counted = match by {
            Creator::Publisher => self.channels.len().saturating_sub(unpublished),
            Creator::Subscriber => unpublished,
        };
        if counted >= max_channels {
            return Err(CoreError::ChannelLimit(max_channels));
        }
        let entry = self.channels.entry(name.clone()).or_insert_with(|| {
            let ch = Channel::new(name.clone(), self.shared.clone(), now);
            Arc::new(match by {
                Creator::Publisher => {
                    self.count_in(&ch);
                    ch
                }
                Creator::Subscriber => {
                    // Counted under the map's shard lock, once per channel created.
                    self.unpublished.fetch_add(1, Ordering::Relaxed);
                    ch.mark_unpublished()
                }
            })
        });
        Ok(entry.clone())
    }

    /// Runs `op` on the channel, looking it up again if it was reclaimed in between.
    fn with_channel<T>(
        &self,
        name: &ChannelName,
        by: Creator,
        mut op: impl FnMut(&Channel, Instant) -> Result<T, Reclaimed>,
    ) -> Result<T, CoreError> {
        loop {
            let now = Instant::now();
            let ch = self.channel(name, now, by)?;
            if let Ok(out) = op(&ch, now) {
                return Ok(out);
            }
        }
    }

    /// Sequences the event, appends it to history and hands it to live subscribers.
    pub fn publish(&self, name: &ChannelName, draft: &EventDraft) -> Result<Published, CoreError> {
        let ts = now_ms();
        self.with_channel(name, Creator::Publisher, |ch, now| {
            let published = ch.publish(draft, ts, now)?;
            if ch.take_unpublished() {
                self.unpublished.fetch_sub(1, Ordering::Relaxed);
                self.count_in(ch);
            }
            Ok(published)
        })
    }

    /// Publishes one draft to several channels. Every channel is looked up (and created) first,
    /// so a refusal such as the channel limit happens before anything is published.
    pub fn publish_all(
        &self,
        names: &[ChannelName],
        draft: &EventDraft,
    ) -> Result<Vec<Published>, CoreError> {
        // One channel (nearly every publish) is refused by its own publish before anything is
        // published: no lookup ahead of it.
        if let [name] = names {
            return Ok(vec![self.publish(name, draft)?]);
        }
        let now = Instant::now();
        for name in names {
            self.channel(name, now, Creator::Publisher)?;
        }
        names.iter().map(|n| self.publish(n, draft)).collect()
    }

    /// Joins the live feed and answers the position in one step.
    pub fn subscribe(
        &self,
        name: &ChannelName,
        since: Option<&Position>,
    ) -> Result<Subscription, CoreError> {
        self.with_channel(name, Creator::Subscriber, |ch, now| {
            ch.subscribe(since, now)
        })
    }

    /// Reads events for a poll; with `watch`, also joins the live feed when there is nothing yet.
    pub fn read(
        &self,
        name: &ChannelName,
        from: &ReadFrom,
        limit: usize,
        watch: bool,
    ) -> Result<Read, CoreError> {
        self.with_channel(name, Creator::Subscriber, |ch, now| {
            ch.read(from, limit, watch, now)
        })
    }

    /// Installs a mirror channel at a snapshot, or brings an installed one up to it: events past
    /// its head are applied in order; a different epoch, or a snapshot that does not join up with
    /// what it holds, restarts it (its live subscribers are cut off and resume).
    pub fn install(&self, name: &ChannelName, snapshot: Snapshot) -> Result<Installed, CoreError> {
        let now = Instant::now();
        let ch = match self.channels.get(name).map(|c| c.clone()) {
            Some(ch) => ch,
            None => {
                let max_channels = self.max_channels.load(Ordering::Relaxed);
                if self.channels.len() >= max_channels {
                    return Err(CoreError::ChannelLimit(max_channels));
                }
                let mut created = false;
                let ch = self
                    .channels
                    .entry(name.clone())
                    .or_insert_with(|| {
                        created = true;
                        let shared = self.shared.clone();
                        let ch =
                            Channel::from_snapshot(name.clone(), shared, snapshot.clone(), now);
                        self.count_in(&ch);
                        Arc::new(ch)
                    })
                    .clone();
                if created {
                    return Ok(Installed::Created);
                }
                ch
            }
        };
        let head = ch.head();
        if head.epoch == snapshot.epoch && head.seq >= snapshot.head {
            return Ok(Installed::Current);
        }
        if head.epoch == snapshot.epoch {
            let joins = snapshot
                .events
                .first()
                .is_some_and(|e| e.seq <= head.seq + 1);
            if joins {
                for event in snapshot.events.iter().filter(|e| e.seq > head.seq) {
                    if !matches!(ch.apply(event.clone(), now), Ok(Applied::Applied)) {
                        break;
                    }
                }
                if ch.head().seq == snapshot.head {
                    return Ok(Installed::CaughtUp);
                }
            }
        }
        // A reclaimed channel needs no restart: the next subscriber installs it afresh.
        let _ = ch.restart(snapshot, now);
        Ok(Installed::Restarted)
    }

    /// Applies one event sequenced by the shared engine to its mirror, if this node mirrors it.
    pub fn apply(&self, event: Arc<Event>) -> Option<Applied> {
        let ch = self.channels.get(&event.channel).map(|c| c.clone())?;
        ch.apply(event, Instant::now()).ok()
    }

    /// Epoch and head of a channel this node holds.
    pub fn head_of(&self, name: &ChannelName) -> Option<Position> {
        let ch = self.channels.get(name).map(|c| c.clone())?;
        Some(ch.head())
    }

    /// Names of every channel held now.
    pub fn names(&self) -> Vec<ChannelName> {
        self.channels.iter().map(|e| e.key().clone()).collect()
    }

    /// One pass of upkeep over every channel. Each channel is locked on its own, briefly; the map
    /// is only write-locked (one shard) to remove a channel that still qualifies under its lock.
    pub fn prune(&self) -> usize {
        let now = Instant::now();
        let candidates: Vec<Arc<Channel>> = self.channels.iter().map(|e| e.clone()).collect();
        let mut reclaimed = 0;
        for ch in candidates {
            if ch.prune(now)
                && self
                    .channels
                    .remove_if(ch.name(), |_, c| c.try_reclaim(now))
                    .is_some()
            {
                if ch.take_unpublished() {
                    self.unpublished.fetch_sub(1, Ordering::Relaxed);
                } else {
                    self.count_out(&ch);
                }
                reclaimed += 1;
            }
        }
        self.reclaimed.fetch_add(reclaimed, Ordering::Relaxed);
        reclaimed
    }

    /// Live subscribers of a channel right now (0 if it does not exist).
    pub fn subscriber_count_of(&self, name: &str) -> usize {
        self.channels
            .get(name)
            .map(|c| c.clone())
            .map_or(0, |c| c.subscriber_count())
    }

    pub fn stats(&self) -> RegistryStats {
        RegistryStats {
            channels: self.channels.len(),
            history_events: self.shared.history_events.load(Ordering::Relaxed),
            history_bytes: self.shared.history_bytes.load(Ordering::Relaxed),
        }
    }

    pub fn limits(&self) -> RegistryLimits {
        RegistryLimits {
            channel: **self.shared.limits.load(),
            max_channels: self.max_channels.load(Ordering::Relaxed),
        }
    }

    /// Replaces the limits (a configuration reload). Existing channels and subscriptions stay;
    /// the new limits apply from each channel's next publish, subscribe, read or upkeep pass. A
    /// lower channel limit reclaims nothing: it only refuses new channels until the count is
    /// under it. A live buffer size applies to live feeds created afterwards.
    pub fn set_limits(&self, limits: RegistryLimits) {
        self.shared.limits.store(Arc::new(limits.channel));
        self.max_channels
            .store(limits.max_channels, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::value::RawValue;

    use super::*;
    use crate::core::channel::{Snapshot, Start};
    use crate::core::history::HistoryLimits;
    use crate::core::idempotency::IdempotencyLimits;
    use crate::core::ResetReason;

    fn limits(max_events: usize) -> RegistryLimits {
        RegistryLimits {
            channel: ChannelLimits {
                history: HistoryLimits {
                    max_events,
                    max_age: Duration::from_secs(600),
                },
                idempotency: IdempotencyLimits {
                    window: Duration::from_secs(300),
                    max_keys: 100,
                },
                live_buffer: 64,
                idle_reclaim: Duration::from_secs(60),
                max_history_bytes: 1 << 30,
            },
            max_channels: 10,
        }
    }

    fn draft(id: Option<&str>) -> EventDraft {
        EventDraft::new(
            Arc::from("n"),
            RawValue::from_string("{}".into()).unwrap(),
            id.map(Arc::from),
        )
    }

    fn ch(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    #[tokio::test]
    async fn seq_is_plus_one_per_channel() {
        let r = Registry::new(limits(100));
        let a: Vec<u64> = (0..5)
            .map(|_| r.publish(&ch("a"), &draft(None)).unwrap().seq)
            .collect();
        assert_eq!(a, vec![1, 2, 3, 4, 5]);
        assert_eq!(r.publish(&ch("b"), &draft(None)).unwrap().seq, 1);
        assert_eq!(r.stats().history_events, 6);
    }

    #[tokio::test]
    async fn same_id_returns_the_original_seq_and_publishes_nothing() {
        let r = Registry::new(limits(100));
        let mut sub = r.subscribe(&ch("a"), None).unwrap();
        let first = r.publish(&ch("a"), &draft(Some("k"))).unwrap();
        let again = r.publish(&ch("a"), &draft(Some("k"))).unwrap();
        assert!(!first.duplicate && again.duplicate);
        assert_eq!(first.seq, again.seq);
        assert_eq!(sub.live.recv().await.unwrap().seq, 1);
        assert!(sub.live.try_recv().is_err());
        assert_eq!(r.publish(&ch("a"), &draft(None)).unwrap().seq, 2);
    }

    #[tokio::test]
    async fn resume_replays_then_streams_without_gap_or_duplicate() {
        let r = Registry::new(limits(100));
        let first = r.publish(&ch("a"), &draft(None)).unwrap();
        for _ in 0..4 {
            r.publish(&ch("a"), &draft(None)).unwrap();
        }
        let pos = Position {
            epoch: first.epoch.clone(),
            seq: 2,
        };
        let mut sub = r.subscribe(&ch("a"), Some(&pos)).unwrap();
        r.publish(&ch("a"), &draft(None)).unwrap();
        let Start::Replay(replay) = sub.start else {
            panic!("expected replay")
        };
        let mut seen: Vec<u64> = replay.iter().map(|e| e.seq).collect();
        seen.push(sub.live.recv().await.unwrap().seq);
        assert_eq!(seen, vec![3, 4, 5, 6]);
        assert_eq!(sub.head.seq, 5);
    }

    #[tokio::test]
    async fn void_positions_reset() {
        let r = Registry::new(limits(3));
        let p = r.publish(&ch("a"), &draft(None)).unwrap();
        for _ in 0..5 {
            r.publish(&ch("a"), &draft(None)).unwrap();
        }
        let start = |epoch: &Epoch, seq| {
            r.subscribe(
                &ch("a"),
                Some(&Position {
                    epoch: epoch.clone(),
                    seq,
                }),
            )
            .unwrap()
            .start
        };
        use crate::core::Epoch;
        assert!(matches!(
            start(&p.epoch, 1),
            Start::Reset(ResetReason::HistoryExceeded)
        ));
        assert!(matches!(
            start(&Epoch::from_client("other"), 6),
            Start::Reset(ResetReason::EpochChanged)
        ));
        assert!(matches!(
            start(&p.epoch, 9),
            Start::Reset(ResetReason::AheadOfHead)
        ));
        assert!(matches!(start(&p.epoch, 3), Start::Replay(v) if v.len() == 3));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_empty_channels_are_reclaimed_with_a_new_epoch() {
        let r = Registry::new(limits(100));
        let old = r.publish(&ch("a"), &draft(None)).unwrap().epoch;
        let sub = r.subscribe(&ch("b"), None).unwrap();
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(r.prune(), 0, "a still holds history, b has a subscriber");
        tokio::time::advance(Duration::from_secs(481)).await;
        assert_eq!(
            r.prune(),
            1,
            "a's history aged out and it is idle; b has a subscriber"
        );
        assert_eq!(r.stats().channels, 1);
        let new = r.publish(&ch("a"), &draft(None)).unwrap();
        assert_ne!(new.epoch, old);
        assert_eq!(new.seq, 1);
        drop(sub);
    }

    #[tokio::test]
    async fn global_byte_cap_trims_the_publishing_channel() {
        let mut l = limits(1000);
        l.channel.max_history_bytes = 2000;
        let r = Registry::new(l);
        for _ in 0..50 {
            r.publish(&ch("a"), &draft(None)).unwrap();
        }
        let stats = r.stats();
        assert!(stats.history_bytes <= 2000, "{stats:?}");
        assert!(stats.history_events >= 1);
    }

    #[tokio::test]
    async fn new_limits_apply_to_existing_channels_without_touching_subscribers() {
        let r = Registry::new(limits(100));
        let mut sub = r.subscribe(&ch("a"), None).unwrap();
        for _ in 0..10 {
            r.publish(&ch("a"), &draft(None)).unwrap();
        }
        let mut lower = limits(3);
        lower.max_channels = 1;
        r.set_limits(lower);
        assert_eq!(r.limits().max_channels, 1);
        r.prune();
        assert_eq!(
            r.stats().history_events,
            3,
            "upkeep trims to the lower count"
        );
        assert_eq!(
            r.publish(&ch("b"), &draft(None)).unwrap_err(),
            CoreError::ChannelLimit(1)
        );
        r.publish(&ch("a"), &draft(None)).unwrap();
        assert_eq!(r.stats().history_events, 3);
        let seqs: Vec<u64> = (0..11).map(|_| sub.live.try_recv().unwrap().seq).collect();
        assert_eq!(
            seqs,
            (1..=11).collect::<Vec<_>>(),
            "the subscriber missed nothing"
        );
    }

    #[tokio::test]
    async fn subscribers_creating_channels_never_take_a_publishers_place() {
        let r = Registry::new(limits(10));
        for i in 0..10 {
            r.subscribe(&ch(&format!("s{i}")), None).unwrap();
        }
        assert_eq!(
            r.read(&ch("s10"), &ReadFrom::Head, 10, false).unwrap_err(),
            CoreError::ChannelLimit(10),
            "subscribers are held to their own bound"
        );
        for i in 0..10 {
            r.publish(&ch(&format!("p{i}")), &draft(None)).unwrap();
        }
        assert_eq!(
            r.publish(&ch("p10"), &draft(None)).unwrap_err(),
            CoreError::ChannelLimit(10)
        );
        // Publishing to a channel a subscriber created moves it to the publishers' count (an
        // existing channel is never refused), which makes room for a subscriber.
        assert_eq!(r.unpublished.load(Ordering::Relaxed), 10);
        r.publish(&ch("s0"), &draft(None)).unwrap();
        assert_eq!(r.unpublished.load(Ordering::Relaxed), 9);
        r.subscribe(&ch("s10"), None).unwrap();
    }

    #[tokio::test]
    async fn channel_count_is_bounded() {
        let r = Registry::new(limits(10));
        for i in 0..10 {
            r.publish(&ch(&format!("c{i}")), &draft(None)).unwrap();
        }
        assert_eq!(
            r.publish(&ch("one-more"), &draft(None)).unwrap_err(),
            CoreError::ChannelLimit(10)
        );
        assert!(r.publish(&ch("c3"), &draft(None)).is_ok());
    }

    fn event(name: &str, epoch: &crate::core::Epoch, seq: u64) -> Arc<Event> {
        Arc::new(Event::build(
            ch(name),
            seq,
            epoch.clone(),
            &draft(None),
            Arc::from(format!("e{seq}")),
            crate::core::event::now_ms(),
            Instant::now(),
        ))
    }

    fn snapshot(name: &str, epoch: &crate::core::Epoch, from: u64, head: u64) -> Snapshot {
        Snapshot {
            epoch: epoch.clone(),
            head,
            events: (from..=head).map(|s| event(name, epoch, s)).collect(),
        }
    }

    #[tokio::test]
    async fn a_mirror_serves_only_installed_channels_and_applies_in_order() {
        let r = Registry::mirror(limits(100));
        assert!(matches!(
            r.subscribe(&ch("m"), None),
            Err(CoreError::NotMirrored(_))
        ));
        let ep = crate::core::Epoch::from_client("e1");
        assert_eq!(
            r.install(&ch("m"), snapshot("m", &ep, 1, 3)).unwrap(),
            Installed::Created
        );
        let mut sub = r.subscribe(&ch("m"), None).unwrap();
        assert_eq!(sub.head.seq, 3);
        assert_eq!(r.apply(event("m", &ep, 3)), Some(Applied::Stale));
        assert_eq!(r.apply(event("m", &ep, 5)), Some(Applied::Gap { head: 3 }));
        assert_eq!(r.apply(event("m", &ep, 4)), Some(Applied::Applied));
        assert_eq!(sub.live.recv().await.unwrap().seq, 4);
        let other = crate::core::Epoch::from_client("e2");
        assert_eq!(r.apply(event("m", &other, 5)), Some(Applied::OtherEpoch));
        assert_eq!(r.apply(event("unknown", &ep, 1)), None);
        // A snapshot further on joins up: the missing events are applied, live.
        assert_eq!(
            r.install(&ch("m"), snapshot("m", &ep, 3, 6)).unwrap(),
            Installed::CaughtUp
        );
        assert_eq!(sub.live.recv().await.unwrap().seq, 5);
        assert_eq!(sub.live.recv().await.unwrap().seq, 6);
    }

    #[tokio::test]
    async fn a_new_epoch_or_a_gap_restarts_the_mirror_and_cuts_its_subscribers_off() {
        let r = Registry::mirror(limits(100));
        let ep = crate::core::Epoch::from_client("e1");
        r.install(&ch("m"), snapshot("m", &ep, 1, 2)).unwrap();
        let mut sub = r.subscribe(&ch("m"), None).unwrap();
        // History no longer reaches back to the mirror's head: restart.
        assert_eq!(
            r.install(&ch("m"), snapshot("m", &ep, 5, 7)).unwrap(),
            Installed::Restarted
        );
        assert!(matches!(
            sub.live.recv().await,
            Err(crate::core::live::RecvError::Closed)
        ));
        let pos = Position {
            epoch: ep.clone(),
            seq: 2,
        };
        let again = r.subscribe(&ch("m"), Some(&pos)).unwrap();
        assert!(matches!(
            again.start,
            Start::Reset(ResetReason::HistoryExceeded)
        ));
        let e2 = crate::core::Epoch::from_client("e2");
        assert_eq!(
            r.install(&ch("m"), snapshot("m", &e2, 1, 1)).unwrap(),
            Installed::Restarted
        );
        assert_eq!(r.head_of(&ch("m")).unwrap().epoch, e2);
        assert_eq!(r.stats().history_events, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unwatched_mirror_is_reclaimed_with_its_history() {
        let r = Registry::mirror(limits(100));
        let ep = crate::core::Epoch::from_client("e1");
        r.install(&ch("m"), snapshot("m", &ep, 1, 3)).unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(r.prune(), 1, "the engine keeps the history of record");
        assert_eq!(r.stats(), RegistryStats::default());
    }

    /// Owners by the channel's first letter; owner "a" keeps 300 history bytes per channel.
    #[derive(Debug)]
    struct ByLetter;

    impl ChannelOwners for ByLetter {
        fn owner(&self, channel: &str) -> Arc<str> {
            Arc::from(&channel[..1])
        }
        fn max_history_bytes(&self, channel: &str) -> Option<usize> {
            channel.starts_with('a').then_some(300)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn channels_published_to_are_counted_per_owner_until_reclaimed() {
        let r = Registry::new(limits(100));
        r.set_owners(Arc::new(ByLetter));
        r.publish(&ch("a1"), &draft(None)).unwrap();
        r.publish_all(&[ch("a2"), ch("b1")], &draft(None)).unwrap();
        // A subscriber's empty channel is no owner's until it is published to.
        let sub = r.subscribe(&ch("a3"), None).unwrap();
        assert_eq!((r.channels_of("a"), r.channels_of("b")), (2, 1));
        assert!(r.holds_published(&ch("a1")) && !r.holds_published(&ch("a3")));
        r.publish(&ch("a3"), &draft(None)).unwrap();
        assert_eq!(r.channels_of("a"), 3);
        drop(sub);
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(r.prune(), 4);
        assert_eq!((r.channels_of("a"), r.channels_of("b")), (0, 0));
        // An unpublished channel reclaimed leaves the counts alone.
        drop(r.subscribe(&ch("a4"), None).unwrap());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(r.prune(), 1);
        assert_eq!(r.channels_of("a"), 0);
    }

    #[tokio::test]
    async fn an_owner_s_channels_keep_at_most_its_history_bytes() {
        let r = Registry::new(limits(1000));
        r.set_owners(Arc::new(ByLetter));
        for _ in 0..50 {
            r.publish(&ch("a1"), &draft(None)).unwrap();
            r.publish(&ch("b1"), &draft(None)).unwrap();
        }
        let kept = |name: &str| {
            let read = r.read(&ch(name), &ReadFrom::Oldest, 1000, false).unwrap();
            read.events.iter().map(|e| e.seq).collect::<Vec<u64>>()
        };
        let a = kept("a1");
        assert!(a.len() < 50 && a.last() == Some(&50), "{a:?}");
        assert_eq!(kept("b1").len(), 50);
    }
}
