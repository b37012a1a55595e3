//! Publishing at a fixed total rate: event `i` is due at `start + i / rate` (absolute
//! deadlines, so no drift), goes to channel `i % C`, and is sent by whichever of the
//! concurrent keep-alive publishers takes it next. Records the seqs the server assigned.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::publisher::{Outcome, Publisher};
use crate::stats::{histogram, unix_micros};

/// Notes about failed publishes kept for the report.
const MAX_NOTES: usize = 5;
/// Publishes whose send time is kept with their latency, for figures over part of a run.
const MAX_SAMPLES: usize = 1_000_000;

/// What the server acknowledged on one channel.
#[derive(Debug, Default)]
pub(crate) struct ChannelLog {
    /// Seqs from 202 answers, in completion order.
    pub(crate) seqs: Vec<u64>,
    /// Distinct epochs the answers carried (one, unless the channel was reclaimed).
    pub(crate) epochs: BTreeSet<String>,
}

/// Everything the publishers did.
pub(crate) struct PublishLog {
    pub(crate) per_channel: Vec<ChannelLog>,
    pub(crate) attempted: u64,
    pub(crate) accepted: u64,
    /// `"202"`, `"503"`, .., and `"error"` for no HTTP answer.
    pub(crate) statuses: BTreeMap<String, u64>,
    /// Request latency (send → full answer), µs.
    pub(crate) latency: Histogram<u64>,
    /// How late each request started against its deadline, µs.
    pub(crate) lateness: Histogram<u64>,
    /// (send time in Unix µs, latency in µs) of the first [`MAX_SAMPLES`] publishes, so a
    /// report can take the latency of a window of the run (`storm`).
    pub(crate) samples: Vec<(u64, u64)>,
    /// First send to last answer.
    pub(crate) elapsed: Duration,
    pub(crate) notes: Vec<String>,
}

impl PublishLog {
    pub(crate) fn new(channels: usize) -> Self {
        Self {
            per_channel: (0..channels).map(|_| ChannelLog::default()).collect(),
            attempted: 0,
            accepted: 0,
            statuses: BTreeMap::new(),
            latency: histogram(),
            lateness: histogram(),
            samples: Vec::new(),
            elapsed: Duration::ZERO,
            notes: Vec::new(),
        }
    }

    /// Records one outcome for channel `channel_idx`.
    pub(crate) fn record(&mut self, channel_idx: usize, outcome: Outcome, latency: Duration) {
        self.attempted += 1;
        self.latency.saturating_record(latency.as_micros() as u64);
        let status = match outcome {
            Outcome::Accepted { seq, epoch } => {
                self.accepted += 1;
                let log = &mut self.per_channel[channel_idx];
                log.seqs.push(seq);
                if !log.epochs.contains(&epoch) {
                    log.epochs.insert(epoch);
                }
                "202".to_owned()
            }
            Outcome::Triggered => {
                self.note(
                    "a Pusher answer without a seq: fanout publishes through /v1/publish".into(),
                );
                "200".to_owned()
            }
            Outcome::Rejected { status, body } => {
                self.note(format!("publish answered {status}: {body}"));
                status.to_string()
            }
            Outcome::Failed(e) => {
                self.note(format!("publish failed: {e}"));
                "error".to_owned()
            }
        };
        *self.statuses.entry(status).or_default() += 1;
    }

    fn note(&mut self, note: String) {
        if self.notes.len() < MAX_NOTES && !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    pub(crate) fn absorb(&mut self, other: PublishLog) {
        for (mine, theirs) in self.per_channel.iter_mut().zip(other.per_channel) {
            mine.seqs.extend(theirs.seqs);
            mine.epochs.extend(theirs.epochs);
        }
        self.attempted += other.attempted;
        self.accepted += other.accepted;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        self.lateness
            .add(&other.lateness)
            .expect("histograms share bounds");
        let room = MAX_NOTES.saturating_sub(self.notes.len());
        self.notes.extend(other.notes.into_iter().take(room));
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }
}

/// Publishers needed to hold `rate` when one request takes a few ms at worst.
pub(crate) fn auto_publishers(rate: f64) -> usize {
    ((rate / 200.0).ceil() as usize).clamp(2, 64)
}

/// Publishes `round(rate × duration)` events over `channels` with `workers` publishers.
pub(crate) async fn run(
    publisher: Publisher,
    channels: Arc<[Arc<str>]>,
    rate: f64,
    duration: Duration,
    workers: usize,
) -> PublishLog {
    let never = Arc::new(AtomicBool::new(false));
    run_until(publisher, channels, rate, duration, workers, never).await
}

/// [`run`], ending early once `stop` is set (the publishes in flight are answered first).
pub(crate) async fn run_until(
    publisher: Publisher,
    channels: Arc<[Arc<str>]>,
    rate: f64,
    duration: Duration,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> PublishLog {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(5);
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (publisher, channels, next, stop) = (
                publisher.clone(),
                channels.clone(),
                next.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut log = PublishLog::new(channels.len());
                let mut session = publisher.session();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sent = Instant::now();
                    let sent_us = unix_micros();
                    log.lateness
                        .saturating_record((sent - due).as_micros() as u64);
                    let channel_idx = (i % channels.len() as u64) as usize;
                    // The channel's event number, for servers that do not number events.
                    let number = i / channels.len() as u64 + 1;
                    let outcome = session
                        .publish_numbered(&channels[channel_idx], number)
                        .await;
                    let latency = sent.elapsed();
                    if log.samples.len() < MAX_SAMPLES {
                        log.samples.push((sent_us, latency.as_micros() as u64));
                    }
                    log.record(channel_idx, outcome, latency);
                }
                log
            })
        })
        .collect();
    let mut all = PublishLog::new(channels.len());
    for task in tasks {
        match task.await {
            Ok(log) => all.absorb(log),
            Err(e) => all.notes.push(format!("publisher task failed: {e}")),
        }
    }
    // The last event is due at (total-1)/rate; count the whole scheduled window at least
    // (or until the stop, when stopped early).
    all.elapsed = if stop.load(Ordering::Relaxed) {
        start.elapsed()
    } else {
        start.elapsed().max(duration)
    };
    all
}
