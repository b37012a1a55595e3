//! One channel: its epoch, its sequence counter, its history, its idempotency window and its live
//! fan-out. Publishing, subscribing and reading all take the channel's one short lock, which is
//! what makes "snapshot history and join live" a single step with no gap and no duplicate.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::live::{self, Delivery};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::history::{History, HistoryLimits, Since};
use super::idempotency::{IdempotencyLimits, IdempotencyWindow};
use super::{ChannelName, Epoch, Event, EventDraft, Position, ResetReason};

/// Limits every channel of a registry obeys.
#[derive(Debug, Clone, Copy)]
pub struct ChannelLimits {
    pub history: HistoryLimits,
    pub idempotency: IdempotencyLimits,
    /// How many events a live subscriber may fall behind before it is cut off as slow.
    pub live_buffer: usize,
    /// How long a channel with no subscribers and no history is kept before it is reclaimed.
    pub idle_reclaim: Duration,
    /// Global cap on the bytes all histories hold together.
    pub max_history_bytes: usize,
}

/// Figures shared by every channel of a registry, updated under each channel's own lock.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Read without a lock on every publish, subscribe and read; replaced whole by a reload.
    pub(crate) limits: ArcSwap<ChannelLimits>,
    pub(crate) history_bytes: AtomicUsize,
    pub(crate) history_events: AtomicUsize,
    /// The channels mirror a shared engine: the engine sequences and keeps the history of record,
    /// so an unwatched channel may be reclaimed with history left (it is loaded again on demand).
    pub(crate) mirror: bool,
    /// Who owns each channel, when the layer above has said (set once, at start).
    pub(crate) owners: OnceLock<Arc<dyn ChannelOwners>>,
}

/// Who owns each channel, told to the registry by the layer above (the node's tenants): the
/// registry counts channels per owner, and an owner may keep less history per channel than
/// the node does. Answers from the configuration in force at the call.
pub trait ChannelOwners: Send + Sync + std::fmt::Debug {
    /// The id of `channel`'s owner.
    fn owner(&self, channel: &str) -> Arc<str>;
    /// The most history bytes `channel` keeps, when its owner sets a limit of its own.
    fn max_history_bytes(&self, channel: &str) -> Option<usize>;
}

/// The channel was reclaimed between lookup and lock; look it up again.
#[derive(Debug)]
pub(crate) struct Reclaimed;

pub struct Channel {
    name: ChannelName,
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// Created by a subscribe or a read and not published to since: counted against the
    /// registry's bound for such channels, not against the publishers' (see `Registry`).
    unpublished: AtomicBool,
    /// The owner this channel was counted under when created (a reload may move the channel;
    /// it is uncounted from the same owner).
    owner: Option<Arc<str>>,
}

struct State {
    epoch: Epoch,
    /// Last seq assigned; 0 before the first event of the epoch.
    head: u64,
    history: History,
    ids: IdempotencyWindow,
    /// Created when the first live subscriber arrives, dropped by the pruner when none is left.
    live: Option<live::Sender<Arc<Event>>>,
    last_active: Instant,
    /// Set under the lock when the registry removes the channel; nothing joins it afterwards.
    reclaimed: bool,
}

/// What became of an event sequenced elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Already held: at or before the head.
    Stale,
    /// Events between the head and this one are missing; nothing was applied.
    Gap {
        head: u64,
    },
    /// The event belongs to another epoch; nothing was applied.
    OtherEpoch,
}

/// A channel's state as held elsewhere: its epoch, its head and the history it still has,
/// contiguous and ending at `head`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub epoch: Epoch,
    pub head: u64,
    pub events: Vec<Arc<Event>>,
}

impl Snapshot {
    fn fresh() -> Self {
        Self {
            epoch: Epoch::random(),
            head: 0,
            events: Vec::new(),
        }
    }
}

/// The result of a publish.
#[derive(Debug, Clone)]
pub struct Published {
    pub seq: u64,
    pub epoch: Epoch,
    pub id: Arc<str>,
    /// The same id was published on this channel within the idempotency window.
    pub duplicate: bool,
    /// The new event; `None` for a duplicate.
    pub event: Option<Arc<Event>>,
}

/// How a subscription starts.
#[derive(Debug)]
pub enum Start {
    /// No position given: live from the head.
    Live,
    /// Every event after the position, then live.
    Replay(Vec<Arc<Event>>),
    /// The position cannot be honoured; continue live from the head.
    Reset(ResetReason),
}

/// A live subscription: where the channel stood when it began, what to replay, and the live feed
/// of every event after `head`.
#[derive(Debug)]
pub struct Subscription {
    pub channel: ChannelName,
    pub head: Position,
    pub start: Start,
    pub live: live::Receiver<Arc<Event>>,
}

/// Where a read starts.
#[derive(Debug, Clone)]
pub enum ReadFrom {
    /// Nothing old: the answer is empty and `next` is the head.
    Head,
    /// The oldest event history holds.
    Oldest,
    /// After a seq in the current epoch, whatever it is.
    AfterInCurrent(u64),
    /// After a full position.
    After(Position),
}

/// The answer to a poll.
#[derive(Debug)]
pub struct Read {
    pub epoch: Epoch,
    pub head: u64,
    pub events: Vec<Arc<Event>>,
    pub reset: Option<ResetReason>,
    /// The position the client holds after this answer.
    pub next: Position,
    /// When asked for and there is nothing to return: a live feed joined in the same step, so a
    /// long poll cannot miss an event published after this read.
    pub watch: Option<live::Receiver<Arc<Event>>>,
}

impl Channel {
    pub(crate) fn new(name: ChannelName, shared: Arc<Shared>, now: Instant) -> Self {
        Self::from_snapshot(name, shared, Snapshot::fresh(), now)
    }

    /// A channel that starts where a snapshot taken elsewhere stands (a mirror of a shared engine).
    pub(crate) fn from_snapshot(
        name: ChannelName,
        shared: Arc<Shared>,
        snapshot: Snapshot,
        now: Instant,
    ) -> Self {
        let owner = shared.owners.get().map(|o| o.owner(name.as_str()));
        let ch = Self {
            owner,
            name,
            shared,
            state: Mutex::new(State {
                epoch: snapshot.epoch.clone(),
                head: snapshot.head,
                history: History::default(),
                ids: IdempotencyWindow::default(),
                live: None,
                last_active: now,
                reclaimed: false,
            }),
            unpublished: AtomicBool::new(false),
        };
        if !snapshot.events.is_empty() {
            ch.restart(snapshot, now)
                .expect("a channel being built is not reclaimed");
        }
        ch
    }

    /// Marks a channel just created by a subscribe or a read.
    pub(crate) fn mark_unpublished(self) -> Self {
        self.unpublished.store(true, Ordering::Relaxed);
        self
    }

    /// Created by a subscribe or a read and not published to since.
    pub(crate) fn is_unpublished(&self) -> bool {
        self.unpublished.load(Ordering::Relaxed)
    }

    /// Clears the unpublished mark; true if it was set (the caller then uncounts it once).
    pub(crate) fn take_unpublished(&self) -> bool {
        self.unpublished.load(Ordering::Relaxed) && self.unpublished.swap(false, Ordering::AcqRel)
    }

    pub fn name(&self) -> &ChannelName {
        &self.name
    }

    /// The owner the channel is counted under, if the registry knows owners.
    pub(crate) fn owner(&self) -> Option<&Arc<str>> {
        self.owner.as_ref()
    }

    pub(crate) fn publish(
        &self,
        draft: &EventDraft,
        ts: u64,
        now: Instant,
    ) -> Result<Published, Reclaimed> {
        let limits = self.shared.limits.load();
        let mut st = self.state.lock();
        if st.reclaimed {
            return Err(Reclaimed);
        }
        st.last_active = now;
        if draft.idempotent {
            if let Some(seq) = st.ids.get(&draft.id, now, &limits.idempotency) {
                return Ok(Published {
                    seq,
                    epoch: st.epoch.clone(),
                    id: draft.id.clone(),
                    duplicate: true,
                    event: None,
                });
            }
        }
        let seq = st.head + 1;
        let id = draft.id.clone();
        let event = Arc::new(Event::build(
            self.name.clone(),
            seq,
            st.epoch.clone(),
            draft,
            id.clone(),
            ts,
            now,
        ));
        if draft.idempotent {
            st.ids.remember(id.clone(), seq, now, &limits.idempotency);
        }
        let delivery = self.append(&mut st, &limits, event.clone(), now);
        let published = Published {
            seq,
            epoch: st.epoch.clone(),
            id,
            duplicate: false,
            event: Some(event),
        };
        drop(st);
        if let Some(delivery) = delivery {
            delivery.deliver();
        }
        Ok(published)
    }

    /// Moves the shared figures from what this channel held before to what it holds now.
    fn account(&self, len_before: usize, bytes_before: usize, history: &History) {
        adjust(&self.shared.history_events, len_before, history.len());
        adjust(&self.shared.history_bytes, bytes_before, history.bytes());
    }

    /// Appends the next event of the current epoch to history, keeps the caps and puts it in the
    /// live feed. The caller holds the lock and has checked `event.seq == head + 1`; it delivers
    /// the event to the feed's receivers once it has let the lock go, so that new subscribers,
    /// other publishers and readers of history do not wait for the writes.
    #[must_use]
    fn append(
        &self,
        st: &mut State,
        limits: &ChannelLimits,
        event: Arc<Event>,
        now: Instant,
    ) -> Option<Delivery<Arc<Event>>> {
        st.head = event.seq;
        let (len_before, bytes_before) = (st.history.len(), st.history.bytes());
        st.history.push(event.clone(), &limits.history);
        st.history.trim_age(limits.history.max_age, now);
        let grown = st.history.bytes().saturating_sub(bytes_before);
        let total = self
            .shared
            .history_bytes
            .fetch_add(grown, Ordering::Relaxed)
            + grown;
        if total > limits.max_history_bytes {
            // Over the global cap: this channel pays with its own oldest events, never the new one.
            st.history.trim_bytes(total - limits.max_history_bytes, 1);
        }
        // The owner's own limit per channel, read at each append so a reload applies at once.
        let own = (self.shared.owners.get()).and_then(|o| o.max_history_bytes(self.name.as_str()));
        if let Some(cap) = own {
            let held = st.history.bytes();
            if held > cap {
                st.history.trim_bytes(held - cap, 1);
            }
        }
        self.account(len_before, bytes_before + grown, &st.history);
        st.live.as_ref().map(|live| live.push(event))
    }

    /// Applies an event sequenced elsewhere (a mirror of a shared engine). Only the next event of
    /// the current epoch is taken; anything else is reported so the caller can fill or restart.
    pub(crate) fn apply(&self, event: Arc<Event>, now: Instant) -> Result<Applied, Reclaimed> {
        let mut st = self.state.lock();
        if st.reclaimed {
            return Err(Reclaimed);
        }
        if event.epoch != st.epoch {
            return Ok(Applied::OtherEpoch);
        }
        if event.seq <= st.head {
            return Ok(Applied::Stale);
        }
        if event.seq != st.head + 1 {
            return Ok(Applied::Gap { head: st.head });
        }
        let limits = self.shared.limits.load();
        let delivery = self.append(&mut st, &limits, event, now);
        drop(st);
        if let Some(delivery) = delivery {
            delivery.deliver();
        }
        Ok(Applied::Applied)
    }

    /// Replaces the whole state with a snapshot taken elsewhere (a new epoch, or a gap that could
    /// not be filled). Live subscribers are cut off, so each resumes from its position and gets
    /// the replay or the `reset` its position calls for.
    pub(crate) fn restart(&self, snapshot: Snapshot, now: Instant) -> Result<(), Reclaimed> {
        let limits = self.shared.limits.load();
        let mut st = self.state.lock();
        if st.reclaimed {
            return Err(Reclaimed);
        }
        let (len_before, bytes_before) = (st.history.len(), st.history.bytes());
        st.epoch = snapshot.epoch;
        st.head = snapshot.head;
        st.history = History::default();
        st.ids = IdempotencyWindow::default();
        st.live = None;
        for event in snapshot.events {
            st.history.push(event, &limits.history);
        }
        st.history.trim_age(limits.history.max_age, now);
        self.account(len_before, bytes_before, &st.history);
        Ok(())
    }

    /// The channel's epoch and last seq.
    pub fn head(&self) -> Position {
        let st = self.state.lock();
        Position {
            epoch: st.epoch.clone(),
            seq: st.head,
        }
    }

    pub(crate) fn subscribe(
        &self,
        since: Option<&Position>,
        now: Instant,
    ) -> Result<Subscription, Reclaimed> {
        let mut st = self.state.lock();
        if st.reclaimed {
            return Err(Reclaimed);
        }
        st.last_active = now;
        let capacity = self.shared.limits.load().live_buffer.max(1);
        let live = st
            .live
            .get_or_insert_with(|| live::channel(capacity))
            .subscribe();
        let start = match since {
            None => Start::Live,
            Some(p) if p.epoch != st.epoch => Start::Reset(ResetReason::EpochChanged),
            Some(p) => match st.history.since(p.seq, st.head, usize::MAX) {
                Since::Events(events) => Start::Replay(events),
                Since::Gap(reason) => Start::Reset(reason),
            },
        };
        Ok(Subscription {
            channel: self.name.clone(),
            head: Position {
                epoch: st.epoch.clone(),
                seq: st.head,
            },
            start,
            live,
        })
    }

    pub(crate) fn read(
        &self,
        from: &ReadFrom,
        limit: usize,
        watch: bool,
        now: Instant,
    ) -> Result<Read, Reclaimed> {
        let mut st = self.state.lock();
        if st.reclaimed {
            return Err(Reclaimed);
        }
        st.last_active = now;
        let head = st.head;
        let (events, reset, after) = match from {
            ReadFrom::Head => (Vec::new(), None, head),
            ReadFrom::Oldest => {
                let events = st.history.oldest(limit);
                let after = st.history.first_seq().map_or(head, |s| s - 1);
                (events, None, after)
            }
            ReadFrom::After(p) if p.epoch != st.epoch => {
                (Vec::new(), Some(ResetReason::EpochChanged), head)
            }
            ReadFrom::After(Position { seq, .. }) | ReadFrom::AfterInCurrent(seq) => {
                match st.history.since(*seq, head, limit) {
                    Since::Events(events) => (events, None, *seq),
                    Since::Gap(reason) => (Vec::new(), Some(reason), head),
                }
            }
        };
        let next_seq = events.last().map_or(after, |e| e.seq);
        let watch = (watch && events.is_empty() && reset.is_none()).then(|| {
            let capacity = self.shared.limits.load().live_buffer.max(1);
            st.live
                .get_or_insert_with(|| live::channel(capacity))
                .subscribe()
        });
        Ok(Read {
            epoch: st.epoch.clone(),
            head,
            next: Position {
                epoch: st.epoch.clone(),
                seq: next_seq,
            },
            events,
            reset,
            watch,
        })
    }

    /// Background upkeep: trims aged events (and, after a reload lowered the limit, events over
    /// the count), forgets expired ids, drops an unused live feed. Returns whether the channel
    /// now looks reclaimable.
    pub(crate) fn prune(&self, now: Instant) -> bool {
        let limits = self.shared.limits.load();
        let mut st = self.state.lock();
        let st = &mut *st;
        let (len_before, bytes_before) = (st.history.len(), st.history.bytes());
        st.history.trim_count(limits.history.max_events);
        st.history.trim_age(limits.history.max_age, now);
        self.account(len_before, bytes_before, &st.history);
        st.ids.expire(now, &limits.idempotency);
        if st.live.as_ref().is_some_and(|l| l.receiver_count() == 0) {
            st.live = None;
        }
        Self::is_reclaimable(st, &limits, self.shared.mirror, now)
    }

    /// Marks the channel reclaimed if it still qualifies. Called by the registry while it removes
    /// the channel from its map, so nothing can join it in between.
    pub(crate) fn try_reclaim(&self, now: Instant) -> bool {
        let mut st = self.state.lock();
        if !st.reclaimed
            && Self::is_reclaimable(&st, &self.shared.limits.load(), self.shared.mirror, now)
        {
            st.reclaimed = true;
            // A mirror may go with history left; what it held leaves the shared figures.
            let (len_before, bytes_before) = (st.history.len(), st.history.bytes());
            st.history = History::default();
            self.account(len_before, bytes_before, &st.history);
        }
        st.reclaimed
    }

    fn is_reclaimable(st: &State, limits: &ChannelLimits, mirror: bool, now: Instant) -> bool {
        st.live.as_ref().is_none_or(|l| l.receiver_count() == 0)
            && (mirror || st.history.is_empty())
            && now.saturating_duration_since(st.last_active) >= limits.idle_reclaim
    }

    /// Live subscribers right now.
    pub fn subscriber_count(&self) -> usize {
        self.state
            .lock()
            .live
            .as_ref()
            .map_or(0, |l| l.receiver_count())
    }
}

fn adjust(counter: &AtomicUsize, before: usize, after: usize) {
    if after >= before {
        counter.fetch_add(after - before, Ordering::Relaxed);
    } else {
        counter.fetch_sub(before - after, Ordering::Relaxed);
    }
}
