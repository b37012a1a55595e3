//! The background task that owns the audit files. It takes entries off the bounded queue in
//! batches, hands each batch to a blocking thread (so a slow disk stalls this task and nothing
//! else), flushes when the queue runs empty and on an interval, prunes periodically, keeps the
//! counters, and reports drops and failures while it waits on the disk. It ends when every
//! handle has been dropped, after writing what was queued.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::time::{self, Instant, MissedTickBehavior};

use super::active::Active;
use super::entry::AuditEntry;
use super::outcome::{Failure, Outcome, Step};
use super::report::Report;
use super::AuditConfig;
use super::Counters;

/// Messages taken off the queue per batch.
const BATCH: usize = 256;
/// How often rotated segments are checked against the count and age limits when no rotation has
/// happened (a rotation prunes by itself).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What handles send to the writer.
#[derive(Debug)]
pub(super) enum Message {
    Entry(AuditEntry),
    /// Answer once everything queued before this message has been written (or lost).
    Flush(oneshot::Sender<()>),
}

pub(super) struct Writer {
    rx: mpsc::Receiver<Message>,
    config: AuditConfig,
    counters: Arc<Counters>,
    /// The files. `None` only while a blocking call has them, or after one panicked (the next
    /// call starts afresh from the directory).
    active: Option<Active>,
    report: Report,
    last_flush: Instant,
    last_prune: Option<Instant>,
}

impl Writer {
    pub(super) fn new(
        rx: mpsc::Receiver<Message>,
        config: AuditConfig,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            report: Report::new(config.report_interval, config.dir.clone()),
            active: Some(Active::new(&config)),
            rx,
            config,
            counters,
            last_flush: Instant::now(),
            last_prune: None,
        }
    }

    pub(super) async fn run(mut self) {
        tracing::debug!(dir = %self.config.dir.display(), "audit writer started");
        let mut tick = time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut messages = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                received = self.rx.recv_many(&mut messages, BATCH) => {
                    if received == 0 {
                        break;
                    }
                    self.write(&mut messages).await;
                }
                _ = tick.tick() => self.housekeep().await,
            }
            self.report_drops();
        }
        let outcome = self.blocking(0, Active::close).await;
        self.account(outcome);
        self.report_drops();
        tracing::debug!(dir = %self.config.dir.display(), "audit writer stopped");
    }

    /// Write one batch; flush when the queue has run empty, a flush was asked for, or the last
    /// flush is older than the flush interval.
    async fn write(&mut self, messages: &mut Vec<Message>) {
        let mut entries = Vec::with_capacity(messages.len());
        let mut waiters = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Entry(entry) => entries.push(entry),
                Message::Flush(waiter) => waiters.push(waiter),
            }
        }
        let flush = self.rx.is_empty()
            || !waiters.is_empty()
            || self.last_flush.elapsed() >= self.config.flush_interval;
        let now = SystemTime::now();
        let at_stake = entries.len() as u64;
        let outcome = self
            .blocking(at_stake, move |active| active.append(entries, flush, now))
            .await;
        if flush {
            self.last_flush = Instant::now();
        }
        self.account(outcome);
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    /// On each tick: flush what is buffered; prune when due.
    async fn housekeep(&mut self) {
        let prune_due = self
            .last_prune
            .is_none_or(|last| last.elapsed() >= PRUNE_EVERY);
        let dirty = self.active.as_ref().is_none_or(Active::is_dirty);
        if !prune_due && !dirty {
            return;
        }
        let now = SystemTime::now();
        let outcome = self.blocking(0, move |active| active.housekeep(now)).await;
        self.last_flush = Instant::now();
        if prune_due {
            self.last_prune = Some(Instant::now());
        }
        self.account(outcome);
    }

    /// Run `f` on the files on a blocking thread. While it runs, drops are still reported, so an
    /// operator hears about them even when the disk hangs. If `f` panics, the `at_stake` entries
    /// it was writing (and anything buffered) are counted as lost and the files are reopened from
    /// the directory next time.
    async fn blocking(
        &mut self,
        at_stake: u64,
        f: impl FnOnce(&mut Active) -> Outcome + Send + 'static,
    ) -> Outcome {
        let mut active = self
            .active
            .take()
            .unwrap_or_else(|| Active::new(&self.config));
        let mut task = tokio::task::spawn_blocking(move || {
            let outcome = f(&mut active);
            (active, outcome)
        });
        let mut tick = time::interval_at(
            Instant::now() + self.config.flush_interval,
            self.config.flush_interval,
        );
        loop {
            tokio::select! {
                joined = &mut task => match joined {
                    Ok((active, outcome)) => {
                        self.active = Some(active);
                        return outcome;
                    }
                    Err(e) => {
                        return Outcome {
                            lost: at_stake,
                            failure: Some(Failure {
                                step: Step::Write,
                                source: std::io::Error::other(format!("the file task failed: {e}")),
                            }),
                            ..Outcome::default()
                        };
                    }
                },
                _ = tick.tick() => self.report_drops(),
            }
        }
    }

    /// Fold an outcome into the counters and the reports.
    fn account(&mut self, outcome: Outcome) {
        let now = Instant::now();
        super::add(&self.counters.written, outcome.written);
        super::add(&self.counters.lost, outcome.lost);
        if outcome.deleted > 0 || outcome.rotated > 0 {
            tracing::debug!(
                rotated = outcome.rotated,
                deleted = outcome.deleted,
                "audit segments rotated and pruned"
            );
        }
        let failures = [
            (outcome.failure.as_ref(), outcome.lost),
            (outcome.housekeeping.as_ref(), 0),
        ];
        for (failure, lost) in failures {
            if let Some(failure) = failure {
                super::add(&self.counters.write_errors, 1);
                self.report.failure(failure, lost, now);
            }
        }
        if outcome.failure.is_none() && outcome.written > 0 {
            self.report.recovered();
        }
    }

    fn report_drops(&mut self) {
        let total = self.counters.dropped.load(Ordering::Relaxed);
        self.report.drops(total, self.config.queue, Instant::now());
    }
}
