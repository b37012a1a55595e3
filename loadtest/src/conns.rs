//! The `conns` benchmark: N idle subscriber connections (WebSocket or SSE, on
//! `idle-<i % 100>`), their connect times, and the server's RSS per connection, also after a
//! hold.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::client::ws::WsSettings;
use crate::client::{CloseInfo, Connector, Incoming, Transport};
use crate::proc_stats::{sample_opt, Proc};
use crate::report::{self, per, progress, show};
use crate::stats::{histogram, Percentiles};
use crate::target::{Dialect, Target};
use crate::{nofile, CommonArgs};

/// Channels the idle connections are spread over.
const IDLE_CHANNELS: usize = 100;

#[derive(Debug, clap::Args)]
pub(crate) struct ConnsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The server's subscribe protocol: understudy's, or nchan's `/sub/<channel>` (which the
    /// `floor` server speaks too).
    #[arg(long, value_enum, default_value_t = Dialect::Understudy)]
    dialect: Dialect,
    /// Subscriber transport.
    #[arg(long, value_enum, default_value = "ws")]
    transport: Transport,
    /// Idle connections to open.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    connections: u32,
    /// Seconds to hold the connections open after all are subscribed, then read RSS again.
    #[arg(long, default_value_t = 5.0, value_parser = crate::parse_duration_secs)]
    hold: f64,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connect_concurrency: u32,
    /// Seconds allowed for all connections to get `subscribed`.
    #[arg(long, default_value_t = 120.0, value_parser = crate::parse_duration_secs)]
    connect_timeout: f64,
    /// Subscriber JWT, sent as `?token=`.
    #[arg(long)]
    token: Option<String>,
}

#[derive(Serialize)]
struct Summary {
    mode: &'static str,
    pass: bool,
    dialect: Dialect,
    transport: Transport,
    connections: u32,
    connected: u64,
    failed: u64,
    closed_during_hold: u64,
    hold_s: f64,
    /// TCP connect + WebSocket upgrade.
    connect: Percentiles,
    /// Connect start until `subscribed`.
    subscribe: Percentiles,
    open_all_s: f64,
    server: Option<ServerFigures>,
    loadtest_rss_kib_per_connection: Option<f64>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct ServerFigures {
    pid: u32,
    rss_before_kib: u64,
    rss_connected_kib: u64,
    rss_after_hold_kib: u64,
    rss_kib_per_connection: Option<f64>,
    rss_kib_per_connection_after_hold: Option<f64>,
    cpu_us_during_hold: u64,
}

enum Ready {
    Subscribed {
        connect: Duration,
        subscribe: Duration,
    },
    Failed(String),
}

pub(crate) async fn run(args: ConnsArgs, json_only: bool) -> Result<bool> {
    let target = Target::parse(&args.common.url)
        .await?
        .speaking(args.dialect);
    let n = args.connections as usize;
    if let Some(limit) = nofile::current() {
        if limit < n as u64 + 64 {
            bail!("{n} connections need more than the nofile limit of {limit}; raise `ulimit -Hn`");
        }
    }
    let server = args.common.server_pid.map(Proc::Pid);
    let before = match server {
        Some(p) => Some(p.sample()?),
        None => None,
    };
    let self_before = sample_opt(Some(Proc::SelfProc));
    let ws = WsSettings {
        read_buffer_bytes: 4 * 1024,
    };
    let connector = Connector::new(args.transport, target, args.token.clone(), ws, n)?;
    let permits = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (connector, permits, ready, stop) = (
                connector.clone(),
                permits.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
            );
            tokio::spawn(hold_one(i, connector, permits, ready, stop))
        })
        .collect();
    drop(ready_tx);

    let (mut connect, mut subscribe) = (histogram(), histogram());
    let mut notes = Vec::new();
    let (mut connected, mut failed) = (0u64, 0u64);
    let deadline = started + Duration::from_secs_f64(args.connect_timeout);
    for done in 0..n {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ready::Subscribed {
                connect: c,
                subscribe: s,
            })) => {
                connected += 1;
                connect.saturating_record(c.as_micros() as u64);
                subscribe.saturating_record(s.as_micros() as u64);
            }
            Ok(Some(Ready::Failed(why))) => {
                failed += 1;
                if notes.len() < 5 {
                    notes.push(why);
                }
            }
            Ok(None) => break,
            Err(_) => {
                failed += (n - done) as u64;
                notes.push(format!(
                    "{} connections not subscribed within {}s",
                    n - done,
                    args.connect_timeout
                ));
                break;
            }
        }
        if (done + 1) % 1000 == 0 {
            progress(json_only, &format!("{} of {n} connections done", done + 1));
        }
    }
    let open_all = started.elapsed();
    // Let the server settle (buffers allocated on the first heartbeat or read) before reading RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_connected = sample_opt(server);
    let self_connected = sample_opt(Some(Proc::SelfProc));
    progress(
        json_only,
        &format!(
            "{connected} connected, {failed} failed; holding {}s",
            args.hold
        ),
    );
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let after_hold = sample_opt(server);

    let _ = stop_tx.send(true);
    let mut closed_during_hold = 0u64;
    for task in tasks {
        if let Ok(Some(info)) = task.await {
            closed_during_hold += 1;
            if notes.len() < 10 {
                notes.push(format!(
                    "closed by the server (code {:?}): {}",
                    info.code, info.reason
                ));
            }
        }
    }

    let server = match (args.common.server_pid, before, at_connected, after_hold) {
        (Some(pid), Some(b), Some(c), Some(h)) => Some(ServerFigures {
            pid,
            rss_before_kib: b.rss_kib,
            rss_connected_kib: c.rss_kib,
            rss_after_hold_kib: h.rss_kib,
            rss_kib_per_connection: per(c.rss_kib.saturating_sub(b.rss_kib), connected),
            rss_kib_per_connection_after_hold: per(h.rss_kib.saturating_sub(b.rss_kib), connected),
            cpu_us_during_hold: h.cpu_us - c.cpu_us,
        }),
        (Some(pid), ..) => bail!("lost track of server pid {pid} during the run (did it exit?)"),
        _ => None,
    };
    let pass = failed == 0 && closed_during_hold == 0;
    let summary = Summary {
        mode: "conns",
        pass,
        dialect: args.dialect,
        transport: args.transport,
        connections: args.connections,
        connected,
        failed,
        closed_during_hold,
        hold_s: args.hold,
        connect: Percentiles::of(&connect),
        subscribe: Percentiles::of(&subscribe),
        open_all_s: open_all.as_secs_f64(),
        server,
        loadtest_rss_kib_per_connection: self_before
            .zip(self_connected)
            .and_then(|(b, c)| per(c.rss_kib.saturating_sub(b.rss_kib), connected)),
        notes,
    };
    report::emit(json_only, &human(&summary), &summary);
    Ok(pass)
}

/// One idle connection: open, wait for `subscribed`, then read (answering pings) until told
/// to stop. Returns how the server closed it, if it did.
async fn hold_one(
    index: usize,
    connector: Connector,
    permits: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Ready>,
    mut stop: watch::Receiver<bool>,
) -> Option<CloseInfo> {
    let permit = permits.acquire_owned().await.ok()?;
    let started = Instant::now();
    let channel = format!("idle-{}", index % IDLE_CHANNELS);
    let opened = async {
        let (mut conn, connect) = connector.open(index, &[&channel], None).await?;
        conn.await_subscribed(&channel).await?;
        anyhow::Ok((conn, connect))
    };
    let (mut conn, connect) = match opened.await {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Ready::Failed(format!("connection {index}: {e:#}")));
            return None;
        }
    };
    drop(permit);
    let _ = ready.send(Ready::Subscribed {
        connect,
        subscribe: started.elapsed(),
    });
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            incoming = conn.next() => match incoming {
                Ok(Incoming::Message(..)) => {}
                Ok(Incoming::Closed(info)) => return Some(info),
                Err(e) => return Some(CloseInfo { code: None, reason: format!("{e:#}") }),
            },
        }
    }
    conn.close().await;
    None
}

fn human(s: &Summary) -> Vec<String> {
    let mut lines = vec![
        format!(
            "conns: {} of {} idle {} connections ({:?}) subscribed in {:.2}s ({} failed)",
            s.connected, s.connections, s.transport, s.dialect, s.open_all_s, s.failed
        ),
        format!("connect (tcp+upgrade) {}", s.connect.human()),
        format!("until subscribed      {}", s.subscribe.human()),
    ];
    if let Some(sv) = &s.server {
        lines.push(format!(
            "server rss            before {} KiB, connected {} KiB, after {}s hold {} KiB",
            sv.rss_before_kib, sv.rss_connected_kib, s.hold_s, sv.rss_after_hold_kib
        ));
        lines.push(format!(
            "server rss/conn       {} KiB ({} KiB after hold)",
            show(sv.rss_kib_per_connection),
            show(sv.rss_kib_per_connection_after_hold)
        ));
        lines.push(format!(
            "server cpu in hold    {} µs",
            sv.cpu_us_during_hold
        ));
    }
    lines.push(format!(
        "loadtest rss/conn     {} KiB",
        show(s.loadtest_rss_kib_per_connection)
    ));
    lines.push(format!("closed during hold    {}", s.closed_during_hold));
    for note in &s.notes {
        lines.push(format!("  {note}"));
    }
    lines.push(format!(
        "result                {}",
        if s.pass { "PASS" } else { "FAIL" }
    ));
    lines
}
