//! The dispatcher of one lane (vendor × priority) and one delivery: take a batch when a slot is
//! free, send it under the deadline, retry once if the error and the budget allow, report every
//! attempt, free the channels and the slot.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::{DropReason, Shared};
use crate::upstream::observation::{Observation, RequestObservation};
use crate::upstream::{OutboundEvent, Priority, VendorError};

/// Runs until cancelled: one slot, then one batch, then a delivery task, over and over.
pub(super) async fn run(shared: Arc<Shared>, priority: Priority, tasks: TaskTracker) {
    let i = priority.index();
    let max = shared.vendor.max_batch().max(1);
    'dispatch: loop {
        let permit = tokio::select! {
            biased;
            () = shared.cancel.cancelled() => break 'dispatch,
            permit = shared.slots[i].clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break 'dispatch,
            },
        };
        let batch = loop {
            let notified = shared.wake[i].notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let take = shared.queues.lock().take(priority, max, Instant::now());
            shared
                .counters
                .dropped_each(&take.expired, priority, DropReason::Expired);
            if !take.batch.is_empty() {
                break take.batch;
            }
            tokio::select! {
                biased;
                () = shared.cancel.cancelled() => break 'dispatch,
                () = &mut notified => {}
            }
        };
        tasks.spawn(deliver(shared.clone(), priority, batch, permit));
    }
    let left = shared.queues.lock().clear(priority);
    for event in &left {
        shared
            .counters
            .dropped_one(&event.tenant, priority, DropReason::Closed);
    }
}

/// Delivers one batch: an attempt, at most one retry, then frees its channels and its slot.
async fn deliver(
    shared: Arc<Shared>,
    priority: Priority,
    batch: Vec<OutboundEvent>,
    permit: OwnedSemaphorePermit,
) {
    let in_flight = &shared.in_flight[priority.index()];
    in_flight.fetch_add(1, Ordering::Relaxed);
    shared.budget.deposit();
    let mut result = attempt(&shared, priority, &batch, 0).await;
    if let Err(error) = &result {
        if error.retry_allowed() {
            let allowed = shared.budget.try_withdraw();
            shared.counters.retry(allowed);
            if allowed {
                tokio::time::sleep(shared.config.retry_backoff).await;
                result = attempt(&shared, priority, &batch, 1).await;
            }
        }
    }
    let n = batch.len() as u64;
    match &result {
        Ok(()) => shared.counters.delivered(priority, &batch),
        Err(error) => {
            shared.counters.failed(priority, error.class(), n);
            tracing::debug!(
                vendor = shared.vendor.name(),
                priority = priority.as_str(),
                events = n,
                class = error.class().as_str(),
                error = %error,
                "vendor delivery failed"
            );
        }
    }
    shared.queues.lock().release(priority, &batch);
    in_flight.fetch_sub(1, Ordering::Relaxed);
    shared.wake[priority.index()].notify_one();
    drop(permit);
}

/// One request under the lane's deadline, reported to the driver.
async fn attempt(
    shared: &Shared,
    priority: Priority,
    batch: &[OutboundEvent],
    attempt: u8,
) -> Result<(), VendorError> {
    let started = Instant::now();
    let deadline = shared.config.request_timeout;
    let result = match tokio::time::timeout(deadline, shared.vendor.publish(batch)).await {
        Ok(result) => result,
        Err(_) => Err(VendorError::Timeout { after: deadline }),
    };
    let at = Instant::now();
    let latency = at - started;
    let classified = result.as_ref().map(|_| ()).map_err(VendorError::class);
    shared.counters.request(priority, classified, latency);
    let observation = Observation::Request(RequestObservation {
        vendor: shared.index,
        priority,
        attempt,
        events: batch.len(),
        latency,
        at,
        result: classified,
        message: result.as_ref().err().map(VendorError::to_string),
    });
    if shared.observations.try_send(observation).is_err() {
        shared.counters.observation_lost();
    }
    result
}
