//! Quotas held against usage, with a paused clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::config::secret::Secret;
use crate::tenant::{Quotas, TenantConfig, TenantId, Tenants};

fn tenant(id: &str, quotas: Quotas) -> TenantConfig {
    TenantConfig {
        id: TenantId::new(id),
        channels: vec![format!("{id}.*")],
        publisher_keys: vec![Secret::new(format!("key-{id}-0123456789"))],
        apps: Vec::new(),
        quotas,
        vendors: None,
    }
}

fn tenants(a: Quotas, b: Quotas) -> Tenants {
    Tenants::new(
        TenantConfig::default_tenant(vec![], Quotas::default()),
        &[tenant("a", a), tenant("b", b)],
    )
}

fn ch(name: &str) -> ChannelName {
    ChannelName::parse(name).unwrap()
}

fn held<F: Fn(&ChannelName) -> bool>(count: usize, is_new: F) -> Held<F> {
    Held { count, is_new }
}

fn rate(per_second: u32, burst: u32) -> Quotas {
    Quotas {
        publish_per_second: Some(per_second),
        publish_burst: burst,
        ..Quotas::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_publish_is_refused_whole_for_a_foreign_channel_without_naming_its_owner() {
    let t = tenants(rate(1, 1), Quotas::default());
    let usage = Usage::default();
    let a = t.get("a").unwrap();
    let (mine, theirs) = (ch("a.x"), ch("b.x"));
    let err = usage
        .admit_publish(
            &t,
            a,
            "key publishes",
            &[&mine, &theirs],
            held(0, |_| false),
            Instant::now(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "channel \"b.x\" belongs to another tenant; this key publishes to tenant a's channels only"
    );
    // The refusal took nothing from the bucket: the one event a burst of 1 allows still goes.
    usage
        .admit_publish(
            &t,
            a,
            "key publishes",
            &[&mine],
            held(0, |_| false),
            Instant::now(),
        )
        .unwrap();
    let counts = usage.counts(a, Instant::now());
    assert_eq!(counts.publishes_accepted, 1);
    assert_eq!(counts.publishes_refused["scope"], 1);
}

#[tokio::test(start_paused = true)]
async fn each_tenant_has_its_own_bucket_and_retry_after_is_rounded_up() {
    let t = tenants(rate(2, 3), rate(2, 3));
    let usage = Usage::default();
    let (a, b) = (t.get("a").unwrap(), t.get("b").unwrap());
    let (x, y) = (ch("a.x"), ch("a.y"));
    let now = Instant::now();
    usage
        .admit_publish(
            &t,
            a,
            "key publishes",
            &[&x, &y, &x],
            held(0, |_| false),
            now,
        )
        .unwrap();
    let err = usage
        .admit_publish(&t, a, "key publishes", &[&x], held(0, |_| false), now)
        .unwrap_err();
    let Refusal::RateLimited { retry_after, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*retry_after, Duration::from_millis(500));
    assert_eq!(retry_secs(*retry_after), 1);
    assert_eq!(
        err.to_string(),
        "tenant a is over its publish rate (2/s, bursts of 3); nothing was published: retry after 1 s"
    );
    // B is untouched by A's flood.
    for _ in 0..3 {
        usage
            .admit_publish(
                &t,
                b,
                "key publishes",
                &[&ch("b.x")],
                held(0, |_| false),
                now,
            )
            .unwrap();
    }
    tokio::time::advance(Duration::from_millis(500)).await;
    usage
        .admit_publish(
            &t,
            a,
            "key publishes",
            &[&x],
            held(0, |_| false),
            Instant::now(),
        )
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn new_channels_count_against_the_limit_once_each() {
    let q = Quotas {
        max_channels: Some(3),
        ..Quotas::default()
    };
    let t = tenants(q, Quotas::default());
    let usage = Usage::default();
    let a = t.get("a").unwrap();
    let (old, n1, n2) = (ch("a.old"), ch("a.n1"), ch("a.n2"));
    let is_new = |c: &ChannelName| c.as_str() != "a.old";
    // One held plus two new (one named twice) is three: within the limit.
    usage
        .admit_publish(
            &t,
            a,
            "app publishes",
            &[&old, &n1, &n1, &n2],
            held(1, is_new),
            Instant::now(),
        )
        .unwrap();
    let err = usage
        .admit_publish(
            &t,
            a,
            "app publishes",
            &[&old, &n1],
            held(3, is_new),
            Instant::now(),
        )
        .unwrap_err();
    assert_eq!(err.reason(), "channels");
    // Channels it has already are never refused for the limit.
    usage
        .admit_publish(
            &t,
            a,
            "app publishes",
            &[&old],
            held(9, is_new),
            Instant::now(),
        )
        .unwrap();
}

#[test]
fn a_connection_takes_one_seat_per_tenant_and_gives_it_back() {
    let q = Quotas {
        max_connections: Some(1),
        ..Quotas::default()
    };
    let t = tenants(q, q);
    let usage = Arc::new(Usage::default());
    let (a, b) = (t.get("a").unwrap(), t.get("b").unwrap());
    let a_id = TenantId::new("a");
    let mut first = Seats::new(usage.clone());
    first.join(&ch("a.x"), a).unwrap();
    first.join(&ch("a.y"), a).unwrap();
    first.join(&ch("a.y"), a).unwrap();
    first.join(&ch("b.x"), b).unwrap();
    assert_eq!(usage.connections(&a_id), 1);
    let mut second = Seats::new(usage.clone());
    let err = second.join(&ch("a.z"), a).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tenant a has its limit of 1 subscriber connections on this node; channel \"a.z\" was not subscribed"
    );
    first.leave(&ch("a.x"));
    assert_eq!(usage.connections(&a_id), 1, "a.y still holds the seat");
    first.leave(&ch("a.y"));
    assert_eq!(usage.connections(&a_id), 0);
    second.join(&ch("a.z"), a).unwrap();
    drop(second);
    drop(first);
    assert_eq!(usage.connections(&a_id), 0);
    assert_eq!(usage.connections(&TenantId::new("b")), 0);
}

#[tokio::test(start_paused = true)]
async fn an_empty_bucket_refuses_before_the_publish_is_known_and_takes_nothing() {
    let t = tenants(rate(2, 2), Quotas::default());
    let usage = Usage::default();
    let (a, b) = (t.get("a").unwrap(), t.get("b").unwrap());
    let x = ch("a.x");
    // Never published: full. Without a rate: never refused.
    usage.refuse_when_empty(a, Instant::now()).unwrap();
    usage.refuse_when_empty(b, Instant::now()).unwrap();
    // One event left: passes, and takes nothing (the publish still gets it).
    usage
        .admit_publish(
            &t,
            a,
            "key publishes",
            &[&x],
            held(0, |_| false),
            Instant::now(),
        )
        .unwrap();
    usage.refuse_when_empty(a, Instant::now()).unwrap();
    usage
        .admit_publish(
            &t,
            a,
            "key publishes",
            &[&x],
            held(0, |_| false),
            Instant::now(),
        )
        .unwrap();
    // Empty: refused with the wait for one event, counted as a rate refusal.
    let err = usage.refuse_when_empty(a, Instant::now()).unwrap_err();
    assert_eq!(
        err,
        Refusal::RateLimited {
            tenant: a.id.clone(),
            per_second: 2,
            burst: 2,
            retry_after: Duration::from_millis(500),
        }
    );
    let counts = usage.counts(a, Instant::now());
    assert_eq!(
        (counts.publishes_accepted, counts.publishes_refused["rate"]),
        (2, 1)
    );
    // Half a second later one event is back.
    tokio::time::advance(Duration::from_millis(500)).await;
    usage.refuse_when_empty(a, Instant::now()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn publishes_are_handed_to_the_metrics_once_each() {
    let t = tenants(rate(1, 1), Quotas::default());
    let usage = Usage::default();
    let a = t.get("a").unwrap();
    let (x, y, foreign) = (ch("a.x"), ch("a.y"), ch("b.x"));
    let now = Instant::now();
    let admit = |channels: &[&ChannelName]| {
        usage.admit_publish(&t, a, "key publishes", channels, held(0, |_| false), now)
    };
    assert!(usage.unexported_publishes().is_empty());
    admit(&[&x]).unwrap();
    admit(&[&foreign]).unwrap_err();
    admit(&[&x, &y]).unwrap_err();
    usage.refuse_when_empty(a, now).unwrap_err();
    // A subscribe refusal is not a publish refusal.
    usage.refused(&Refusal::NotInTenant {
        channel: "b.x".into(),
        tenant: a.id.clone(),
        by: "app subscribes",
    });
    assert_eq!(usage.unexported_publishes(), [(a.id.clone(), [1, 1, 2, 0])]);
    assert!(usage.unexported_publishes().is_empty(), "handed out once");
    tokio::time::advance(Duration::from_secs(1)).await;
    usage
        .admit_publish(
            &t,
            a,
            "key publishes",
            &[&y],
            held(0, |_| false),
            Instant::now(),
        )
        .unwrap();
    assert_eq!(usage.unexported_publishes(), [(a.id.clone(), [1, 0, 0, 0])]);
}
