//! The `publish` benchmark: K concurrent keep-alive publishers hammering `POST /v1/publish`
//! (or, with `--via pusher`, the Pusher HTTP API's signed `POST /apps/{id}/events`) for T
//! seconds (after a short warm-up), with no subscribers. Reports publishes/s, status counts,
//! latency and the server's CPU per publish.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::proc_stats::{sample_opt, CpuWindow, Proc};
use crate::publisher::{Outcome, Publisher, Session};
use crate::report::{self, per, progress, show};
use crate::stats::{histogram, Percentiles};
use crate::target::{Dialect, Target};
use crate::{CommonArgs, PublisherKey};

/// Notes about failed publishes kept for the report.
const MAX_NOTES: usize = 5;

#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    key: PublisherKey,
    /// The server's publish protocol: understudy's, or nchan's `POST /pub?id=` (which the
    /// `floor` server speaks too).
    #[arg(long, value_enum, default_value_t = Dialect::Understudy)]
    dialect: Dialect,
    /// Concurrent publishers, each with its own keep-alive connection.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// Seconds of measured publishing.
    #[arg(long, default_value_t = 10.0, value_parser = crate::parse_duration_secs)]
    duration: f64,
    /// Seconds of unmeasured publishing first (connections, allocator, caches).
    #[arg(long, default_value_t = 1.0, value_parser = crate::parse_duration_secs)]
    warmup: f64,
    /// Channels published to round-robin (named lt-pub-<run id>-<n>).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    channels: u32,
    /// Size of each event's `data` in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    payload_bytes: u32,
    /// Where to publish: `v1` (`POST /v1/publish` with the publisher key) or `pusher` (the
    /// Pusher HTTP API as app --pusher-app-id, every request signed as the Pusher SDKs sign).
    #[arg(long, value_enum, default_value_t = Via::V1)]
    via: Via,
    /// The `[[apps]]` id to publish as with `--via pusher`.
    #[arg(long, default_value = "loadtest")]
    pusher_app_id: String,
    /// That app's key.
    #[arg(long, default_value = "loadtest-key")]
    pusher_key: String,
    /// That app's secret.
    #[arg(
        long,
        env = "UNDERSTUDY_PUSHER_SECRET",
        default_value = "loadtest-secret-0123456789",
        hide_env_values = true
    )]
    pusher_secret: String,
}

/// The ingress a `publish` run goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Via {
    V1,
    Pusher,
}

#[derive(Serialize)]
struct Summary {
    mode: &'static str,
    dialect: Dialect,
    via: Via,
    pass: bool,
    concurrency: u32,
    channels: u32,
    duration_s: f64,
    payload_bytes: u32,
    requests: u64,
    accepted: u64,
    requests_per_s: f64,
    accepted_per_s: f64,
    statuses: BTreeMap<String, u64>,
    latency: Percentiles,
    server_pid: Option<u32>,
    server_cpu_us: Option<u64>,
    server_cpu_us_per_publish: Option<f64>,
    server_rss_before_kib: Option<u64>,
    server_rss_after_kib: Option<u64>,
    loadtest_cpu_us: Option<u64>,
    /// CPU other processes used during the measured window (needs --server-pid).
    other_cpu_us: Option<u64>,
    notes: Vec<String>,
}

/// One worker's counts.
struct Tally {
    requests: u64,
    accepted: u64,
    statuses: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    notes: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            requests: 0,
            accepted: 0,
            statuses: BTreeMap::new(),
            latency: histogram(),
            notes: Vec::new(),
        }
    }

    fn record(&mut self, outcome: Outcome, latency: Duration) {
        self.requests += 1;
        self.latency.saturating_record(latency.as_micros() as u64);
        let status = match outcome {
            Outcome::Accepted { .. } => {
                self.accepted += 1;
                "202".to_owned()
            }
            Outcome::Triggered => {
                self.accepted += 1;
                "200".to_owned()
            }
            Outcome::Rejected { status, body } => {
                self.note(|| format!("answered {status}: {body}"));
                status.to_string()
            }
            Outcome::Failed(e) => {
                self.note(|| format!("failed: {e}"));
                "error".to_owned()
            }
        };
        *self.statuses.entry(status).or_default() += 1;
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.notes.len() < MAX_NOTES {
            let note = what();
            if !self.notes.contains(&note) {
                self.notes.push(note);
            }
        }
    }

    fn absorb(&mut self, other: Tally) {
        self.requests += other.requests;
        self.accepted += other.accepted;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        let room = MAX_NOTES.saturating_sub(self.notes.len());
        self.notes.extend(other.notes.into_iter().take(room));
    }
}

pub(crate) async fn run(args: PublishArgs, json_only: bool) -> Result<bool> {
    let target = Target::parse(&args.common.url)
        .await?
        .speaking(args.dialect);
    if args.dialect == Dialect::Nchan && args.via == Via::Pusher {
        anyhow::bail!("--via pusher is understudy's Pusher HTTP API; nchan has none");
    }
    let server = args.common.server_pid.map(Proc::Pid);
    let rss_before = match server {
        Some(p) => Some(p.sample()?),
        None => None,
    };
    let run_id = report::run_id();
    let channels: Arc<[Arc<str>]> = (0..args.channels)
        .map(|c| Arc::from(format!("lt-pub-{run_id}-{c}")))
        .collect();
    let k = args.concurrency as usize;
    let publisher = match args.via {
        Via::V1 => Publisher::new(
            &target,
            &args.key.publisher_key,
            args.payload_bytes as usize,
        )?,
        Via::Pusher => Publisher::pusher(
            &target,
            &args.pusher_app_id,
            &args.pusher_key,
            &args.pusher_secret,
            args.payload_bytes as usize,
        )?,
    };
    let mut sessions: Vec<Session> = (0..k).map(|_| publisher.session()).collect();
    let counter = Arc::new(AtomicU64::new(0));

    if args.warmup > 0.0 {
        progress(
            json_only,
            &format!("warming up {k} publishers for {}s", args.warmup),
        );
        let warmup = Duration::from_secs_f64(args.warmup);
        (sessions, _) = phase(sessions, &channels, &counter, warmup).await;
    }
    progress(
        json_only,
        &format!("publishing with {k} publishers for {}s", args.duration),
    );
    let cpu_window = CpuWindow::start(server.as_slice());
    let server_start = sample_opt(server);
    let self_start = sample_opt(Some(Proc::SelfProc));
    let started = Instant::now();
    let measured = Duration::from_secs_f64(args.duration);
    let (_, tally) = phase(sessions, &channels, &counter, measured).await;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let server_end = sample_opt(server);
    let self_end = sample_opt(Some(Proc::SelfProc));
    let other_cpu_us = cpu_window.others_since(server.as_slice());

    let server_cpu_us = server_start
        .zip(server_end)
        .map(|(a, b)| b.cpu_us - a.cpu_us);
    if let (Some(pid), None) = (args.common.server_pid, server_cpu_us) {
        anyhow::bail!("lost track of server pid {pid} during the run (did it exit?)");
    }
    let pass = tally.requests > 0 && tally.accepted == tally.requests;
    let summary = Summary {
        mode: "publish",
        dialect: args.dialect,
        via: args.via,
        pass,
        concurrency: args.concurrency,
        channels: args.channels,
        duration_s: args.duration,
        payload_bytes: args.payload_bytes,
        requests: tally.requests,
        accepted: tally.accepted,
        requests_per_s: tally.requests as f64 / elapsed,
        accepted_per_s: tally.accepted as f64 / elapsed,
        statuses: tally.statuses,
        latency: Percentiles::of(&tally.latency),
        server_pid: args.common.server_pid,
        server_cpu_us,
        server_cpu_us_per_publish: server_cpu_us.and_then(|cpu| per(cpu, tally.accepted)),
        server_rss_before_kib: rss_before.map(|s| s.rss_kib),
        server_rss_after_kib: server_end.map(|s| s.rss_kib),
        loadtest_cpu_us: self_start.zip(self_end).map(|(a, b)| b.cpu_us - a.cpu_us),
        other_cpu_us,
        notes: tally.notes,
    };
    report::emit(json_only, &human(&summary), &summary);
    Ok(pass)
}

/// Every session publishing back to back until `duration` has passed; the sessions (and
/// their keep-alive connections) come back for the next phase.
async fn phase(
    sessions: Vec<Session>,
    channels: &Arc<[Arc<str>]>,
    counter: &Arc<AtomicU64>,
    duration: Duration,
) -> (Vec<Session>, Tally) {
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = sessions
        .into_iter()
        .map(|mut session| {
            let (channels, counter) = (channels.clone(), counter.clone());
            tokio::spawn(async move {
                let mut tally = Tally::new();
                while Instant::now() < deadline {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    let channel = &channels[(i % channels.len() as u64) as usize];
                    let sent = Instant::now();
                    let outcome = session.publish(channel).await;
                    tally.record(outcome, sent.elapsed());
                }
                (session, tally)
            })
        })
        .collect();
    let mut all = Tally::new();
    let mut sessions = Vec::with_capacity(workers.len());
    for worker in workers {
        match worker.await {
            Ok((session, t)) => {
                sessions.push(session);
                all.absorb(t);
            }
            Err(e) => all.note(|| format!("publisher task failed: {e}")),
        }
    }
    (sessions, all)
}

fn human(s: &Summary) -> Vec<String> {
    let mut lines = vec![
        format!(
            "publish via {:?}: {} publishers, {} channel(s), {}s, {}-byte data",
            s.via, s.concurrency, s.channels, s.duration_s, s.payload_bytes
        ),
        format!(
            "throughput        {:.0} publishes/s accepted ({} of {} requests); statuses {:?}",
            s.accepted_per_s, s.accepted, s.requests, s.statuses
        ),
        format!("latency           {}", s.latency.human()),
    ];
    if let Some(cpu) = s.server_cpu_us {
        lines.push(format!(
            "server cpu        {cpu} µs = {} CPU-µs per publish; rss {} -> {} KiB",
            show(s.server_cpu_us_per_publish),
            s.server_rss_before_kib.unwrap_or_default(),
            s.server_rss_after_kib.unwrap_or_default()
        ));
    }
    if let Some(cpu) = s.loadtest_cpu_us {
        lines.push(format!(
            "loadtest cpu      {cpu} µs = {} µs per request",
            show(per(cpu, s.requests))
        ));
    }
    if let Some(other) = s.other_cpu_us {
        lines.push(format!(
            "other processes   {other} µs of CPU in the same window"
        ));
    }
    for note in &s.notes {
        lines.push(format!("  {note}"));
    }
    lines.push(format!(
        "result            {}",
        if s.pass { "PASS" } else { "FAIL" }
    ));
    lines
}
