//! Tenants sharing one vendor (issue 14's acceptance): tenant A floods far past its publish
//! quota while tenant B publishes steadily; B's publish latency, B's delivery on understudy's
//! own WebSocket and on the vendor's (Pusher protocol, straight from the vendor), and B's loss and
//! duplicates, against the same run without A. `tenants delay` is the slow-vendor relay the
//! scenario puts between understudy and the vendor (`loadtest/tenants.sh` runs both).
//!
//! # Layout
//! - `flood`: A's batch publisher and its accepted / 429 / other counts
//! - `ledger`: what each of B's delivery paths received, against the seqs published
//! - `vendor_sub`: B's Pusher subscriber on the vendor
//! - `delay`: the TCP relay that delays every request to the vendor

mod delay;
mod flood;
mod ledger;
mod vendor_sub;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::message::ServerMessage;
use crate::client::ws::{WsConnection, WsSettings};
use crate::client::{Connection, Incoming};
use crate::publisher::{Outcome, Publisher};
use crate::stats::{histogram, Percentiles};
use crate::target::Target;
use crate::{parse_duration_secs, report};
use ledger::{PathFigures, PathLog};

/// B's channel: one channel, so its events are also checked for order on both paths.
const B_CHANNEL: &str = "b.steady";

#[derive(Debug, clap::Args)]
pub(crate) struct TenantsArgs {
    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TenantsCommand {
    /// One run: B steady (and A flooding unless --a-rate 0); prints B's figures.
    Run(RunArgs),
    /// Relay --listen to --upstream, holding each client chunk --delay-ms (runs until killed).
    Delay(DelayArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// understudy's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The vendor's own address (sockudo's plain port), where B's vendor subscriber connects.
    #[arg(long)]
    vendor: SocketAddr,
    /// Pusher app key and secret of the vendor (the same credentials understudy forwards with).
    #[arg(long)]
    app_key: String,
    #[arg(long, env = "UNDERSTUDY_PUSHER_SECRET", hide_env_values = true)]
    app_secret: String,
    /// Tenant A's and B's publisher keys.
    #[arg(long, env = "TENANT_A_KEY", hide_env_values = true)]
    key_a: String,
    #[arg(long, env = "TENANT_B_KEY", hide_env_values = true)]
    key_b: String,
    /// B's publishes a second (one at a time on one connection).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    b_rate: u64,
    /// A's events a second; 0 is the baseline run without A.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    a_rate: u64,
    /// Where A floods: by default the server under test. The control run points it at a second
    /// understudy on the same machine, so B's figures show what A's flood costs the machine (the
    /// load tool's and the other server's CPU) apart from what it costs the server B uses.
    #[arg(long)]
    a_url: Option<String>,
    /// A's events per batch request.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=500))]
    a_batch: u64,
    /// Seconds of publishing.
    #[arg(long, default_value = "20", value_parser = parse_duration_secs)]
    duration: f64,
    /// Seconds to wait after publishing for B's last deliveries.
    #[arg(long, default_value = "15", value_parser = parse_duration_secs)]
    drain: f64,
    /// Admin listener base URL, for the lane figures of `GET /admin/status`.
    #[arg(long)]
    admin: Option<String>,
    #[arg(long, env = "UNDERSTUDY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

#[derive(Debug, clap::Args)]
struct DelayArgs {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    upstream: SocketAddr,
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    delay_ms: u64,
    /// Seconds before the relay stops by itself, so a forgotten one does not run on.
    #[arg(long, default_value = "3600", value_parser = parse_duration_secs)]
    max_secs: f64,
}

pub(crate) async fn run(args: TenantsArgs, json: bool) -> Result<bool> {
    match args.command {
        TenantsCommand::Run(args) => run_once(args, json).await,
        TenantsCommand::Delay(args) => {
            for addr in [args.listen, args.upstream] {
                if !addr.ip().is_loopback() {
                    bail!("{addr} is not a loopback address");
                }
            }
            let delay = Duration::from_millis(args.delay_ms);
            let relay = delay::serve(args.listen, args.upstream, delay);
            match tokio::time::timeout(Duration::from_secs_f64(args.max_secs), relay).await {
                Ok(result) => result.map(|()| true),
                Err(_) => Ok(true),
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    a_rate: u64,
    b_rate: u64,
    duration_s: f64,
    b_published: u64,
    b_accepted: u64,
    b_failed: u64,
    /// The first refused or failed publish of B, for the report.
    b_first_error: Option<String>,
    b_publish: Percentiles,
    b_own: PathFigures,
    b_vendor: PathFigures,
    a_sent: u64,
    a_accepted: u64,
    a_refused_429: u64,
    a_other: u64,
    /// Largest realtime queue of the vendor seen while publishing (sampled every 250 ms).
    lane_realtime_queued_max: Option<u64>,
    /// `vendors[0].lanes.tenants` of `/admin/status` at the end.
    lane_tenants: Option<Value>,
    pass: bool,
}

async fn run_once(args: RunArgs, json: bool) -> Result<bool> {
    let target = Target::parse(&args.url).await?;
    let a_target = match &args.a_url {
        Some(raw) => Target::parse(raw).await.context("--a-url")?,
        None => target.clone(),
    };
    if !args.vendor.ip().is_loopback() {
        bail!("--vendor {} is not a loopback address", args.vendor);
    }
    let own_log = Arc::new(Mutex::new(PathLog::default()));
    let vendor_log = Arc::new(Mutex::new(PathLog::default()));

    // B's subscribers first: understudy's own WebSocket and the vendor's.
    let settings = WsSettings {
        read_buffer_bytes: 64 * 1024,
    };
    let url = target.ws_url(&[B_CHANNEL], None);
    let ws = WsConnection::open(target.addr(), &url, None, settings)
        .await
        .context("B's WebSocket on understudy")?;
    let mut own = Connection::ws(ws);
    own.await_subscribed(B_CHANNEL).await?;
    let mut vendor =
        vendor_sub::VendorSubscriber::open(args.vendor, &args.app_key, &args.app_secret, B_CHANNEL)
            .await
            .context("B's Pusher subscriber on the vendor")?;
    let own_task = {
        let log = own_log.clone();
        tokio::spawn(async move {
            while let Ok(Incoming::Message(bytes, _)) = own.next().await {
                let Ok(m) = ServerMessage::parse(bytes) else {
                    continue;
                };
                if m.kind == "event" && m.channel.as_deref() == Some(B_CHANNEL) {
                    if let Some(seq) = m.seq {
                        let t = m.data.and_then(|d| d.t);
                        log.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .observe(seq, t);
                    }
                }
            }
        })
    };
    let vendor_task = {
        let log = vendor_log.clone();
        tokio::spawn(async move {
            while let Ok(d) = vendor.next().await {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .observe(d.seq, d.t_us);
            }
        })
    };

    let http = reqwest::Client::new();
    let admin = match (&args.admin, &args.admin_token) {
        (Some(raw), Some(token)) => {
            let t = Target::parse(raw).await.context("--admin")?;
            Some((t.url("/admin/status"), token.clone()))
        }
        _ => None,
    };
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.duration);
    report::progress(
        json,
        &format!(
            "tenants: B {} /s on {B_CHANNEL}, A {} /s, {} s",
            args.b_rate, args.a_rate, args.duration
        ),
    );
    let counts = Arc::new(flood::FloodCounts::default());
    // A floods from a thread and runtime of its own, so its client-side work (serialising batches,
    // reading 429s) never delays B's publisher or subscribers in this process: what B measures
    // is the server's doing.
    let flood_task = (args.a_rate > 0).then(|| {
        let (url, key) = (a_target.url("/v1/publish/batch"), args.key_a.clone());
        let (rate, batch, counts) = (args.a_rate, args.a_batch, counts.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("A's runtime starts");
            runtime.block_on(flood::run(
                reqwest::Client::new(),
                url,
                key,
                rate,
                batch,
                until,
                counts,
            ))
        })
    });
    let sampler = admin.clone().map(|(url, token)| {
        let http = http.clone();
        tokio::spawn(async move {
            let mut max = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            while tick.tick().await < until {
                if let Some(s) = status(&http, &url, &token).await {
                    max = max.max(
                        s["vendors"][0]["lanes"]["realtime"]["queued"]
                            .as_u64()
                            .unwrap_or(0),
                    );
                }
            }
            max
        })
    });

    // B publishes steadily.
    let publisher = Publisher::new(&target, &args.key_b, 100)?;
    let mut session = publisher.session();
    let mut publish_hist = histogram();
    let mut accepted = Vec::new();
    let (mut published, mut failed) = (0u64, 0u64);
    let mut first_error = None;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.b_rate as f64));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while tick.tick().await < until {
        let t0 = Instant::now();
        let outcome = session.publish(B_CHANNEL).await;
        publish_hist.saturating_record((t0.elapsed().as_micros() as u64).max(1));
        published += 1;
        match outcome {
            Outcome::Accepted { seq, .. } => accepted.push(seq),
            other => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{other:?}"));
            }
        }
    }
    if let Some(f) = flood_task {
        let _ = tokio::task::spawn_blocking(move || f.join()).await;
    }
    let lane_max = match sampler {
        Some(s) => s.await.ok(),
        None => None,
    };

    // Wait for B's last events on both paths (bounded by --drain).
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain);
    while Instant::now() < drain_until {
        let done = own_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .has_all(&accepted)
            && vendor_log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .has_all(&accepted);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    own_task.abort();
    vendor_task.abort();
    let lane_tenants = match &admin {
        Some((url, token)) => status(&http, url, token)
            .await
            .map(|s| s["vendors"][0]["lanes"]["tenants"].clone()),
        None => None,
    };
    let b_own = own_log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .figures(&accepted);
    let b_vendor = vendor_log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .figures(&accepted);
    let pass = failed == 0
        && [&b_own, &b_vendor]
            .iter()
            .all(|p| p.lost == 0 && p.duplicated == 0 && p.out_of_order == 0);
    let summary = Summary {
        scenario: "tenants",
        a_rate: args.a_rate,
        b_rate: args.b_rate,
        duration_s: args.duration,
        b_published: published,
        b_accepted: accepted.len() as u64,
        b_failed: failed,
        b_first_error: first_error,
        b_publish: Percentiles::of(&publish_hist),
        b_own,
        b_vendor,
        a_sent: counts.sent.load(Ordering::Relaxed),
        a_accepted: counts.accepted.load(Ordering::Relaxed),
        a_refused_429: counts.refused_429.load(Ordering::Relaxed),
        a_other: counts.other.load(Ordering::Relaxed),
        lane_realtime_queued_max: lane_max,
        lane_tenants,
        pass,
    };
    let lines = vec![
        format!(
            "B publish: {} published, {} accepted, {} failed (first: {}); {}",
            summary.b_published,
            summary.b_accepted,
            summary.b_failed,
            summary.b_first_error.as_deref().unwrap_or("none"),
            summary.b_publish.human()
        ),
        path_line("B own WS", &summary.b_own),
        path_line("B vendor", &summary.b_vendor),
        format!(
            "A: {} sent, {} accepted, {} refused (429), {} other; vendor realtime queue max {:?}",
            summary.a_sent, summary.a_accepted, summary.a_refused_429, summary.a_other, lane_max
        ),
        format!(
            "lanes by tenant: {}",
            summary.lane_tenants.clone().unwrap_or_default()
        ),
        format!("{}", if pass { "PASS" } else { "FAIL" }),
    ];
    report::emit(json, &lines, &summary);
    Ok(pass)
}

fn path_line(name: &str, p: &PathFigures) -> String {
    format!(
        "{name}: {} delivered, {} lost, {} duplicated, {} out of order; {}",
        p.delivered,
        p.lost,
        p.duplicated,
        p.out_of_order,
        p.latency.human()
    )
}

async fn status(http: &reqwest::Client, url: &reqwest::Url, token: &str) -> Option<Value> {
    let answer = http
        .get(url.clone())
        .bearer_auth(token)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    answer.error_for_status().ok()?.json().await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: TenantsCommand,
    }

    #[test]
    fn parses_run_and_delay_command_lines() {
        let cli = Cli::try_parse_from([
            "x",
            "run",
            "--vendor",
            "127.0.0.1:16201",
            "--app-key",
            "k",
            "--app-secret",
            "s",
            "--key-a",
            "a",
            "--key-b",
            "b",
            "--a-rate",
            "5000",
        ])
        .unwrap();
        let TenantsCommand::Run(run) = cli.command else {
            panic!("not a run");
        };
        assert_eq!((run.a_rate, run.b_rate, run.a_batch), (5000, 50, 50));
        assert!(
            Cli::try_parse_from(["x", "run", "--vendor", "127.0.0.1:1", "--b-rate", "0"]).is_err()
        );
        let cli = Cli::try_parse_from([
            "x",
            "delay",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "127.0.0.1:2",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            TenantsCommand::Delay(DelayArgs { delay_ms: 100, .. })
        ));
    }
}
