//! A channel's live feed: one sender (the channel, under its lock), many receivers (the
//! connections), each item delivered to every receiver in order, a bounded ring behind them.
//!
//! It does what `tokio::sync::broadcast` did here, shaped by the fan-out's numbers: with 1,000
//! receivers on one channel, every event is taken by 1,000 tasks on two cores. A broadcast
//! receiver takes its slot's read lock and, to wait, the channel's tail lock, once per event each,
//! all contended; and it registers its waker again for every event. Here a receiver's waker is
//! registered once and kept ([`TaskSlot`]), waiting costs one atomic load of the tail, and taking
//! an item is a lock-free load of its slot.
//!
//! A receiver may also take items on the sender's thread ([`Direct`]): a connection waiting with
//! nothing unsent writes an event to its socket there, and its task is not woken at all.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;

/// Why a receive failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The receiver fell further behind than the ring holds; it skipped this many items and
    /// goes on from the oldest one the ring still holds.
    #[error("fell behind by {0} items")]
    Lagged(u64),
    /// The sender is gone and every item was taken.
    #[error("the feed ended")]
    Closed,
}

/// What [`Receiver::try_recv`] found instead of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    Empty,
    Lagged(u64),
    Closed,
}

/// A task's waker, kept across wake-ups: waking it does not take it out, so its owner does not
/// register it again on every poll.
#[derive(Default)]
pub(crate) struct TaskSlot(Mutex<Option<Waker>>);

impl TaskSlot {
    pub(crate) fn wake(&self) {
        if let Some(task) = &*self.0.lock() {
            task.wake_by_ref();
        }
    }
}

/// The polling side's copy of the waker in a [`TaskSlot`]: a poll by the same task only compares
/// wakers; the slot's lock is taken only when the task changed.
#[derive(Default)]
pub(crate) struct Registration(Option<Waker>);

impl Registration {
    #[inline]
    pub(crate) fn register(&mut self, slot: &TaskSlot, waker: &Waker) {
        if self.0.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return;
        }
        let task = waker.clone();
        *slot.0.lock() = Some(task.clone());
        self.0 = Some(task);
    }
}

/// Most receivers a send offers its item to directly ([`Direct`]). The offers run on the
/// sender's thread, one non-blocking write each (a few microseconds), before the publish is
/// answered: this bounds what a publish spends on them. A channel with more receivers wakes
/// their tasks, which spread the writes over the worker threads.
pub(crate) const DIRECT_MAX: usize = 1024;

/// A receiver's way of taking an item on the sender's thread, without waking its task.
pub(crate) trait Direct<T>: Send + Sync {
    /// Offers item number `index`. `next` is the receiver's number of the next item to take; the
    /// implementation may read and advance it only while the receiver's task is not polling the
    /// receiver (it owns that exclusion). Returns whether the item was taken; when it was not, the
    /// receiver's task is woken and takes it in the usual way.
    fn offer(&self, item: &T, index: u64, next: &AtomicU64) -> bool;
}

/// What the sender keeps of each receiver.
struct Entry<T> {
    task: TaskSlot,
    /// Number of the next item the receiver takes: its task's, or the [`Direct`] hook's while the
    /// hook holds it.
    next: AtomicU64,
    direct: OnceLock<Arc<dyn Direct<T>>>,
}

/// An item and its number in the feed (the count of items sent before it).
struct Sent<T> {
    index: u64,
    item: T,
}

struct Shared<T> {
    /// Item `i` sits in `slots[i & mask]` until item `i + slots.len()` replaces it.
    slots: Box<[ArcSwapOption<Sent<T>>]>,
    mask: u64,
    /// Items sent so far. Stored after the item's slot, so a receiver that sees it sees the item.
    tail: AtomicU64,
    closed: AtomicBool,
    /// Every receiver, offered or woken on every send.
    receivers: Mutex<HashMap<u64, Arc<Entry<T>>>>,
    next_id: AtomicU64,
}

/// The sending end. Dropping it ends the feed: receivers take what is left, then get `Closed`.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A feed holding the last `capacity` items (rounded up to a power of two).
pub(crate) fn channel<T>(capacity: usize) -> Sender<T> {
    let len = capacity.max(1).next_power_of_two();
    Sender {
        shared: Arc::new(Shared {
            slots: (0..len).map(|_| ArcSwapOption::empty()).collect(),
            mask: len as u64 - 1,
            tail: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            receivers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }),
    }
}

impl<T> Sender<T> {
    /// Hands `item` to every receiver. One sender: callers serialise sends (the channel's lock).
    #[cfg(test)]
    pub(crate) fn send(&self, item: T) {
        self.push(item).deliver();
    }

    /// Puts `item` in the ring, where receivers find it; [`Delivery::deliver`] then tells them.
    /// One sender: callers serialise pushes (the channel's lock), not deliveries.
    pub(crate) fn push(&self, item: T) -> Delivery<T> {
        let s = &self.shared;
        let index = s.tail.load(Ordering::Relaxed);
        let sent = Arc::new(Sent { index, item });
        s.slots[(index & s.mask) as usize].store(Some(sent.clone()));
        s.tail.store(index + 1, Ordering::Release);
        Delivery {
            shared: s.clone(),
            sent,
        }
    }

    /// A receiver of every item sent from now on.
    pub(crate) fn subscribe(&self) -> Receiver<T> {
        let s = &self.shared;
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        let mut receivers = s.receivers.lock();
        let entry = Arc::new(Entry {
            task: TaskSlot::default(),
            next: AtomicU64::new(s.tail.load(Ordering::Acquire)),
            direct: OnceLock::new(),
        });
        receivers.insert(id, entry.clone());
        drop(receivers);
        Receiver {
            shared: s.clone(),
            id,
            entry,
            registered: Registration::default(),
        }
    }

    pub(crate) fn receiver_count(&self) -> usize {
        self.shared.receivers.lock().len()
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        for rx in self.shared.receivers.lock().values() {
            rx.task.wake();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("live::Sender")
            .field("sent", &self.shared.tail.load(Ordering::Relaxed))
            .finish()
    }
}

/// An item pushed and not yet handed to the receivers.
#[must_use = "receivers are not told of the item until it is delivered"]
pub(crate) struct Delivery<T> {
    shared: Arc<Shared<T>>,
    sent: Arc<Sent<T>>,
}

impl<T> Delivery<T> {
    /// Offers the item to each receiver's hook ([`Direct`]) or wakes its task. Needs no lock of
    /// the caller's: a hook writes an item only to a receiver standing right at it, so two
    /// deliveries racing each other write nothing twice and nothing out of order (the later one
    /// finds the receiver short of its item and wakes its task instead). The receivers are
    /// listed first, so that their lock is not held across the writes.
    pub(crate) fn deliver(self) {
        let receivers: Vec<Arc<Entry<T>>> =
            self.shared.receivers.lock().values().cloned().collect();
        let direct = receivers.len() <= DIRECT_MAX;
        let Sent { index, item } = &*self.sent;
        for rx in &receivers {
            if direct {
                if let Some(hook) = rx.direct.get() {
                    if hook.offer(item, *index, &rx.next) {
                        continue;
                    }
                }
            }
            rx.task.wake();
        }
    }
}

/// The receiving end.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    id: u64,
    entry: Arc<Entry<T>>,
    registered: Registration,
}

impl<T> Receiver<T> {
    /// Has the sender offer items to `hook` before it wakes this receiver's task (see
    /// [`Direct`]). A receiver keeps the first hook it is given.
    pub(crate) fn direct(&self, hook: Arc<dyn Direct<T>>) {
        let _ = self.entry.direct.set(hook);
    }
}

impl<T: Clone> Receiver<T> {
    /// The next item; when there is none yet, the task of `cx` is woken once there is.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        if let Some(done) = self.ready() {
            return Poll::Ready(done);
        }
        // Register, then look again: a send between the two either is seen here or finds the
        // waker (the sender stores the tail before it takes the slot's lock to wake).
        self.registered.register(&self.entry.task, cx.waker());
        self.ready().map_or(Poll::Pending, Poll::Ready)
    }

    /// What a receive gives now; `None` while there is nothing yet.
    fn ready(&mut self) -> Option<Result<T, RecvError>> {
        match self.try_recv() {
            Ok(item) => Some(Ok(item)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
        }
    }

    pub async fn recv(&mut self) -> Result<T, RecvError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let s = &self.shared;
        let next = self.entry.next.load(Ordering::Relaxed);
        let mut tail = s.tail.load(Ordering::Acquire);
        if next >= tail {
            if !s.closed.load(Ordering::Acquire) {
                return Err(TryRecvError::Empty);
            }
            // Every send happened before the close: the tail read now is final.
            tail = s.tail.load(Ordering::Acquire);
            if next >= tail {
                return Err(TryRecvError::Closed);
            }
        }
        let held = s.mask + 1;
        if tail - next > held {
            return Err(self.skip_to(tail - held));
        }
        let slot = s.slots[(next & s.mask) as usize].load();
        match slot.as_ref() {
            Some(sent) if sent.index == next => {
                self.entry.next.store(next + 1, Ordering::Relaxed);
                Ok(sent.item.clone())
            }
            // Overwritten since the tail was read: the sender lapped this receiver.
            _ => {
                let tail = s.tail.load(Ordering::Acquire);
                Err(self.skip_to(tail.saturating_sub(held)))
            }
        }
    }

    fn skip_to(&mut self, oldest: u64) -> TryRecvError {
        let next = self.entry.next.load(Ordering::Relaxed);
        let missed = oldest.saturating_sub(next).max(1);
        self.entry.next.store(next.max(oldest), Ordering::Relaxed);
        TryRecvError::Lagged(missed)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.lock().remove(&self.id);
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("live::Receiver")
            .field("next", &self.entry.next.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn every_receiver_gets_every_item_in_order() {
        let tx = channel::<u64>(8);
        let mut a = tx.subscribe();
        let mut b = tx.subscribe();
        for i in 0..5 {
            tx.send(i);
        }
        let late = tx.subscribe();
        assert_eq!(tx.receiver_count(), 3);
        for rx in [&mut a, &mut b] {
            let got: Vec<u64> = (0..5).map(|_| rx.try_recv().unwrap()).collect();
            assert_eq!(got, [0, 1, 2, 3, 4]);
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        }
        drop(late);
        assert_eq!(tx.receiver_count(), 2);
    }

    #[test]
    fn a_receiver_that_falls_behind_the_ring_is_told_and_goes_on_from_the_oldest() {
        let tx = channel::<u64>(4);
        let mut rx = tx.subscribe();
        for i in 0..10 {
            tx.send(i);
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Lagged(6)));
        let got: Vec<u64> = (0..4).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got, [6, 7, 8, 9]);
    }

    #[test]
    fn a_dropped_sender_ends_the_feed_after_what_is_left() {
        let tx = channel::<u64>(4);
        let mut rx = tx.subscribe();
        tx.send(1);
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
        assert_eq!(rx.recv().now_or_never(), Some(Err(RecvError::Closed)));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_from_another_task() {
        let tx = channel::<u64>(64);
        let mut rx = tx.subscribe();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(i) = rx.recv().await {
                got.push(i);
            }
            got
        });
        for i in 0..1_000 {
            tx.send(i);
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
        let got = reader.await.unwrap();
        // A lag would show as a hole; the ring (64) is larger than any burst between yields.
        assert_eq!(got, (0..1_000).collect::<Vec<_>>());
    }

    /// Takes the items it is offered while `open`, when the receiver is at the item offered.
    struct Taker {
        open: AtomicBool,
        taken: Mutex<Vec<u64>>,
    }

    impl Direct<u64> for Taker {
        fn offer(&self, item: &u64, index: u64, next: &AtomicU64) -> bool {
            if !self.open.load(Ordering::Relaxed) || next.load(Ordering::Relaxed) != index {
                return false;
            }
            next.store(index + 1, Ordering::Relaxed);
            self.taken.lock().push(*item);
            true
        }
    }

    #[derive(Default)]
    struct Wakes(AtomicU64);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn taker(open: bool) -> Arc<Taker> {
        Arc::new(Taker {
            open: AtomicBool::new(open),
            taken: Mutex::new(Vec::new()),
        })
    }

    #[test]
    fn an_item_taken_directly_is_not_received_again_and_one_declined_is() {
        let tx = channel::<u64>(8);
        let mut rx = tx.subscribe();
        let mut plain = tx.subscribe();
        let hook = taker(true);
        rx.direct(hook.clone());
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        assert!(rx.poll_recv(&mut Context::from_waker(&waker)).is_pending());
        tx.send(1);
        tx.send(2);
        assert_eq!(
            wakes.0.load(Ordering::Relaxed),
            0,
            "taken items wake nobody"
        );
        hook.open.store(false, Ordering::Relaxed);
        tx.send(3);
        assert_eq!(
            wakes.0.load(Ordering::Relaxed),
            1,
            "a declined item wakes the task"
        );
        // Behind by one item: the hook is not at the item offered and declines.
        hook.open.store(true, Ordering::Relaxed);
        tx.send(4);
        assert_eq!(*hook.taken.lock(), [1, 2]);
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Ok(4));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        // Caught up, the receiver is offered the next one again.
        tx.send(5);
        assert_eq!(*hook.taken.lock(), [1, 2, 5]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        let all: Vec<u64> = (0..5).map(|_| plain.try_recv().unwrap()).collect();
        assert_eq!(
            all,
            [1, 2, 3, 4, 5],
            "a receiver without a hook gets every item"
        );
    }

    #[test]
    fn deliveries_racing_each_other_write_nothing_twice_and_nothing_out_of_order() {
        let tx = channel::<u64>(8);
        let mut rx = tx.subscribe();
        let hook = taker(true);
        rx.direct(hook.clone());
        let (first, second) = (tx.push(1), tx.push(2));
        // The later delivery first: the receiver is short of its item, so it is left to the task.
        second.deliver();
        first.deliver();
        assert_eq!(*hook.taken.lock(), [1]);
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_channel_with_more_receivers_than_direct_max_wakes_every_task() {
        let tx = channel::<u64>(8);
        let mut receivers: Vec<_> = (0..=DIRECT_MAX).map(|_| tx.subscribe()).collect();
        let hook = taker(true);
        receivers[0].direct(hook.clone());
        tx.send(7);
        assert!(
            hook.taken.lock().is_empty(),
            "not offered past DIRECT_MAX receivers"
        );
        assert_eq!(receivers[0].try_recv(), Ok(7));
        receivers.truncate(DIRECT_MAX);
        tx.send(8);
        assert_eq!(*hook.taken.lock(), [8]);
    }

    #[test]
    fn senders_on_two_threads_never_lose_a_wakeup() {
        // One sender thread, one receiver thread that parks whenever it finds nothing.
        let tx = channel::<u64>(1 << 15);
        let mut rx = tx.subscribe();
        let n = 20_000;
        let reader = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut next = 0;
                while next < n {
                    assert_eq!(rx.recv().await, Ok(next));
                    next += 1;
                }
            })
        });
        for i in 0..n {
            tx.send(i);
        }
        reader.join().unwrap();
    }
}
