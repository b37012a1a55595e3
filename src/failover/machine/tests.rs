//! Unit tests of the health state machine: tripping, hysteresis, dwell, fatal errors.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::failover::health::{BadReason, Verdict};
use crate::upstream::error::ErrorClass;
use crate::upstream::observation::{CanaryFailure, CanaryResult};

const SEC: Duration = Duration::from_secs(1);

fn bad_window() -> Evidence {
    Evidence::Window(Verdict::Bad {
        reason: BadReason::ConsecutiveFailures {
            count: 3,
            class: ErrorClass::Unavailable,
        },
    })
}

fn good_window() -> Evidence {
    Evidence::Window(Verdict::Good)
}

fn arrived() -> Evidence {
    Evidence::Canary(CanaryResult::Arrived {
        latency: Duration::from_millis(3),
    })
}

fn lost() -> Evidence {
    Evidence::Canary(CanaryResult::Lost {
        failure: CanaryFailure::NotDelivered,
    })
}

/// Feeds `evidence` one per second from `start`; returns the final health and the states
/// entered.
fn run(
    machine: &Machine,
    mut health: Health,
    start: Instant,
    evidence: &[Evidence],
) -> (Health, Vec<State>) {
    let mut entered = Vec::new();
    for (i, e) in evidence.iter().enumerate() {
        let (next, actions) = machine.step(&health, *e, start + SEC * i as u32);
        for a in actions {
            if let Action::Transitioned(t) = a {
                assert_eq!(t.from, health.state);
                entered.push(t.to);
            }
        }
        health = next;
    }
    (health, entered)
}

#[tokio::test(start_paused = true)]
async fn one_bad_window_does_not_trip_two_do() {
    let m = Machine::default();
    let now = Instant::now();
    let h = Health::new(now, true);
    let (h, entered) = run(&m, h, now, &[bad_window(), good_window(), bad_window()]);
    assert_eq!((h.state, entered), (State::Healthy, vec![]));
    let (h, entered) = run(&m, h, now, &[bad_window()]);
    assert_eq!(
        (h.state, entered.as_slice()),
        (State::Degraded, &[State::Degraded][..])
    );
    assert!(matches!(
        h.last.unwrap().reason,
        TransitionReason::BadWindows { count: 2, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_lost_canary_trips_at_once_by_default() {
    let m = Machine::default();
    let now = Instant::now();
    let (h, entered) = run(&m, Health::new(now, true), now, &[arrived(), lost()]);
    assert_eq!(entered, vec![State::Degraded]);
    assert_eq!(
        h.last.unwrap().reason,
        TransitionReason::LostCanaries {
            count: 1,
            last: CanaryFailure::NotDelivered
        }
    );
}

#[tokio::test(start_paused = true)]
async fn lost_canaries_threshold_is_configurable() {
    let m = Machine::new(Thresholds {
        trip_after_lost_canaries: 3,
        ..Thresholds::default()
    });
    let now = Instant::now();
    let (h, _) = run(
        &m,
        Health::new(now, true),
        now,
        &[lost(), lost(), arrived(), lost(), lost()],
    );
    assert_eq!(h.state, State::Healthy);
    let (h, _) = run(&m, h, now, &[lost()]);
    assert_eq!(h.state, State::Degraded);
}

#[tokio::test(start_paused = true)]
async fn persistent_failure_goes_down() {
    let m = Machine::default();
    let now = Instant::now();
    let (h, entered) = run(
        &m,
        Health::new(now, true),
        now,
        &[lost(), bad_window(), lost(), bad_window()],
    );
    assert_eq!(entered, vec![State::Degraded, State::Down]);
    assert!(matches!(
        h.last.unwrap().reason,
        TransitionReason::StillFailing { count: 3, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_configuration_error_is_fatal_from_any_state() {
    let m = Machine::default();
    let now = Instant::now();
    let fatal = Evidence::Window(Verdict::Fatal {
        class: ErrorClass::Config,
    });
    let (h, entered) = run(&m, Health::new(now, true), now, &[fatal]);
    assert_eq!(entered, vec![State::Down]);
    assert_eq!(
        h.last.unwrap().reason,
        TransitionReason::Fatal {
            signal: FatalSignal::Request {
                class: ErrorClass::Config
            }
        }
    );
    let refused = Evidence::Canary(CanaryResult::Lost {
        failure: CanaryFailure::Refused,
    });
    let (h, entered) = run(
        &m,
        Health::new(now, true),
        now,
        &[lost(), arrived(), refused, refused],
    );
    assert_eq!(
        entered,
        vec![State::Degraded, State::Recovering, State::Down]
    );
    assert_eq!(h.state, State::Down);
}

#[tokio::test(start_paused = true)]
async fn recovery_needs_good_canaries_and_the_dwell() {
    let m = Machine::default(); // 5 good canaries, 10 s dwell
    let now = Instant::now();
    let (h, _) = run(
        &m,
        Health::new(now, true),
        now,
        &[lost(), lost(), lost(), lost()],
    );
    assert_eq!(h.state, State::Down);
    // Good windows alone do not bring a canaried vendor back.
    let (h, entered) = run(&m, h, now + SEC * 10, &[good_window(), good_window()]);
    assert_eq!((h.state, entered), (State::Down, vec![]));
    // The first good canary starts Recovering (and clears the window).
    let t0 = now + SEC * 20;
    let (h1, actions) = m.step(&h, arrived(), t0);
    assert_eq!(h1.state, State::Recovering);
    assert!(actions.contains(&Action::ClearWindow));
    // Five more good canaries within 5 s: enough canaries, not enough dwell.
    let (h2, entered) = run(&m, h1, t0 + SEC, &[arrived(); 5]);
    assert_eq!((h2.state, entered), (State::Recovering, vec![]));
    // Once 10 s have passed in Recovering, the next good canary recovers it.
    let (h3, actions) = m.step(&h2, arrived(), t0 + SEC * 10);
    assert_eq!(h3.state, State::Healthy);
    let Some(Action::Transitioned(t)) = actions.first() else {
        panic!("no transition")
    };
    assert_eq!(
        t.reason,
        TransitionReason::Recovered {
            good: 6,
            dwell: SEC * 10
        }
    );
}

#[tokio::test(start_paused = true)]
async fn the_dwell_alone_is_not_enough() {
    let m = Machine::default();
    let now = Instant::now();
    let (h, _) = run(&m, Health::new(now, true), now, &[lost(), arrived()]);
    assert_eq!(h.state, State::Recovering);
    // Long after the dwell, but only 4 good canaries.
    let (h, _) = run(&m, h, now + SEC * 60, &[arrived(); 4]);
    assert_eq!(h.state, State::Recovering);
    let (h, _) = run(&m, h, now + SEC * 70, &[arrived()]);
    assert_eq!(h.state, State::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_relapse_while_recovering_restarts_the_count() {
    let m = Machine::default();
    let now = Instant::now();
    let (h, entered) = run(
        &m,
        Health::new(now, true),
        now,
        &[lost(), arrived(), arrived(), arrived(), lost()],
    );
    assert_eq!(
        entered,
        vec![State::Degraded, State::Recovering, State::Degraded]
    );
    assert!(matches!(
        h.last.unwrap().reason,
        TransitionReason::Relapsed { .. }
    ));
    // The count starts over: 5 more good canaries and a fresh dwell are needed.
    let (h, entered) = run(&m, h, now + SEC * 10, &[arrived(); 10]);
    assert_eq!(entered, vec![State::Recovering]);
    assert_eq!(h.state, State::Recovering);
    let (h, _) = run(&m, h, now + SEC * 21, &[arrived()]);
    assert_eq!(h.state, State::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_vendor_without_canary_recovers_on_good_windows() {
    let m = Machine::new(Thresholds {
        min_dwell: Duration::ZERO,
        recover_after: 2,
        ..Thresholds::default()
    });
    let now = Instant::now();
    let (h, entered) = run(
        &m,
        Health::new(now, false),
        now,
        &[
            bad_window(),
            bad_window(),
            good_window(),
            good_window(),
            good_window(),
        ],
    );
    assert_eq!(
        entered,
        vec![State::Degraded, State::Recovering, State::Healthy]
    );
    assert_eq!(h.state, State::Healthy);
}

#[tokio::test(start_paused = true)]
async fn idle_windows_change_nothing() {
    let m = Machine::default();
    let now = Instant::now();
    let idle = Evidence::Window(Verdict::Idle);
    let (h, _) = run(
        &m,
        Health::new(now, true),
        now,
        &[bad_window(), idle, idle, bad_window()],
    );
    assert_eq!(h.state, State::Degraded);
    assert!(
        State::Healthy.routable() && !State::Recovering.routable() && !State::Degraded.routable()
    );
}
