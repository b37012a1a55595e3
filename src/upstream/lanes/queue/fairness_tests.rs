//! Tenants sharing one vendor's queues: turn order, shedding from the tenant holding the most,
//! per-channel order within each tenant.

use bytes::Bytes;
use tokio::time::Instant;

use super::*;

fn ev(tenant: &str, channel: &str, id: &str, priority: Priority, size: usize) -> OutboundEvent {
    OutboundEvent::new(channel, "n", id, Bytes::from(vec![b'x'; size]), priority)
        .for_tenant(TenantId::new(tenant))
}

fn rt(tenant: &str, channel: &str, id: &str) -> OutboundEvent {
    ev(tenant, channel, id, Priority::Realtime, 1)
}

fn limits(realtime: usize, bulk: usize, bytes: usize) -> QueueLimits {
    QueueLimits {
        realtime_events: realtime,
        bulk_events: bulk,
        bytes,
        max_age: Duration::from_secs(30),
    }
}

fn ids(batch: &[OutboundEvent]) -> Vec<&str> {
    batch.iter().map(|e| e.id.as_str()).collect()
}

fn take_ids(q: &mut Queues, max: usize, now: Instant) -> Vec<String> {
    let take = q.take(Priority::Realtime, max, now);
    ids(&take.batch).into_iter().map(str::to_owned).collect()
}

#[tokio::test(start_paused = true)]
async fn a_tenant_with_ten_thousand_queued_delays_anothers_next_event_by_one_request() {
    let now = Instant::now();
    let mut q = Queues::new(limits(20_000, 10, 1 << 30));
    for i in 0..10_000 {
        let pushed = q.push(rt("a", &format!("a.{i}"), &format!("a{i}")), now);
        assert_eq!(pushed, Ok(vec![]));
    }
    assert_eq!(q.push(rt("b", "b.0", "b0"), now), Ok(vec![]));
    assert_eq!(take_ids(&mut q, 1, now), ["a0"]);
    assert_eq!(take_ids(&mut q, 1, now), ["b0"]);
    // B's next event arrives while A's request is being taken: at most one A request first.
    assert_eq!(q.push(rt("b", "b.1", "b1"), now), Ok(vec![]));
    assert_eq!(take_ids(&mut q, 1, now), ["a1"]);
    assert_eq!(take_ids(&mut q, 1, now), ["b1"]);
    // With batches, B's next event rides in the very next batch, second at the latest.
    assert_eq!(q.push(rt("b", "b.2", "b2"), now), Ok(vec![]));
    assert_eq!(take_ids(&mut q, 10, now)[..3], ["a2", "b2", "a3"]);
    assert_eq!(q.len(Priority::Realtime), 10_000 - 2 - 9);
}

#[tokio::test(start_paused = true)]
async fn tenants_take_turns_in_an_exact_order() {
    let now = Instant::now();
    let mut q = Queues::new(limits(100, 10, 1 << 20));
    for (t, n) in [("a", 4), ("b", 2), ("c", 3)] {
        for i in 0..n {
            let pushed = q.push(rt(t, &format!("{t}.{i}"), &format!("{t}{i}")), now);
            assert_eq!(pushed, Ok(vec![]));
        }
    }
    assert_eq!(take_ids(&mut q, 4, now), ["a0", "b0", "c0", "a1"]);
    // a was served last, so b and c go first next time.
    assert_eq!(take_ids(&mut q, 4, now), ["b1", "c1", "a2", "c2"]);
    assert_eq!(take_ids(&mut q, 4, now), ["a3"]);
    assert!(take_ids(&mut q, 4, now).is_empty());

    // One event per request: strict alternation while both have events. B's queue ran empty,
    // but B was served longer ago than A, so B keeps its place ahead of A.
    for (t, i) in [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("a", 3), ("b", 1)] {
        let pushed = q.push(rt(t, &format!("{t}.x{i}"), &format!("{t}x{i}")), now);
        assert_eq!(pushed, Ok(vec![]));
    }
    let order: Vec<String> = (0..6).flat_map(|_| take_ids(&mut q, 1, now)).collect();
    assert_eq!(order, ["bx0", "ax0", "bx1", "ax1", "ax2", "ax3"]);
}

#[tokio::test(start_paused = true)]
async fn the_tenant_first_in_turn_fills_the_room_the_others_leave() {
    let now = Instant::now();
    let mut q = Queues::new(limits(200, 10, 1 << 20));
    // B's six events are on one channel: one request must carry all of them, not half.
    for i in 0..6 {
        assert_eq!(q.push(rt("b", "b", &format!("b{i}")), now), Ok(vec![]));
    }
    for i in 0..100 {
        let pushed = q.push(rt("a", &format!("a.{i}"), &format!("a{i}")), now);
        assert_eq!(pushed, Ok(vec![]));
    }
    assert_eq!(
        take_ids(&mut q, 10, now),
        ["b0", "a0", "b1", "b2", "b3", "b4", "b5", "a1", "a2", "a3"]
    );
    // B's channel is in flight and B has nothing else: A fills the next request alone.
    assert_eq!(q.push(rt("b", "b", "b6"), now), Ok(vec![]));
    assert_eq!(take_ids(&mut q, 3, now), ["a4", "a5", "a6"]);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_sheds_the_flooding_tenants_events_not_anothers() {
    let now = Instant::now();
    let mut q = Queues::new(limits(10, 10, 1 << 20));
    for i in 0..2 {
        let pushed = q.push(rt("b", &format!("b.{i}"), &format!("b{i}")), now);
        assert_eq!(pushed, Ok(vec![]));
    }
    let mut shed = Vec::new();
    for i in 0..20 {
        shed.extend(
            q.push(rt("a", &format!("a.{i}"), &format!("a{i}")), now)
                .unwrap(),
        );
    }
    let a_full = Shed {
        priority: Priority::Realtime,
        reason: DropReason::QueueFull,
        tenant: TenantId::new("a"),
    };
    assert_eq!(shed, vec![a_full; 12]);
    // B keeps both of its events; A keeps its 8 newest.
    assert_eq!(
        take_ids(&mut q, 100, now),
        ["b0", "a12", "b1", "a13", "a14", "a15", "a16", "a17", "a18", "a19"]
    );

    // Equal holdings: the pusher's own oldest goes, so a newcomer cannot push out a peer.
    let mut q = Queues::new(limits(4, 10, 1 << 20));
    for (t, i) in [("a", 0), ("b", 0), ("a", 1), ("b", 1)] {
        let pushed = q.push(rt(t, &format!("{t}.{i}"), &format!("{t}{i}")), now);
        assert_eq!(pushed, Ok(vec![]));
    }
    let pushed = q.push(rt("b", "b.2", "b2"), now).unwrap();
    assert_eq!(pushed[0].tenant, TenantId::new("b"));
    assert_eq!(take_ids(&mut q, 10, now), ["a0", "b1", "a1", "b2"]);
}

#[tokio::test(start_paused = true)]
async fn the_byte_limit_sheds_from_the_tenant_holding_the_most_bytes() {
    let now = Instant::now();
    let mut q = Queues::new(limits(100, 100, 100));
    // B's bulk is older than A's realtime flood, yet A holds the most: A's events go.
    for i in 0..2 {
        let pushed = q.push(
            ev("b", &format!("b.{i}"), &format!("b{i}"), Priority::Bulk, 10),
            now,
        );
        assert_eq!(pushed, Ok(vec![]));
    }
    let mut shed = Vec::new();
    for i in 0..10 {
        let e = ev(
            "a",
            &format!("a.{i}"),
            &format!("a{i}"),
            Priority::Realtime,
            10,
        );
        shed.extend(q.push(e, now).unwrap());
    }
    let a_memory = Shed {
        priority: Priority::Realtime,
        reason: DropReason::MemoryFull,
        tenant: TenantId::new("a"),
    };
    assert_eq!(shed, vec![a_memory; 2]);
    assert_eq!(q.bytes(), 100);
    assert_eq!(q.len(Priority::Bulk), 2);
    assert_eq!(
        take_ids(&mut q, 100, now).first().map(String::as_str),
        Some("a2")
    );
}

#[tokio::test(start_paused = true)]
async fn each_tenants_channels_keep_their_order() {
    let now = Instant::now();
    let mut q = Queues::new(limits(100, 10, 1 << 20));
    for (t, ch, id) in [
        ("a", "x", "x1"),
        ("a", "x", "x2"),
        ("a", "y", "y1"),
        ("a", "x", "x3"),
        ("b", "z", "z1"),
        ("b", "z", "z2"),
    ] {
        assert_eq!(q.push(rt(t, ch, id), now), Ok(vec![]));
    }
    let first = q.take(Priority::Realtime, 1, now);
    assert_eq!(ids(&first.batch), ["x1"]);
    // `x` is in flight: x2 and x3 wait; y1 and B's events go, each channel in order.
    assert_eq!(take_ids(&mut q, 10, now), ["z1", "y1", "z2"]);
    assert!(take_ids(&mut q, 10, now).is_empty());
    q.release(Priority::Realtime, &first.batch);
    assert_eq!(take_ids(&mut q, 10, now), ["x2", "x3"]);
}

#[tokio::test(start_paused = true)]
async fn old_events_expire_at_the_head_of_each_tenants_queue() {
    let start = Instant::now();
    let mut q = Queues::new(limits(100, 10, 1 << 20));
    assert_eq!(q.push(rt("a", "a.0", "a0"), start), Ok(vec![]));
    let later = start + Duration::from_secs(20);
    assert_eq!(q.push(rt("a", "a.1", "a1"), later), Ok(vec![]));
    assert_eq!(q.push(rt("b", "b.0", "b0"), start), Ok(vec![]));
    let take = q.take(Priority::Realtime, 10, start + Duration::from_secs(30));
    assert_eq!(take.expired, [TenantId::new("a"), TenantId::new("b")]);
    assert_eq!(ids(&take.batch), ["a1"]);
    assert_eq!(q.bytes(), 0);
}
