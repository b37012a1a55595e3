//! The `failover` scenario: subscribers on understudy's own broadcast, a steady publish rate,
//! and the vendor process hung (SIGSTOP) at a known instant and resumed (SIGCONT) later.
//! Reports publish latency before / during / after the hang, how long until the route said
//! `self` (polled and pushed), how long until every subscriber had the first event published
//! after the hang, loss and duplicates by seq, how long the route took to return to `vendor`,
//! and the server's RSS and vendor lane figures over time (bounded queues under a long outage).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::client::ws::WsSettings;
use crate::client::{Connector, Transport};
use crate::fanout::pacer::{auto_publishers, PublishLog};
use crate::fanout::subscriber::{self, Anomalies, Ready, Shared, Spec};
use crate::fanout::Tally;
use crate::proc_stats::{sample_opt, CpuWindow, Proc};
use crate::publisher::Publisher;
use crate::report::{self, per, progress, show};
use crate::stats::{histogram, ms, unix_micros, Percentiles};
use crate::target::Target;
use crate::{CommonArgs, PublisherKey};

/// How often `GET /v1/route` is polled.
const ROUTE_POLL: Duration = Duration::from_millis(50);
/// Time allowed after the last delivery for late duplicates to show up.
const DUPLICATE_GRACE: Duration = Duration::from_millis(300);

#[derive(Debug, clap::Args)]
pub(crate) struct FailoverArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    key: PublisherKey,
    /// The vendor process to hang with SIGSTOP (and always SIGCONT before exiting).
    #[arg(long)]
    vendor_pid: u32,
    /// Admin listener base URL (loopback only), for lane figures from `GET /admin/status`.
    #[arg(long)]
    admin: Option<String>,
    /// Admin bearer token for `--admin`.
    #[arg(long, env = "UNDERSTUDY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Subscriber transport.
    #[arg(long, value_enum, default_value = "ws")]
    transport: Transport,
    /// Subscribers, all on one channel (named lt-<run id>-0).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    subscribers: u32,
    /// Events per second.
    #[arg(long, default_value_t = 100.0, value_parser = parse_rate)]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, value_parser = crate::parse_duration_secs)]
    duration: f64,
    /// Seconds into publishing when the vendor is stopped.
    #[arg(long, value_parser = crate::parse_duration_secs)]
    hang_at: f64,
    /// Seconds into publishing when the vendor is continued (default: when publishing ends).
    #[arg(long, value_parser = crate::parse_duration_secs)]
    resume_at: Option<f64>,
    /// Seconds to wait, after the resume, for the route to return to `vendor`.
    #[arg(long, default_value_t = 60.0, value_parser = crate::parse_duration_secs)]
    recovery_timeout: f64,
    /// Seconds between samples of server RSS and lane figures.
    #[arg(long, default_value_t = 10.0, value_parser = parse_sample_every)]
    sample_every: f64,
    /// Size of each event's `data` in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    payload_bytes: u32,
    /// Subscribers connecting at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connect_concurrency: u32,
    /// Seconds allowed for every subscriber to get `subscribed`.
    #[arg(long, default_value_t = 60.0, value_parser = crate::parse_duration_secs)]
    connect_timeout: f64,
    /// Seconds to wait for stragglers after publishing ends.
    #[arg(long, default_value_t = 10.0, value_parser = crate::parse_duration_secs)]
    drain_timeout: f64,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 100_000.0 => Ok(r),
        _ => Err("a rate in events/s, > 0 and at most 100,000".to_owned()),
    }
}

fn parse_sample_every(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.1..=600.0).contains(&x) => Ok(x),
        _ => Err("seconds between 0.1 and 600".to_owned()),
    }
}

/// Sends SIGSTOP / SIGCONT to the vendor; continues it when dropped, whatever happened.
struct VendorSignals {
    pid: rustix::process::Pid,
    stopped: AtomicBool,
}

impl VendorSignals {
    fn new(raw: u32) -> Result<Self> {
        let pid = i32::try_from(raw)
            .ok()
            .filter(|p| *p > 1)
            .and_then(rustix::process::Pid::from_raw)
            .context("--vendor-pid must be a process id above 1")?;
        if raw == std::process::id() {
            bail!("--vendor-pid is this process");
        }
        if !std::path::Path::new(&format!("/proc/{raw}")).exists() {
            bail!("no process {raw}");
        }
        Ok(Self {
            pid,
            stopped: AtomicBool::new(false),
        })
    }

    fn stop(&self) -> Result<()> {
        self.stopped.store(true, Ordering::SeqCst);
        rustix::process::kill_process(self.pid, rustix::process::Signal::STOP)
            .context("SIGSTOP to the vendor")
    }

    fn cont(&self) -> Result<()> {
        let r = rustix::process::kill_process(self.pid, rustix::process::Signal::CONT)
            .context("SIGCONT to the vendor");
        if r.is_ok() {
            self.stopped.store(false, Ordering::SeqCst);
        }
        r
    }
}

impl Drop for VendorSignals {
    fn drop(&mut self) {
        // Always, even if we believe it runs: a SIGCONT to a running process is harmless.
        let _ = rustix::process::kill_process(self.pid, rustix::process::Signal::CONT);
    }
}

/// Route changes seen by polling `GET /v1/route`: (Unix µs, route).
#[derive(Default)]
struct RouteLog {
    changes: Vec<(u64, String)>,
    polls: u64,
    errors: u64,
    last_error: Option<String>,
}

/// Polls `/v1/route` every [`ROUTE_POLL`] until `stop`, recording every change.
async fn poll_route(
    http: reqwest::Client,
    url: reqwest::Url,
    log: Arc<Mutex<RouteLog>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(ROUTE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<String> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let answer = async {
            let v: Value = http
                .get(url.clone())
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            anyhow::Ok(v["route"].as_str().unwrap_or("?").to_owned())
        };
        let result = tokio::time::timeout(Duration::from_secs(2), answer).await;
        let at = unix_micros();
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        log.polls += 1;
        match result {
            Ok(Ok(route)) => {
                if last.as_deref() != Some(route.as_str()) {
                    log.changes.push((at, route.clone()));
                    last = Some(route);
                }
            }
            Ok(Err(e)) => {
                log.errors += 1;
                log.last_error = Some(format!("{e:#}"));
            }
            Err(_) => {
                log.errors += 1;
                log.last_error = Some("no answer within 2s".to_owned());
            }
        }
    }
}

/// The vendor lane figures of `GET /admin/status` (`vendors[0].lanes`).
#[derive(Clone, Debug, Default, Serialize)]
struct LaneFigures {
    realtime_queued: u64,
    realtime_in_flight: u64,
    realtime_dropped: u64,
    realtime_delivered: u64,
    bulk_queued: u64,
    bulk_in_flight: u64,
    bulk_dropped: u64,
    queued_bytes: u64,
    vendor_state: String,
    route: String,
}

impl LaneFigures {
    fn of(status: &Value) -> Option<Self> {
        let v = &status["vendors"][0];
        let lanes = &v["lanes"];
        if !lanes.is_object() {
            return None;
        }
        let n = |x: &Value| x.as_u64().unwrap_or(0);
        let dropped = |x: &Value| {
            x.as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
        };
        Some(Self {
            realtime_queued: n(&lanes["realtime"]["queued"]),
            realtime_in_flight: n(&lanes["realtime"]["in_flight"]),
            realtime_dropped: dropped(&lanes["realtime"]["dropped"]),
            realtime_delivered: n(&lanes["realtime"]["delivered"]),
            bulk_queued: n(&lanes["bulk"]["queued"]),
            bulk_in_flight: n(&lanes["bulk"]["in_flight"]),
            bulk_dropped: dropped(&lanes["bulk"]["dropped"]),
            queued_bytes: n(&lanes["queued_bytes"]),
            vendor_state: v["state"].as_str().unwrap_or("?").to_owned(),
            route: status["route"]["route"].as_str().unwrap_or("?").to_owned(),
        })
    }
}

/// The admin endpoint and token, when given.
#[derive(Clone)]
struct Admin {
    http: reqwest::Client,
    url: reqwest::Url,
    token: String,
}

impl Admin {
    async fn status(&self) -> Result<Value> {
        let v = self
            .http
            .get(self.url.clone())
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(v)
    }
}

/// One sample of the server over time.
#[derive(Clone, Debug, Serialize)]
struct Sample {
    /// Seconds since publishing started.
    t_s: f64,
    rss_kib: Option<u64>,
    cpu_us: Option<u64>,
    published: u64,
    lanes: Option<LaneFigures>,
}

/// The three windows publish latency is split into.
const PHASES: [&str; 3] = ["before", "during", "after"];

#[derive(Serialize)]
struct PhaseFigures {
    phase: &'static str,
    attempted: u64,
    accepted: u64,
    latency: Percentiles,
    lateness: Percentiles,
}

#[derive(Serialize)]
struct Summary {
    mode: &'static str,
    pass: bool,
    transport: Transport,
    subscribers: u32,
    rate: f64,
    duration_s: f64,
    hang_at_s: f64,
    resume_at_s: f64,
    run_id: String,
    subscribe: Percentiles,
    publish: Vec<PhaseFigures>,
    publish_statuses: std::collections::BTreeMap<String, u64>,
    publish_notes: Vec<String>,
    /// Hang → first `GET /v1/route` answer saying `self`.
    detection_polled_ms: Option<f64>,
    /// Hang → first `route` message saying `self` on any subscriber.
    detection_pushed_ms: Option<f64>,
    /// Subscribers that received a `route: self` message after the hang.
    subscribers_told_self: u64,
    /// Hang → the last subscriber's arrival of the first event published after the hang.
    first_event_after_hang_all_ms: Option<f64>,
    /// The same, per subscriber.
    first_event_after_hang: Percentiles,
    subscribers_without_event_after_hang: u64,
    /// Resume → first `GET /v1/route` answer saying `vendor`.
    recovery_polled_ms: Option<f64>,
    /// Resume → first `route: vendor` message on any subscriber.
    recovery_pushed_ms: Option<f64>,
    route_changes: Vec<(f64, String)>,
    route_polls: u64,
    route_poll_errors: u64,
    expected: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    unexpected: u64,
    out_of_range: u64,
    drained: bool,
    drain_ms: u64,
    e2e_latency: Percentiles,
    anomalies: Anomalies,
    server_cpu_us: Option<u64>,
    server_cpu_us_per_delivered_event: Option<f64>,
    rss_before_kib: Option<u64>,
    rss_subscribed_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    rss_max_kib: Option<u64>,
    samples: Vec<Sample>,
    lanes_end: Option<LaneFigures>,
    lanes_max_realtime_queued: Option<u64>,
    lanes_end_raw: Option<Value>,
    other_cpu_us: Option<u64>,
}

/// Runs the scenario; `Ok(true)` when delivery was exact and the route went to `self`.
pub(crate) async fn run(args: FailoverArgs, json_only: bool) -> Result<bool> {
    if args.hang_at >= args.duration {
        bail!("--hang-at must be before the end of --duration");
    }
    let resume_at = args.resume_at.unwrap_or(args.duration);
    if resume_at <= args.hang_at || resume_at > args.duration {
        bail!("--resume-at must be after --hang-at and at most --duration");
    }
    let target = Target::parse(&args.common.url).await?;
    let admin = match &args.admin {
        Some(raw) => {
            let t = Target::parse(raw).await.context("--admin")?;
            let token = args
                .admin_token
                .clone()
                .context("--admin needs --admin-token (or UNDERSTUDY_ADMIN_TOKEN)")?;
            Some(Admin {
                http: reqwest::Client::new(),
                url: t.url("/admin/status"),
                token,
            })
        }
        None => None,
    };
    if args.common.server_pid == Some(args.vendor_pid) {
        bail!("--vendor-pid is the server's pid");
    }
    let vendor = VendorSignals::new(args.vendor_pid)?;
    let server = args.common.server_pid.map(Proc::Pid);
    let rss_before = match server {
        Some(p) => Some(p.sample()?.rss_kib),
        None => None,
    };
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(2))
        .build()?;
    let route_url = target.url("/v1/route");
    let route_now: Value = http.get(route_url.clone()).send().await?.json().await?;
    if route_now["route"].as_str() != Some("vendor") {
        bail!(
            "the route is {:?}, not \"vendor\": is the vendor healthy?",
            route_now["route"]
        );
    }

    let run_id = report::run_id();
    let channel: Arc<str> = Arc::from(format!("lt-{run_id}-0"));
    let subscribers = args.subscribers as usize;
    let connector = Connector::new(
        args.transport,
        target.clone(),
        None,
        WsSettings {
            read_buffer_bytes: 16 * 1024,
        },
        subscribers,
    )?;
    let shared = Arc::new(Shared::new());
    let permits = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let connecting = Instant::now();
    let tasks: Vec<_> = (0..subscribers)
        .map(|index| {
            let spec = Spec {
                index,
                channel_idx: 0,
                channel: channel.clone(),
            };
            tokio::spawn(subscriber::run(
                spec,
                connector.clone(),
                shared.clone(),
                permits.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
                subscriber::Resumes::Never,
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
                failures.push(format!("only {done} of {subscribers} subscribed in time"));
                break;
            }
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
            "{subscribers} {} subscribers in {:.2}s; publishing {} ev/s for {}s, vendor hung at {}s, resumed at {resume_at}s",
            args.transport,
            connecting.elapsed().as_secs_f64(),
            args.rate,
            args.duration,
            args.hang_at,
        ),
    );

    // Background: route poller and the RSS / lane sampler.
    let route_log = Arc::new(Mutex::new(RouteLog::default()));
    let poller = tokio::spawn(poll_route(
        http.clone(),
        route_url,
        route_log.clone(),
        stop_rx.clone(),
    ));
    let published = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let rss_subscribed = sample_opt(server).map(|s| s.rss_kib);
    let start = Instant::now() + Duration::from_millis(20);
    let sampler = tokio::spawn(sample_loop(
        start,
        Duration::from_secs_f64(args.sample_every),
        server,
        admin.clone(),
        published.clone(),
        samples.clone(),
        stop_rx.clone(),
        json_only,
    ));

    // Publish, hanging and resuming the vendor on schedule.
    let hang_instant = start + Duration::from_secs_f64(args.hang_at);
    let resume_instant = start + Duration::from_secs_f64(resume_at);
    let marks = Arc::new(Marks::default());
    let cpu_window = CpuWindow::start(server.as_slice());
    let server_start = sample_opt(server);
    let publisher = Publisher::new(
        &target,
        &args.key.publisher_key,
        args.payload_bytes as usize,
    )?;
    let pacing = tokio::spawn(pace(
        publisher,
        channel.clone(),
        args.rate,
        Duration::from_secs_f64(args.duration),
        auto_publishers(args.rate),
        start,
        [hang_instant, resume_instant],
        published.clone(),
    ));
    let signal_result = async {
        tokio::time::sleep_until(hang_instant).await;
        let hang_us = unix_micros();
        shared.mark_us.store(hang_us, Ordering::SeqCst);
        vendor.stop()?;
        marks.hang_us.store(hang_us, Ordering::SeqCst);
        progress(json_only, "vendor stopped (SIGSTOP)");
        tokio::time::sleep_until(resume_instant).await;
        vendor.cont()?;
        marks.resume_us.store(unix_micros(), Ordering::SeqCst);
        progress(json_only, "vendor continued (SIGCONT)");
        anyhow::Ok(())
    }
    .await;
    let logs = pacing.await;
    if let Err(e) = signal_result {
        let _ = vendor.cont();
        let _ = stop_tx.send(true);
        bail!("signalling the vendor: {e:#}");
    }
    let logs = logs.context("publisher task")?;
    let server_published = sample_opt(server);

    // Wait for stragglers, then for the route to return to the vendor.
    let mut all = PublishLog::new(1);
    let mut publish = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    let mut notes = Vec::new();
    for (phase, log) in PHASES.iter().zip(logs) {
        publish.push(PhaseFigures {
            phase,
            attempted: log.attempted,
            accepted: log.accepted,
            latency: Percentiles::of(&log.latency),
            lateness: Percentiles::of(&log.lateness),
        });
        for (k, v) in &log.statuses {
            *statuses.entry(k.clone()).or_insert(0) += v;
        }
        notes.extend(log.notes.iter().cloned());
        all.absorb(log);
    }
    let expected_total = all.per_channel[0].seqs.len() as u64 * subscribers as u64;
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
    let other_cpu_us = cpu_window.others_since(server.as_slice());
    let resume_us = marks.resume_us.load(Ordering::SeqCst);
    let hang_us = marks.hang_us.load(Ordering::SeqCst);
    let recovery_deadline =
        resume_instant + Duration::from_secs_f64(args.recovery_timeout.max(0.1));
    loop {
        let back = route_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .changes
            .iter()
            .any(|(at, r)| *at >= resume_us && r == "vendor");
        if back || Instant::now() >= recovery_deadline {
            break;
        }
        tokio::time::sleep(ROUTE_POLL).await;
    }
    tokio::time::sleep(DUPLICATE_GRACE).await;
    let lanes_end_raw = match &admin {
        Some(a) => a.status().await.ok(),
        None => None,
    };
    let rss_after = sample_opt(server).map(|s| s.rss_kib);

    // Stop and collect.
    let _ = stop_tx.send(true);
    let _ = poller.await;
    let _ = sampler.await;
    let mut outcomes = Vec::with_capacity(subscribers);
    for task in tasks {
        if let Ok(Some(outcome)) = task.await {
            outcomes.push(outcome);
        }
    }
    drop(vendor);
    let tally = Tally::of(&outcomes, &all);
    let mut after_hang = histogram();
    let mut without = 0;
    let mut all_have: Option<u64> = None;
    for o in &outcomes {
        match o.first_after_mark_us {
            Some(at) => {
                let d = at.saturating_sub(hang_us);
                after_hang.saturating_record(d);
                all_have = Some(all_have.map_or(d, |m| m.max(d)));
            }
            None => without += 1,
        }
    }
    without += (subscribers - outcomes.len()) as u64;
    let mut anomalies = Anomalies::default();
    for o in outcomes {
        anomalies.absorb(o.anomalies, 10);
    }
    let pushed = shared
        .routes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let detection_pushed_ms = pushed
        .iter()
        .filter(|(at, r)| *at >= hang_us && r == "self")
        .map(|(at, _)| at - hang_us)
        .min()
        .map(us_to_ms);
    let subscribers_told_self = pushed
        .iter()
        .filter(|(at, r)| *at >= hang_us && *at < resume_us && r == "self")
        .count() as u64;
    let recovery_pushed_ms = pushed
        .iter()
        .filter(|(at, r)| *at >= resume_us && r == "vendor")
        .map(|(at, _)| at - resume_us)
        .min()
        .map(us_to_ms);
    let route_log = std::mem::take(&mut *route_log.lock().unwrap_or_else(|p| p.into_inner()));
    let first_change = |after: u64, to: &str| {
        route_log
            .changes
            .iter()
            .find(|(at, r)| *at >= after && r == to)
            .map(|(at, _)| us_to_ms(at - after))
    };
    let detection_polled_ms = first_change(hang_us, "self");
    let recovery_polled_ms = first_change(resume_us, "vendor");
    let start_us = hang_us.saturating_sub((args.hang_at * 1e6) as u64);
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    let rss_max = samples
        .iter()
        .filter_map(|s| s.rss_kib)
        .chain(rss_after)
        .max();
    let lanes_max_realtime_queued = samples
        .iter()
        .filter_map(|s| s.lanes.as_ref().map(|l| l.realtime_queued))
        .max();
    let server_cpu_us = server_start
        .zip(server_drained)
        .map(|(a, b)| b.cpu_us - a.cpu_us);
    let _ = server_published;
    let pass = tally.lost == 0
        && tally.duplicated == 0
        && tally.out_of_order == 0
        && all.accepted == all.attempted
        && all.attempted > 0
        && detection_polled_ms.is_some();
    let summary = Summary {
        mode: "failover",
        pass,
        transport: args.transport,
        subscribers: args.subscribers,
        rate: args.rate,
        duration_s: args.duration,
        hang_at_s: args.hang_at,
        resume_at_s: resume_at,
        run_id,
        subscribe: Percentiles::of(&subscribe_hist),
        publish,
        publish_statuses: statuses,
        publish_notes: notes.into_iter().take(10).collect(),
        detection_polled_ms,
        detection_pushed_ms,
        subscribers_told_self,
        first_event_after_hang_all_ms: all_have.map(us_to_ms),
        first_event_after_hang: Percentiles::of(&after_hang),
        subscribers_without_event_after_hang: without,
        recovery_polled_ms,
        recovery_pushed_ms,
        route_changes: route_log
            .changes
            .iter()
            .map(|(at, r)| ((*at as f64 - start_us as f64) / 1e6, r.clone()))
            .collect(),
        route_polls: route_log.polls,
        route_poll_errors: route_log.errors,
        expected: expected_total,
        delivered: tally.delivered,
        lost: tally.lost,
        duplicated: tally.duplicated,
        out_of_order: tally.out_of_order,
        unexpected: tally.unexpected,
        out_of_range: tally.out_of_range,
        drained,
        drain_ms,
        e2e_latency: Percentiles::of(&shared.latency.merged()),
        anomalies,
        server_cpu_us,
        server_cpu_us_per_delivered_event: server_cpu_us.and_then(|c| per(c, tally.delivered)),
        rss_before_kib: rss_before,
        rss_subscribed_kib: rss_subscribed,
        rss_after_kib: rss_after,
        rss_max_kib: rss_max,
        samples,
        lanes_end: lanes_end_raw.as_ref().and_then(LaneFigures::of),
        lanes_max_realtime_queued,
        lanes_end_raw: lanes_end_raw.map(|v| v["vendors"][0]["lanes"].clone()),
        other_cpu_us,
    };
    if let Some(e) = route_log.last_error {
        progress(json_only, &format!("last /v1/route poll error: {e}"));
    }
    report::emit(json_only, &human(&summary), &summary);
    Ok(pass)
}

/// Unix µs of the hang and the resume (0 until they happen).
#[derive(Default)]
struct Marks {
    hang_us: AtomicU64,
    resume_us: AtomicU64,
}

fn us_to_ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 100.0).round() / 100.0
}

/// Publishes `round(rate × duration)` events to `channel` on absolute deadlines, recording
/// each publish in the log of its phase (by send time: before the hang, during, after).
#[allow(clippy::too_many_arguments)]
async fn pace(
    publisher: Publisher,
    channel: Arc<str>,
    rate: f64,
    duration: Duration,
    workers: usize,
    start: Instant,
    bounds: [Instant; 2],
    published: Arc<AtomicU64>,
) -> [PublishLog; 3] {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (publisher, channel, next, published) = (
                publisher.clone(),
                channel.clone(),
                next.clone(),
                published.clone(),
            );
            tokio::spawn(async move {
                let mut logs = [PublishLog::new(1), PublishLog::new(1), PublishLog::new(1)];
                let mut session = publisher.session();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    let sent = Instant::now();
                    let phase = bounds.iter().filter(|b| sent >= **b).count();
                    let log = &mut logs[phase];
                    log.lateness
                        .saturating_record((sent - due).as_micros() as u64);
                    let outcome = session.publish(&channel).await;
                    log.record(0, outcome, sent.elapsed());
                    published.fetch_add(1, Ordering::Relaxed);
                }
                logs
            })
        })
        .collect();
    let mut all = [PublishLog::new(1), PublishLog::new(1), PublishLog::new(1)];
    for task in tasks {
        match task.await {
            Ok(logs) => {
                for (mine, theirs) in all.iter_mut().zip(logs) {
                    mine.absorb(theirs);
                }
            }
            Err(e) => all[0].notes.push(format!("publisher task failed: {e}")),
        }
    }
    all
}

/// Samples server RSS/CPU and the vendor lanes every `every` until `stop`.
#[allow(clippy::too_many_arguments)]
async fn sample_loop(
    start: Instant,
    every: Duration,
    server: Option<Proc>,
    admin: Option<Admin>,
    published: Arc<AtomicU64>,
    samples: Arc<Mutex<Vec<Sample>>>,
    mut stop: watch::Receiver<bool>,
    json_only: bool,
) {
    tokio::time::sleep_until(start).await;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let proc = sample_opt(server);
        let lanes = match &admin {
            Some(a) => a.status().await.ok().as_ref().and_then(LaneFigures::of),
            None => None,
        };
        let sample = Sample {
            t_s: (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            rss_kib: proc.map(|p| p.rss_kib),
            cpu_us: proc.map(|p| p.cpu_us),
            published: published.load(Ordering::Relaxed),
            lanes,
        };
        progress(json_only, &sample_line(&sample));
        samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sample);
    }
}

fn sample_line(s: &Sample) -> String {
    let lanes = s.lanes.as_ref().map_or_else(
        || "lanes n/a".to_owned(),
        |l| {
            format!(
                "vendor {} route {}; realtime queued {} in flight {} dropped {}; bulk queued {} dropped {}; {} B queued",
                l.vendor_state,
                l.route,
                l.realtime_queued,
                l.realtime_in_flight,
                l.realtime_dropped,
                l.bulk_queued,
                l.bulk_dropped,
                l.queued_bytes
            )
        },
    );
    format!(
        "t={:>6.1}s published {:>7} rss {} KiB; {lanes}",
        s.t_s,
        s.published,
        s.rss_kib
            .map_or_else(|| "n/a".to_owned(), |r| r.to_string()),
    )
}

fn opt_ms(x: Option<f64>) -> String {
    x.map_or_else(|| "never".to_owned(), |x| format!("{x:.0} ms"))
}

fn human(s: &Summary) -> Vec<String> {
    let mut lines = vec![format!(
        "failover {}: {} subscribers, {} ev/s for {}s, vendor hung at {}s, resumed at {}s (run {})",
        s.transport, s.subscribers, s.rate, s.duration_s, s.hang_at_s, s.resume_at_s, s.run_id
    )];
    lines.push(format!("subscribe time      {}", s.subscribe.human()));
    for p in &s.publish {
        lines.push(format!(
            "publish {:<7}     {} of {} accepted; {}",
            p.phase,
            p.accepted,
            p.attempted,
            p.latency.human()
        ));
    }
    lines.push(format!("publish statuses    {:?}", s.publish_statuses));
    for note in &s.publish_notes {
        lines.push(format!("  {note}"));
    }
    lines.push(format!(
        "detection           polled {}  pushed {}  ({} subscribers told `self`)",
        opt_ms(s.detection_polled_ms),
        opt_ms(s.detection_pushed_ms),
        s.subscribers_told_self
    ));
    lines.push(format!(
        "first event after hang: all subscribers by {}; per subscriber {}; {} without",
        opt_ms(s.first_event_after_hang_all_ms),
        s.first_event_after_hang.human(),
        s.subscribers_without_event_after_hang
    ));
    lines.push(format!(
        "recovery            polled {}  pushed {}",
        opt_ms(s.recovery_polled_ms),
        opt_ms(s.recovery_pushed_ms)
    ));
    let changes: Vec<String> = s
        .route_changes
        .iter()
        .map(|(t, r)| format!("{t:.2}s {r}"))
        .collect();
    lines.push(format!(
        "route changes       {} ({} polls, {} errors)",
        changes.join(", "),
        s.route_polls,
        s.route_poll_errors
    ));
    lines.push(format!(
        "delivery            expected {} delivered {} lost {} duplicated {} out-of-order {} unexpected {} out-of-range {}; drained {} in {} ms",
        s.expected, s.delivered, s.lost, s.duplicated, s.out_of_order, s.unexpected, s.out_of_range, s.drained, s.drain_ms
    ));
    lines.push(format!("e2e latency         {}", s.e2e_latency.human()));
    if s.anomalies.total() > 0 {
        lines.push(format!("anomalies           {:?}", s.anomalies));
    }
    lines.push(format!(
        "server              CPU-µs per delivered event {}; RSS before {:?} subscribed {:?} after {:?} max {:?} KiB; other CPU {}",
        show(s.server_cpu_us_per_delivered_event),
        s.rss_before_kib,
        s.rss_subscribed_kib,
        s.rss_after_kib,
        s.rss_max_kib,
        s.other_cpu_us.map_or_else(|| "n/a".to_owned(), ms)
    ));
    if let Some(l) = &s.lanes_end {
        lines.push(format!(
            "lanes at the end    realtime queued {} in flight {} dropped {} delivered {}; bulk queued {} dropped {}; max realtime queued seen {:?}",
            l.realtime_queued,
            l.realtime_in_flight,
            l.realtime_dropped,
            l.realtime_delivered,
            l.bulk_queued,
            l.bulk_dropped,
            s.lanes_max_realtime_queued
        ));
    }
    if let Some(raw) = &s.lanes_end_raw {
        lines.push(format!("lanes (raw)         {raw}"));
    }
    lines.push(format!("pass                {}", s.pass));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lane_figures_from_admin_status() {
        let status = serde_json::json!({
            "route": {"route": "self"},
            "vendors": [{"state": "down", "lanes": {
                "realtime": {"queued": 1024, "in_flight": 1, "delivered": 6,
                             "dropped": {"queue_full": 500, "too_old": 3}},
                "bulk": {"queued": 0, "in_flight": 0, "dropped": {}},
                "queued_bytes": 245760
            }}]
        });
        let l = LaneFigures::of(&status).unwrap();
        assert_eq!(
            (l.realtime_queued, l.realtime_in_flight, l.realtime_dropped),
            (1024, 1, 503)
        );
        assert_eq!(
            (l.bulk_queued, l.bulk_dropped, l.queued_bytes),
            (0, 0, 245760)
        );
        assert_eq!(
            (l.vendor_state.as_str(), l.route.as_str()),
            ("down", "self")
        );
        assert!(LaneFigures::of(&serde_json::json!({"vendors": []})).is_none());
    }

    #[test]
    fn refuses_pids_that_are_not_a_vendor() {
        assert!(VendorSignals::new(0).is_err());
        assert!(VendorSignals::new(1).is_err());
        assert!(VendorSignals::new(std::process::id()).is_err());
    }
}
