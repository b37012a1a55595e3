//! The `storm` benchmark: a reconnect storm. N WebSocket subscribers over C channels while
//! events are published at a steady rate; then every subscriber drops its socket at a random
//! moment of a short window (a node restart, a route change) and reconnects, resuming from its
//! last seq and obeying the server's `503 reconnect_later` waits. Reports how long until all
//! are back, the refusals, publish latency during the storm against before it, and per
//! subscriber delivery (0 lost, 0 duplicated, in order). A hard deadline bounds the run: what
//! has not happened by then is reported as a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::client::ws::WsSettings;
use crate::client::{Connector, Transport};
use crate::fanout::pacer::{self, PublishLog};
use crate::fanout::subscriber::{self, Anomalies, Ready, Resumes, Shared, Spec};
use crate::fanout::Tally;
use crate::proc_stats::{sample_opt, CpuWindow, Proc};
use crate::report::{self, progress};
use crate::stats::{histogram, unix_micros, Percentiles};
use crate::target::Target;
use crate::{nofile, CommonArgs, PublisherKey};

/// Time allowed after the last publish for the last deliveries.
const DRAIN: Duration = Duration::from_secs(5);
/// Time allowed for subscriber tasks to hand back their accounts once told to stop.
const COLLECT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub(crate) struct StormArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    key: PublisherKey,
    /// Subscriber JWT, sent as `?token=` (benchmarks usually run with subscribe auth off).
    #[arg(long)]
    token: Option<String>,
    /// WebSocket subscribers, spread round-robin over the channels.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    subscribers: u32,
    /// Channels (named st-<run id>-<n>, fresh for every run).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    channels: u32,
    /// Events per second, published throughout, spread round-robin over the channels.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Size of each event's `data` in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    payload_bytes: u32,
    /// Seconds of steady publishing before the storm.
    #[arg(long, default_value_t = 3.0, value_parser = crate::parse_duration_secs)]
    before: f64,
    /// Seconds over which every subscriber drops and reconnects (each at a random moment).
    #[arg(long, default_value_t = 1.0, value_parser = crate::parse_duration_secs)]
    window: f64,
    /// Seconds of publishing after every subscriber is back.
    #[arg(long, default_value_t = 3.0, value_parser = crate::parse_duration_secs)]
    after: f64,
    /// Subscribers opening their first connection at once. A refused one keeps its place while
    /// it waits out `retry_after_ms`, so this bounds the first connects' rate as well.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connect_concurrency: u32,
    /// Seconds the whole run may take; what is not done by then fails the run.
    #[arg(long, default_value_t = 110.0, value_parser = crate::parse_duration_secs)]
    deadline: f64,
    /// The run fails when publish p99 during the storm exceeds this many milliseconds.
    #[arg(long, default_value_t = 50.0)]
    max_publish_p99_ms: f64,
    /// Write every publish as `ms_since_storm latency_us` to this file, to see when in the
    /// storm publishes were slow.
    #[arg(long)]
    samples_file: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Summary {
    mode: &'static str,
    pass: bool,
    subscribers: u32,
    channels: u32,
    rate: f64,
    window_s: f64,
    run_id: String,
    /// Until every subscriber was first subscribed (refusals included).
    connect_all_s: f64,
    storm: StormFigures,
    /// Publishes sent before the storm, and from its start until every subscriber was back.
    publish_before: Percentiles,
    publish_storm: Percentiles,
    publish_statuses: std::collections::BTreeMap<String, u64>,
    published: u64,
    expected: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    unexpected: u64,
    anomalies: Anomalies,
    server_cpu_us_storm: Option<u64>,
    /// This tool's CPU over the same window.
    loadtest_cpu_us_storm: Option<u64>,
    /// CPU of every other process on the machine (this tool included) over the same window.
    others_cpu_us_storm: Option<u64>,
    failures: Vec<String>,
}

#[derive(Serialize, Default)]
struct StormFigures {
    /// Subscribers resumed after the drop.
    back: u64,
    /// From the storm signal until the last subscriber was `subscribed` again.
    all_back_s: Option<f64>,
    /// `503 reconnect_later` answers during the storm, over all subscribers.
    refused: u64,
    refusals_per_client_p50: u32,
    refusals_per_client_p99: u32,
    refusals_per_client_max: u32,
}

pub(crate) async fn run(args: StormArgs, json_only: bool) -> Result<bool> {
    let target = Target::parse(&args.common.url).await?;
    let n = args.subscribers as usize;
    if let Some(limit) = nofile::current() {
        if limit < n as u64 + 256 {
            bail!("{n} connections need more than the nofile limit of {limit}; raise `ulimit -Hn`");
        }
    }
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!("--rate must be above 0 and at most 100,000 events/s");
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.deadline);
    let run_id = report::run_id();
    let channels: Arc<[Arc<str>]> = (0..args.channels)
        .map(|c| Arc::from(format!("st-{run_id}-{c}")))
        .collect();
    let ws = WsSettings {
        read_buffer_bytes: 4 * 1024,
    };
    let connector = Connector::new(Transport::Ws, target.clone(), args.token.clone(), ws, n)?;
    let shared = Arc::new(Shared::new());
    let permits = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (storm_tx, storm_rx) = watch::channel(false);
    let window = Duration::from_secs_f64(args.window);
    let tasks: Vec<_> = (0..n)
        .map(|index| {
            let channel_idx = index % channels.len();
            let spec = Spec {
                index,
                channel_idx,
                channel: channels[channel_idx].clone(),
            };
            let resumes = Resumes::Storm {
                signal: storm_rx.clone(),
                window,
            };
            tokio::spawn(subscriber::run(
                spec,
                connector.clone(),
                shared.clone(),
                permits.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
                resumes,
            ))
        })
        .collect();
    drop(ready_tx);
    for done in 0..n {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ready::Subscribed { .. })) => {}
            Ok(Some(Ready::Failed(why))) => {
                tasks.iter().for_each(|t| t.abort());
                bail!("a subscriber could not connect: {why}");
            }
            Ok(None) => break,
            Err(_) => {
                tasks.iter().for_each(|t| t.abort());
                bail!("only {done} of {n} subscribers connected within the deadline");
            }
        }
        if (done + 1) % 2000 == 0 {
            progress(json_only, &format!("{} of {n} subscribed", done + 1));
        }
    }
    let connect_all = started.elapsed();
    progress(
        json_only,
        &format!(
            "{n} subscribers on {} channels in {:.2}s; publishing {} ev/s, storm in {}s",
            channels.len(),
            connect_all.as_secs_f64(),
            args.rate,
            args.before
        ),
    );

    // Publish throughout: until told to stop, at the latest at the deadline.
    let publisher = crate::publisher::Publisher::new(
        &target,
        &args.key.publisher_key,
        args.payload_bytes as usize,
    )?;
    let stop_publishing = Arc::new(AtomicBool::new(false));
    // The publishers run on a thread and runtime of their own, as a backend is a process of its
    // own: in the subscribers' runtime a publish answer would wait behind thousands of
    // reconnecting tasks, and the figure would measure this tool instead of the server.
    let pacer = {
        let (channels, stop) = (channels.clone(), stop_publishing.clone());
        let (rate, workers) = (args.rate, pacer::auto_publishers(args.rate));
        let until = deadline.saturating_duration_since(Instant::now());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            anyhow::Ok(runtime.block_on(pacer::run_until(
                publisher, channels, rate, until, workers, stop,
            )))
        })
    };
    tokio::time::sleep(Duration::from_secs_f64(args.before)).await;

    // The storm.
    let server = args.common.server_pid.map(Proc::Pid);
    let cpu_before = sample_opt(server);
    let self_before = sample_opt(Some(Proc::SelfProc));
    let watched: Vec<Proc> = server.into_iter().collect();
    let machine = CpuWindow::start(&watched);
    let storm_at = Instant::now();
    let storm_us = unix_micros();
    let _ = storm_tx.send(true);
    progress(
        json_only,
        &format!("storm: {n} subscribers drop within {}s", args.window),
    );
    // Leave room after it for the publishing tail, the drain and the collection.
    let storm_deadline = deadline
        .checked_sub(Duration::from_secs_f64(args.after) + DRAIN + COLLECT)
        .unwrap_or(deadline);
    let mut failures = Vec::new();
    let all_back = loop {
        let back = shared.back.load(Ordering::Relaxed);
        if back >= n as u64 {
            break Some(storm_at.elapsed());
        }
        if Instant::now() >= storm_deadline {
            failures.push(format!(
                "only {back} of {n} subscribers back by the deadline"
            ));
            break None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let back_us = unix_micros();
    let cpu_back = sample_opt(server);
    let self_back = sample_opt(Some(Proc::SelfProc));
    // CPU of every process but the server (this tool included) over the storm: the machine is
    // two cores, and what else ran there shows in every latency figure.
    let others_storm = machine.others_since(&watched);
    if let Some(t) = all_back {
        progress(
            json_only,
            &format!("all {n} back after {:.2}s", t.as_secs_f64()),
        );
    }
    tokio::time::sleep(Duration::from_secs_f64(args.after)).await;
    stop_publishing.store(true, Ordering::Relaxed);
    let log = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the publishing thread panicked"))??;

    // Every delivery in, then the accounts.
    let expected_total = expected(&log, n);
    let drain_deadline = (Instant::now() + DRAIN).min(deadline);
    while shared.delivered.load(Ordering::Relaxed) < expected_total
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop_tx.send(true);
    let collect_deadline = Instant::now() + COLLECT;
    let mut outcomes = Vec::with_capacity(n);
    let mut unaccounted = 0;
    for task in tasks {
        match tokio::time::timeout_at(collect_deadline, task).await {
            Ok(Ok(Some(o))) => outcomes.push(o),
            _ => unaccounted += 1,
        }
    }
    if unaccounted > 0 {
        failures.push(format!("{unaccounted} subscribers handed back no account"));
    }
    let tally = Tally::of(&outcomes, &log);
    let mut refusals: Vec<u32> = outcomes
        .iter()
        .filter_map(|o| o.storm.map(|s| s.refusals))
        .collect();
    refusals.sort_unstable();
    let quantile = |q: f64| {
        refusals
            .get(((refusals.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0)
    };
    // The last subscriber's own time of return, sharper than the poll that noticed it.
    let last_back = outcomes
        .iter()
        .filter_map(|o| o.storm.map(|s| s.back_at))
        .max();
    let storm = StormFigures {
        back: refusals.len() as u64,
        all_back_s: all_back
            .and(last_back)
            .map(|t| t.saturating_duration_since(storm_at).as_secs_f64()),
        refused: refusals.iter().map(|&r| u64::from(r)).sum(),
        refusals_per_client_p50: quantile(0.5),
        refusals_per_client_p99: quantile(0.99),
        refusals_per_client_max: refusals.last().copied().unwrap_or(0),
    };
    let (mut before, mut during) = (histogram(), histogram());
    for &(sent_us, latency_us) in &log.samples {
        if sent_us < storm_us {
            before.saturating_record(latency_us);
        } else if sent_us <= back_us {
            during.saturating_record(latency_us);
        }
    }
    let publish_storm = Percentiles::of(&during);
    if let Some(path) = &args.samples_file {
        let lines: String = log
            .samples
            .iter()
            .map(|&(sent_us, latency_us)| {
                let at_ms = (sent_us as f64 - storm_us as f64) / 1000.0;
                format!("{at_ms:.1} {latency_us}\n")
            })
            .collect();
        std::fs::write(path, lines)?;
    }
    let mut anomalies = Anomalies::default();
    for o in outcomes {
        anomalies.absorb(o.anomalies, 10);
    }
    if publish_storm.p99_us as f64 > args.max_publish_p99_ms * 1000.0 {
        failures.push(format!(
            "publish p99 during the storm {:.1} ms is over {} ms",
            publish_storm.p99_us as f64 / 1000.0,
            args.max_publish_p99_ms
        ));
    }
    let pass = failures.is_empty()
        && tally.lost == 0
        && tally.duplicated == 0
        && tally.out_of_order == 0
        && log.accepted == log.attempted
        && log.attempted > 0;
    let summary = Summary {
        mode: "storm",
        pass,
        subscribers: args.subscribers,
        channels: args.channels,
        rate: args.rate,
        window_s: args.window,
        run_id,
        connect_all_s: connect_all.as_secs_f64(),
        storm,
        publish_before: Percentiles::of(&before),
        publish_storm,
        publish_statuses: log.statuses.clone(),
        published: log.accepted,
        expected: expected_total,
        delivered: tally.delivered,
        lost: tally.lost,
        duplicated: tally.duplicated,
        out_of_order: tally.out_of_order,
        unexpected: tally.unexpected,
        anomalies,
        server_cpu_us_storm: cpu_before.zip(cpu_back).map(|(a, b)| b.cpu_us - a.cpu_us),
        loadtest_cpu_us_storm: self_before.zip(self_back).map(|(a, b)| b.cpu_us - a.cpu_us),
        others_cpu_us_storm: others_storm,
        failures,
    };
    report::emit(json_only, &human(&summary), &summary);
    Ok(pass)
}

/// Deliveries owed: every accepted publish, once to each subscriber of its channel (all
/// subscribed before the first publish).
fn expected(log: &PublishLog, subscribers: usize) -> u64 {
    let c = log.per_channel.len();
    log.per_channel
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.seqs.len() as u64 * (subscribers / c + usize::from(i < subscribers % c)) as u64
        })
        .sum()
}

fn human(s: &Summary) -> Vec<String> {
    let st = &s.storm;
    let mut lines = vec![
        format!(
            "storm: {} WebSocket subscribers on {} channels, {} ev/s, all drop within {}s (run {})",
            s.subscribers, s.channels, s.rate, s.window_s, s.run_id
        ),
        format!("first connect     all subscribed in {:.2}s", s.connect_all_s),
        format!(
            "back after storm  {} of {} in {}",
            st.back,
            s.subscribers,
            st.all_back_s
                .map_or_else(|| "NOT ALL (deadline)".to_owned(), |t| format!("{t:.2}s"))
        ),
        format!(
            "refusals          {} in all; per client p50 {} p99 {} max {}",
            st.refused,
            st.refusals_per_client_p50,
            st.refusals_per_client_p99,
            st.refusals_per_client_max
        ),
        format!("publish before    {}", s.publish_before.human()),
        format!("publish in storm  {}", s.publish_storm.human()),
        format!(
            "published         {} accepted; statuses {:?}",
            s.published, s.publish_statuses
        ),
        format!(
            "deliveries        expected {}  delivered {}  lost {}  duplicated {}  out-of-order {}  unexpected {}",
            s.expected, s.delivered, s.lost, s.duplicated, s.out_of_order, s.unexpected
        ),
    ];
    if let Some(cpu) = s.server_cpu_us_storm {
        let show = |c: Option<u64>| c.map_or_else(|| "?".to_owned(), |c| c.to_string());
        lines.push(format!(
            "cpu in the storm  server {cpu} µs, this tool {} µs, all but the server {} µs",
            show(s.loadtest_cpu_us_storm),
            show(s.others_cpu_us_storm),
        ));
    }
    if s.anomalies.total() > 0 {
        lines.push(format!(
            "anomalies         {}",
            serde_json::to_string(&s.anomalies).unwrap_or_default()
        ));
    }
    for f in &s.failures {
        lines.push(format!("  {f}"));
    }
    lines.push(format!(
        "result            {}",
        if s.pass { "PASS" } else { "FAIL" }
    ));
    lines
}
