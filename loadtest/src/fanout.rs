//! The `fanout` benchmark: S subscribers over C channels, paced publishing at R events/s for
//! T seconds, then delivery accounting (expected, delivered, lost, duplicated, out of order),
//! end-to-end latency and the server's CPU per delivered event.
//!
//! `--dialect nchan` runs the same benchmark against nginx + nchan or the `floor` server: the
//! tool numbers each channel's events in the body, and ordering is only checked with one
//! publisher (several may land one channel's events in another order than numbered).
//!
//! With several nodes sharing one engine, `--publish-url` sends the publishes to another node
//! than the one the subscribers are on (`--url`), and `--peer-pid` adds the CPU of the other
//! processes (that node, the engine) to the report.

pub(crate) mod pacer;
pub(crate) mod peers;
pub(crate) mod subscriber;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::client::ws::WsSettings;
use crate::client::{Connector, Transport};
use crate::proc_stats::{sample_opt, CpuWindow, Proc};
use crate::publisher::Publisher;
use crate::report::{self, per, progress, show};
use crate::stats::{histogram, Percentiles};
use crate::target::{Dialect, Target};
use crate::{CommonArgs, PublisherKey};
use peers::{Peer, PeerFigures};
use subscriber::{Anomalies, Outcome, Ready, Shared, Spec};

/// Time allowed after the last `seq` arrives for late duplicates to show up.
const DUPLICATE_GRACE: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
pub(crate) struct FanoutArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    key: PublisherKey,
    /// The server's publish and subscribe protocol: understudy's, or nchan's (which the
    /// `floor` server speaks too).
    #[arg(long, value_enum, default_value_t = Dialect::Understudy)]
    dialect: Dialect,
    /// Node the publishes go to, when not `--url`: with several nodes on one engine,
    /// subscribers connect to `--url` and events are published here. Loopback only.
    #[arg(long)]
    publish_url: Option<String>,
    /// Another process whose CPU belongs to the run, as NAME=PID (the publish node, the
    /// engine): read at the same instants as `--server-pid` and reported next to it.
    #[arg(long = "peer-pid", value_name = "NAME=PID", value_parser = peers::parse_peer)]
    peer_pids: Vec<Peer>,
    /// Subscriber JWT, sent as `?token=` (benchmarks usually run with subscribe auth off).
    #[arg(long)]
    token: Option<String>,
    /// Subscriber transport.
    #[arg(long, value_enum, default_value = "ws")]
    transport: Transport,
    /// Subscribers, spread round-robin over the channels.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    subscribers: u32,
    /// Channels (named lt-<run id>-<n>, fresh for every run).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    channels: u32,
    /// Total events per second, spread round-robin over the channels.
    #[arg(long, default_value_t = 100.0, value_parser = parse_rate)]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0, value_parser = crate::parse_duration_secs)]
    duration: f64,
    /// Size of each event's `data` in bytes (`t` plus padding).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    payload_bytes: u32,
    /// Subscribers connecting at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connect_concurrency: u32,
    /// Concurrent keep-alive publishers (default: enough for the rate, 2..=64).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    publishers: Option<u32>,
    /// Seconds allowed for every subscriber to get `subscribed`.
    #[arg(long, default_value_t = 60.0, value_parser = crate::parse_duration_secs)]
    connect_timeout: f64,
    /// Make every subscriber drop its connection this often (staggered) and resume from its
    /// last seq on a new one, checking resume under load loses and repeats nothing.
    #[arg(long, value_parser = parse_resume_every)]
    resume_every: Option<f64>,
    /// Seconds to wait for stragglers after publishing ends.
    #[arg(long, default_value_t = 5.0, value_parser = crate::parse_duration_secs)]
    drain_timeout: f64,
}

fn parse_resume_every(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.1..=3600.0).contains(&x) => Ok(x),
        _ => Err("seconds between 0.1 and 3600".to_owned()),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1_000_000.0 => Ok(r),
        _ => Err("a rate in events/s, > 0 and at most 1,000,000".to_owned()),
    }
}

#[derive(Serialize)]
struct Summary {
    mode: &'static str,
    pass: bool,
    dialect: Dialect,
    transport: Transport,
    subscribers: u32,
    channels: u32,
    rate: f64,
    duration_s: f64,
    payload_bytes: u32,
    run_id: String,
    /// Where the publishes went, when not the subscribers' node (`--publish-url`).
    publish_url: Option<String>,
    subscribe: Percentiles,
    published: Published,
    expected: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    /// Events received that no 202 answer accounted for.
    unexpected: u64,
    /// Seqs at or below the subscription's start head.
    out_of_range: u64,
    /// Connections dropped and resumed from the last seq (`--resume-every`).
    resumes: u64,
    drained: bool,
    drain_ms: u64,
    latency: Percentiles,
    anomalies: Anomalies,
    server: Option<ServerFigures>,
    /// `--peer-pid` processes over the server's window.
    peers: Vec<PeerFigures>,
    /// Server and peers together, per delivered event.
    total_cpu_us_per_delivered_event: Option<f64>,
    loadtest_cpu_us: Option<u64>,
    /// CPU other processes used while publishing and draining (a busy machine skews
    /// every figure; needs --server-pid).
    other_cpu_us: Option<u64>,
}

#[derive(Serialize)]
struct Published {
    attempted: u64,
    accepted: u64,
    statuses: std::collections::BTreeMap<String, u64>,
    achieved_rate: f64,
    publishers: usize,
    latency: Percentiles,
    lateness: Percentiles,
    /// Channels whose 202 answers carried more than one epoch.
    channels_with_epoch_change: u64,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct ServerFigures {
    pid: u32,
    /// From the first publish to the last expected delivery (or the drain timeout).
    cpu_us: u64,
    /// From the first publish to the last publish answer.
    cpu_us_publish_window: u64,
    cpu_us_per_delivered_event: Option<f64>,
    rss_before_kib: u64,
    rss_subscribed_kib: u64,
    rss_after_kib: u64,
}

/// Runs the benchmark; `Ok(true)` when delivery was exact.
pub(crate) async fn run(args: FanoutArgs, json_only: bool) -> Result<bool> {
    let target = Target::parse(&args.common.url)
        .await?
        .speaking(args.dialect);
    let publish_target = match &args.publish_url {
        Some(url) => Target::parse(url).await?.speaking(args.dialect),
        None => target.clone(),
    };
    if args.dialect == Dialect::Nchan && args.resume_every.is_some() {
        bail!("--resume-every needs understudy's resume; the nchan dialect has none");
    }
    peers::check(&args.peer_pids)?;
    let server = args.common.server_pid.map(Proc::Pid);
    // Everything whose CPU is the system under test's, for telling other work apart.
    let watched: Vec<Proc> = server
        .into_iter()
        .chain(args.peer_pids.iter().map(Peer::proc))
        .collect();
    let rss_before = match server {
        Some(p) => Some(p.sample()?),
        None => None,
    };
    let run_id = report::run_id();
    let channels: Arc<[Arc<str>]> = (0..args.channels)
        .map(|c| Arc::from(format!("lt-{run_id}-{c}")))
        .collect();
    let subscribers = args.subscribers as usize;
    let ws = WsSettings {
        read_buffer_bytes: 16 * 1024,
    };
    let connector = Connector::new(
        args.transport,
        target.clone(),
        args.token.clone(),
        ws,
        subscribers,
    )?;

    // Subscribe everyone.
    let shared = Arc::new(Shared::new());
    let permits = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let connecting = Instant::now();
    let tasks: Vec<_> = (0..subscribers)
        .map(|index| {
            let channel_idx = index % channels.len();
            let spec = Spec {
                index,
                channel_idx,
                channel: channels[channel_idx].clone(),
            };
            tokio::spawn(subscriber::run(
                spec,
                connector.clone(),
                shared.clone(),
                permits.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
                args.resume_every.map_or(subscriber::Resumes::Never, |s| {
                    subscriber::Resumes::Every(Duration::from_secs_f64(s))
                }),
            ))
        })
        .collect();
    drop(ready_tx);
    let mut subscribe_hist = histogram();
    let deadline = connecting + Duration::from_secs_f64(args.connect_timeout);
    let mut failures = Vec::new();
    for done in 0..subscribers {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ready::Subscribed { connect })) => {
                subscribe_hist.saturating_record(connect.as_micros() as u64);
            }
            Ok(Some(Ready::Failed(why))) => failures.push(why),
            Ok(None) => break,
            Err(_) => {
                failures.push(format!(
                    "only {done} of {subscribers} subscribed within {}s",
                    args.connect_timeout
                ));
                break;
            }
        }
        if (done + 1) % 1000 == 0 {
            progress(
                json_only,
                &format!("{} of {subscribers} subscribed", done + 1),
            );
        }
    }
    if !failures.is_empty() {
        let _ = stop_tx.send(true);
        for task in tasks {
            task.abort();
        }
        bail!(
            "{} subscriber(s) failed; first: {}",
            failures.len(),
            failures[0]
        );
    }
    progress(
        json_only,
        &format!(
            "{subscribers} {} subscribers on {} channel(s) in {:.2}s; publishing {} ev/s for {}s",
            connector.transport(),
            channels.len(),
            connecting.elapsed().as_secs_f64(),
            args.rate,
            args.duration
        ),
    );

    // Publish, then wait for stragglers.
    let workers = args
        .publishers
        .map_or_else(|| pacer::auto_publishers(args.rate), |p| p as usize);
    let publisher = Publisher::new(
        &publish_target,
        &args.key.publisher_key,
        args.payload_bytes as usize,
    )?;
    let cpu_window = CpuWindow::start(&watched);
    let server_subscribed = sample_opt(server);
    let peers_subscribed = peers::sample(&args.peer_pids)?;
    let self_start = sample_opt(Some(Proc::SelfProc));
    let log = pacer::run(
        publisher,
        channels.clone(),
        args.rate,
        Duration::from_secs_f64(args.duration),
        workers,
    )
    .await;
    let server_published = sample_opt(server);
    let per_channel_subs: Vec<u64> = (0..channels.len())
        .map(|c| {
            (subscribers / channels.len() + usize::from(c < subscribers % channels.len())) as u64
        })
        .collect();
    let expected_total: u64 = log
        .per_channel
        .iter()
        .zip(&per_channel_subs)
        .map(|(l, &s)| l.seqs.len() as u64 * s)
        .sum();
    let drain_start = Instant::now();
    let drain_deadline = drain_start + Duration::from_secs_f64(args.drain_timeout);
    let drained = loop {
        if shared.delivered.load(Ordering::Relaxed) >= expected_total {
            break true;
        }
        if Instant::now() >= drain_deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let drain_ms = drain_start.elapsed().as_millis() as u64;
    let server_drained = sample_opt(server);
    let peers_drained = peers::sample(&args.peer_pids)?;
    let self_end = sample_opt(Some(Proc::SelfProc));
    let other_cpu_us = cpu_window.others_since(&watched);
    tokio::time::sleep(DUPLICATE_GRACE).await;
    let server_after = sample_opt(server);
    let peers_after = peers::sample(&args.peer_pids)?;

    // Stop and collect.
    let _ = stop_tx.send(true);
    let mut outcomes = Vec::with_capacity(subscribers);
    for task in tasks {
        if let Ok(Some(outcome)) = task.await {
            outcomes.push(outcome);
        }
    }
    let tally = Tally::of(&outcomes, &log);
    let latency = Percentiles::of(&shared.latency.merged());
    let mut anomalies = Anomalies::default();
    let resumes = outcomes.iter().map(|o| o.resumes).sum();
    for outcome in outcomes {
        anomalies.absorb(outcome.anomalies, 10);
    }
    let server = match (
        args.common.server_pid,
        rss_before,
        server_subscribed,
        server_published,
        server_drained,
        server_after,
    ) {
        (Some(pid), Some(before), Some(sub), Some(publ), Some(drn), Some(after)) => {
            Some(ServerFigures {
                pid,
                cpu_us: drn.cpu_us - sub.cpu_us,
                cpu_us_publish_window: publ.cpu_us - sub.cpu_us,
                cpu_us_per_delivered_event: per(drn.cpu_us - sub.cpu_us, tally.delivered),
                rss_before_kib: before.rss_kib,
                rss_subscribed_kib: sub.rss_kib,
                rss_after_kib: after.rss_kib,
            })
        }
        (Some(pid), ..) => bail!("lost track of server pid {pid} during the run (did it exit?)"),
        _ => None,
    };
    let peers = peers::figures(
        &args.peer_pids,
        &peers_subscribed,
        &peers_drained,
        &peers_after,
        tally.delivered,
    );
    let total_cpu_us_per_delivered_event = server.as_ref().and_then(|sv| {
        per(
            sv.cpu_us + peers.iter().map(|p| p.cpu_us).sum::<u64>(),
            tally.delivered,
        )
    });
    // The tool's own numbering (nchan dialect) is only an order with a single publisher.
    let order_checked = args.dialect == Dialect::Understudy || workers == 1;
    let pass = tally.lost == 0
        && tally.duplicated == 0
        && (tally.out_of_order == 0 || !order_checked)
        && log.accepted == log.attempted
        && log.attempted > 0;
    let summary = Summary {
        mode: "fanout",
        pass,
        dialect: args.dialect,
        transport: args.transport,
        subscribers: args.subscribers,
        channels: args.channels,
        rate: args.rate,
        duration_s: args.duration,
        payload_bytes: args.payload_bytes,
        run_id,
        publish_url: args.publish_url.clone(),
        subscribe: Percentiles::of(&subscribe_hist),
        published: Published {
            attempted: log.attempted,
            accepted: log.accepted,
            statuses: log.statuses.clone(),
            achieved_rate: log.attempted as f64 / log.elapsed.as_secs_f64().max(1e-9),
            publishers: workers,
            latency: Percentiles::of(&log.latency),
            lateness: Percentiles::of(&log.lateness),
            channels_with_epoch_change: log
                .per_channel
                .iter()
                .filter(|c| c.epochs.len() > 1)
                .count() as u64,
            notes: log.notes.clone(),
        },
        expected: expected_total,
        delivered: tally.delivered,
        lost: tally.lost,
        duplicated: tally.duplicated,
        out_of_order: tally.out_of_order,
        unexpected: tally.unexpected,
        out_of_range: tally.out_of_range,
        resumes,
        drained,
        drain_ms,
        latency,
        anomalies,
        server,
        peers,
        total_cpu_us_per_delivered_event,
        loadtest_cpu_us: self_start.zip(self_end).map(|(a, b)| b.cpu_us - a.cpu_us),
        other_cpu_us,
    };
    report::emit(json_only, &human(&summary), &summary);
    Ok(pass)
}

/// Delivery accounting over all subscribers, against the seqs the publish answers returned.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    pub(crate) unexpected: u64,
    pub(crate) out_of_range: u64,
}

impl Tally {
    pub(crate) fn of(outcomes: &[Outcome], log: &pacer::PublishLog) -> Self {
        let mut t = Tally::default();
        for o in outcomes {
            let mut delivered_here = 0;
            for &seq in &log.per_channel[o.channel_idx].seqs {
                if seq <= o.ledger.base() {
                    continue; // published before this subscription; never expected
                }
                if o.ledger.contains(seq) {
                    delivered_here += 1;
                } else {
                    t.lost += 1;
                }
            }
            t.delivered += delivered_here;
            t.unexpected += o.ledger.unique.saturating_sub(delivered_here);
            t.duplicated += o.ledger.duplicated;
            t.out_of_order += o.ledger.out_of_order;
            t.out_of_range += o.ledger.out_of_range;
        }
        t
    }
}

fn human(s: &Summary) -> Vec<String> {
    let p = &s.published;
    let mut lines = vec![
        format!(
            "fanout {} ({:?}): {} subscribers, {} channel(s), {} ev/s for {}s, {}-byte data (run {})",
            s.transport,
            s.dialect, s.subscribers, s.channels, s.rate, s.duration_s, s.payload_bytes, s.run_id
        ),
        format!("subscribe time    {}", s.subscribe.human()),
        format!(
            "publishing to     {}",
            s.publish_url.as_deref().unwrap_or("the subscribers' node")
        ),
        format!(
            "published         {} of {} accepted at {:.1} ev/s by {} publishers; statuses {:?}",
            p.accepted, p.attempted, p.achieved_rate, p.publishers, p.statuses
        ),
        format!("publish latency   {}", p.latency.human()),
        format!("publish lateness  {}", p.lateness.human()),
        format!(
            "deliveries        expected {}  delivered {}  lost {}  duplicated {}  out-of-order {}  unexpected {}",
            s.expected, s.delivered, s.lost, s.duplicated, s.out_of_order, s.unexpected
        ),
        format!("resumes           {}", s.resumes),
        format!(
            "drain             {} in {} ms",
            if s.drained { "complete" } else { "TIMED OUT" },
            s.drain_ms
        ),
        format!("e2e latency       {}", s.latency.human()),
    ];
    if let Some(sv) = &s.server {
        lines.push(format!(
            "server cpu        {} µs ({} µs while publishing) = {} CPU-µs per delivered event",
            sv.cpu_us,
            sv.cpu_us_publish_window,
            show(sv.cpu_us_per_delivered_event)
        ));
        lines.push(format!(
            "server rss        before {} KiB, subscribed {} KiB, after {} KiB",
            sv.rss_before_kib, sv.rss_subscribed_kib, sv.rss_after_kib
        ));
    }
    for p in &s.peers {
        lines.push(format!(
            "{:<18}{} µs = {} CPU-µs per delivered event; rss {} KiB",
            format!("{} cpu", p.name),
            p.cpu_us,
            show(p.cpu_us_per_delivered_event),
            p.rss_after_kib
        ));
    }
    if !s.peers.is_empty() {
        lines.push(format!(
            "all watched cpu   {} CPU-µs per delivered event (server and peers)",
            show(s.total_cpu_us_per_delivered_event)
        ));
    }
    if let Some(cpu) = s.loadtest_cpu_us {
        lines.push(format!(
            "loadtest cpu      {cpu} µs = {} µs per delivered event",
            show(per(cpu, s.delivered))
        ));
    }
    if let Some(other) = s.other_cpu_us {
        lines.push(format!(
            "other processes   {other} µs of CPU in the same window"
        ));
    }
    if s.anomalies.total() > 0
        || s.out_of_range > 0
        || !p.notes.is_empty()
        || p.channels_with_epoch_change > 0
    {
        lines.push(format!(
            "anomalies         {}  out-of-range {}  epoch changes {}",
            serde_json::to_string(&s.anomalies).unwrap_or_default(),
            s.out_of_range,
            p.channels_with_epoch_change
        ));
        for note in &p.notes {
            lines.push(format!("  {note}"));
        }
    }
    lines.push(format!(
        "result            {}",
        if s.pass { "PASS" } else { "FAIL" }
    ));
    lines
}
