//! The active canary of one vendor: every `interval`, publish a canary event (a fresh nonce) to
//! a reserved channel through the vendor's REST API, and wait for it on the vendor's own
//! realtime connection. Publish-to-arrival within `deadline` is a good round; anything else is
//! a lost one, with the reason ([`CanaryFailure`]). A REST success whose event never arrives is
//! exactly how vendors degrade in real life, and only this can see it.
//!
//! Two loops run together: the listener keeps one realtime session open (reconnecting with
//! exponential back-off and jitter), and the rounds publish and wait. Rounds do not overlap: a
//! round lasts at most `deadline` (+ `deadline` waiting for a subscription), and the next
//! starts on the next tick.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::upstream::observation::{CanaryFailure, CanaryObservation, CanaryResult, Observation};
use crate::upstream::realtime::{Arrival, RealtimeError};
use crate::upstream::{random_id, unix_ms, ErrorClass, OutboundEvent, Vendor, CANARY_CHANNEL};

/// Canary settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryConfig {
    /// Time between rounds. Default 1 s.
    pub interval: Duration,
    /// Publish-to-arrival deadline (the publish itself included). Default 2 s.
    pub deadline: Duration,
    /// Reserved channel. Default `understudy.canary`.
    pub channel: String,
    /// First reconnect delay of the realtime session. Default 250 ms.
    pub reconnect_min: Duration,
    /// Largest reconnect delay (also used after a refusal). Default 5 s.
    pub reconnect_max: Duration,
    /// Random extra share of each reconnect delay, `0.0..=1.0`. Default 0.2; 0 in tests.
    pub jitter: f64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            interval: Duration::from_secs(1),
            deadline: Duration::from_secs(2),
            channel: CANARY_CHANNEL.to_owned(),
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(5),
            jitter: 0.2,
        }
    }
}

/// Runs the canary of vendor `index` until `cancel` fires, reporting each round.
pub async fn run(
    index: usize,
    vendor: &dyn Vendor,
    config: &CanaryConfig,
    observations: mpsc::Sender<Observation>,
    cancel: CancellationToken,
) {
    let gate = Gate::default();
    run_gated(index, vendor, config, observations, &gate, cancel).await;
}

/// Whether this node runs the canary rounds now, and where their results are also told.
/// Several nodes sharing one engine hold a lease so that one of them probes the vendor and
/// shares its verdict; the others keep their realtime session open and wait for the lease.
#[derive(Debug, Clone)]
pub struct Gate {
    pub active: tokio::sync::watch::Receiver<bool>,
    pub tap: tokio::sync::broadcast::Sender<CanaryObservation>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            active: tokio::sync::watch::channel(true).1,
            tap: tokio::sync::broadcast::channel(16).0,
        }
    }
}

/// [`run`], probing only while `gate` is active, and telling `gate.tap` each result.
pub async fn run_gated(
    index: usize,
    vendor: &dyn Vendor,
    config: &CanaryConfig,
    observations: mpsc::Sender<Observation>,
    gate: &Gate,
    cancel: CancellationToken,
) {
    let (arrivals_tx, arrivals_rx) = mpsc::channel(256);
    tokio::join!(
        listen(vendor, config, arrivals_tx, cancel.clone()),
        rounds(
            index,
            vendor,
            config,
            arrivals_rx,
            observations,
            gate,
            cancel
        ),
    );
}

/// Keeps a realtime session open, reconnecting with back-off.
async fn listen(
    vendor: &dyn Vendor,
    config: &CanaryConfig,
    arrivals: mpsc::Sender<Arrival>,
    cancel: CancellationToken,
) {
    let mut backoff = config.reconnect_min;
    loop {
        let end = tokio::select! {
            () = cancel.cancelled() => return,
            end = vendor.listen(&config.channel, arrivals.clone()) => end,
        };
        if end.error == RealtimeError::Abandoned {
            return;
        }
        tracing::debug!(vendor = vendor.name(), error = %end.error, subscribed = end.subscribed, "canary connection ended");
        if end.subscribed {
            backoff = config.reconnect_min;
        }
        let delay = if end.error.is_fatal() {
            config.reconnect_max
        } else {
            backoff
        };
        backoff = (backoff * 2).min(config.reconnect_max);
        if arrivals
            .send(Arrival::Ended { error: end.error })
            .await
            .is_err()
        {
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(jittered(delay, config.jitter)) => {}
        }
    }
}

fn jittered(delay: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 || !jitter.is_finite() {
        return delay;
    }
    delay.mul_f64(1.0 + rand::random::<f64>() * jitter.min(1.0))
}

/// What the rounds know about the realtime session.
#[derive(Debug, Default)]
struct Session {
    subscribed: bool,
    /// The last session ended in a way only an operator can fix (a refusal, a TLS failure):
    /// what a round reports instead of "not subscribed".
    fatal: Option<CanaryFailure>,
}

impl Session {
    fn apply(&mut self, arrival: &Arrival) {
        match arrival {
            Arrival::Subscribed => {
                *self = Session {
                    subscribed: true,
                    fatal: None,
                }
            }
            Arrival::Ended { error } => {
                *self = Session {
                    subscribed: false,
                    fatal: CanaryFailure::of_session_end(error),
                }
            }
            Arrival::Message { .. } => {}
        }
    }
}

async fn rounds(
    index: usize,
    vendor: &dyn Vendor,
    config: &CanaryConfig,
    mut arrivals: mpsc::Receiver<Arrival>,
    observations: mpsc::Sender<Observation>,
    gate: &Gate,
    cancel: CancellationToken,
) {
    let mut session = Session::default();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if !*gate.active.borrow() {
            // Another node holds the canary lease; keep the session's state current.
            while let Ok(arrival) = arrivals.try_recv() {
                session.apply(&arrival);
            }
            continue;
        }
        let result = tokio::select! {
            () = cancel.cancelled() => return,
            result = round(vendor, config, &mut arrivals, &mut session) => result,
        };
        let canary = CanaryObservation {
            vendor: index,
            at: Instant::now(),
            result,
        };
        // Nobody listening is fine: only a lease holder shares its results.
        let _ = gate.tap.send(canary.clone());
        let observation = Observation::Canary(canary);
        tokio::select! {
            () = cancel.cancelled() => return,
            sent = observations.send(observation) => if sent.is_err() { return },
        }
    }
}

/// One round: be subscribed, publish a nonce, wait for it.
async fn round(
    vendor: &dyn Vendor,
    config: &CanaryConfig,
    arrivals: &mut mpsc::Receiver<Arrival>,
    session: &mut Session,
) -> CanaryResult {
    let lost = |failure| CanaryResult::Lost { failure };
    // Stale arrivals (earlier nonces, other nodes' canaries) only update the session.
    while let Ok(arrival) = arrivals.try_recv() {
        session.apply(&arrival);
    }
    if !session.subscribed {
        let until = Instant::now() + config.deadline;
        while !session.subscribed {
            match tokio::time::timeout_at(until, arrivals.recv()).await {
                Ok(Some(arrival)) => {
                    session.apply(&arrival);
                    // Waiting cannot help: the next session waits out the longest back-off.
                    if let Some(failure) = session.fatal {
                        return lost(failure);
                    }
                }
                Ok(None) | Err(_) => {
                    return lost(session.fatal.unwrap_or(CanaryFailure::NotSubscribed));
                }
            }
        }
    }
    let nonce = random_id();
    let event = OutboundEvent::canary(config.channel.as_str(), &nonce, unix_ms());
    let published_at = Instant::now();
    let deadline = published_at + config.deadline;
    match tokio::time::timeout_at(deadline, vendor.publish(std::slice::from_ref(&event))).await {
        Err(_) => {
            return lost(CanaryFailure::PublishFailed {
                class: ErrorClass::Timeout,
            })
        }
        Ok(Err(error)) => return lost(CanaryFailure::of_publish(&error)),
        Ok(Ok(())) => {}
    }
    loop {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some(Arrival::Message { id, at })) if id == nonce => {
                return CanaryResult::Arrived {
                    latency: at.saturating_duration_since(published_at),
                };
            }
            Ok(Some(arrival @ Arrival::Ended { .. })) => {
                // The session that would have delivered it is gone.
                session.apply(&arrival);
                return lost(CanaryFailure::NotDelivered);
            }
            Ok(Some(arrival)) => session.apply(&arrival),
            Ok(None) | Err(_) => return lost(CanaryFailure::NotDelivered),
        }
    }
}

/// Kept beside the canary, which reads realtime sessions; the failure itself is plain data.
impl CanaryFailure {
    /// The fatal failure a realtime session's end stands for, if it is fatal.
    pub fn of_session_end(error: &RealtimeError) -> Option<CanaryFailure> {
        match error {
            RealtimeError::Tls { problem, .. } => Some(CanaryFailure::Tls { problem: *problem }),
            e if e.is_fatal() => Some(CanaryFailure::Refused),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
