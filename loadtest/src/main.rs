//! `understudy-loadtest`: load and delivery-correctness benchmarks against a loopback
//! understudy over real sockets. This file owns the CLI, the runtime and exit codes.
//!
//! Exit codes: 0 pass, 1 the run finished but failed its checks (loss, duplicates, reordering,
//! failed requests or connections), 2 the run could not be carried out.
//!
//! # Layout
//! - `target`: the loopback-only `--url` and endpoint URLs
//! - `client`: subscriber connections (`ws`, `sse`, `message` parsing)
//! - `publisher`: `POST /v1/publish` and the load tool's event body
//! - `fanout`: the fan-out benchmark (`subscriber` tasks, paced `pacer`, `peers` for the other
//!   processes of a multi-node run)
//! - `conns`: idle WebSocket connections and RSS per connection
//! - `publish`: publish throughput
//! - `failover`: the vendor hung mid-stream (SIGSTOP/SIGCONT), detection and recovery
//! - `floor`: the reference server that only writes each event once per subscriber
//! - `storm`: every subscriber drops and reconnects within a second; admission, publish
//!   latency and lossless resume
//! - `stats`: percentiles and the per-subscriber seq ledger
//! - `proc_stats`: CPU time and RSS from /proc; `nofile`: RLIMIT_NOFILE
//! - `report`: human lines plus a one-line JSON summary
//! - `tenants`: one tenant's flood against another's steady publishing (`loadtest/tenants.sh`)

mod client;
mod conns;
mod failover;
mod fanout;
mod floor;
mod nofile;
mod proc_stats;
mod publish;
mod publisher;
mod report;
mod stats;
mod storm;
mod target;
mod tenants;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "understudy-loadtest", version, about)]
struct Cli {
    /// Print only the final one-line JSON summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// S subscribers over C channels, publish R events/s for T s, check every delivery.
    Fanout(fanout::FanoutArgs),
    /// N idle WebSocket connections: connect times and server RSS per connection.
    Conns(conns::ConnsArgs),
    /// K concurrent publishers for T s: publishes/s, latency, server CPU per publish.
    Publish(publish::PublishArgs),
    /// Subscribers on the own broadcast while the vendor process is hung (SIGSTOP) and resumed:
    /// detection and recovery times, publish latency, loss, lane bounds and server RSS.
    Failover(failover::FailoverArgs),
    /// N WebSocket subscribers drop and reconnect within a window while publishing goes on:
    /// time until all are back, refusals, publish latency in the storm, loss.
    Storm(storm::StormArgs),
    /// The floor reference server (nchan's dialect, one thread, one write per subscriber per
    /// event): run it, then point the benchmarks at it with `--dialect nchan`.
    Floor(floor::FloorArgs),
    /// Tenant A floods past its quota while B publishes steadily: B's latency and loss (`tenants run`).
    Tenants(tenants::TenantsArgs),
}

/// Options every subcommand takes.
#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// Server base URL; only 127.0.0.1, localhost and [::1] are accepted.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's pid, to read its CPU time and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// The publisher key, for subcommands that publish.
#[derive(Debug, clap::Args)]
struct PublisherKey {
    /// Sent as `Authorization: Bearer <key>` on publishes.
    #[arg(
        long,
        env = "UNDERSTUDY_PUBLISHER_KEY",
        default_value = "dev-publisher-key-change-me",
        hide_env_values = true
    )]
    publisher_key: String,
}

/// Seconds as a float, bounded to an hour so every run ends.
fn parse_duration_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=3600.0).contains(&x) => Ok(x),
        _ => Err("seconds between 0 and 3600".to_owned()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    report::progress(cli.json, &nofile::raise());
    // The floor is single-threaded by definition: it runs before any runtime exists.
    if let Command::Floor(args) = cli.command {
        return match floor::run(args) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let json = cli.json;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Fanout(args) => fanout::run(args, json).await,
            Command::Conns(args) => conns::run(args, json).await,
            Command::Publish(args) => publish::run(args, json).await,
            Command::Failover(args) => failover::run(args, json).await,
            Command::Storm(args) => storm::run(args, json).await,
            Command::Floor(_) => unreachable!("the floor ran before the runtime was built"),
            Command::Tenants(args) => tenants::run(args, json).await,
        }
    });
    // Subscriber tasks may still be closing sockets; do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_a_fanout_command_line() {
        let cli = Cli::try_parse_from([
            "understudy-loadtest",
            "fanout",
            "--transport",
            "sse",
            "--subscribers",
            "1000",
            "--rate",
            "100",
            "--duration",
            "10",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Fanout(_)));
        assert!(Cli::try_parse_from(["x", "fanout", "--subscribers", "0"]).is_err());
        assert!(
            Cli::try_parse_from(["x", "fanout", "--subscribers", "1", "--duration", "9999"])
                .is_err()
        );
    }

    #[test]
    fn parses_a_two_node_fanout_command_line() {
        let cli = Cli::try_parse_from([
            "x",
            "fanout",
            "--subscribers",
            "1000",
            "--url",
            "http://127.0.0.1:18780",
            "--publish-url",
            "http://127.0.0.1:18680",
            "--server-pid",
            "11",
            "--peer-pid",
            "node-a=12",
            "--peer-pid",
            "redis=13",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Fanout(_)));
        assert!(
            Cli::try_parse_from(["x", "fanout", "--subscribers", "1", "--peer-pid", "12"]).is_err()
        );
    }

    #[test]
    fn parses_benchmarks_in_the_nchan_dialect_and_the_floor() {
        for args in [
            &["x", "fanout", "--subscribers", "10", "--dialect", "nchan"][..],
            &[
                "x",
                "conns",
                "--connections",
                "10",
                "--transport",
                "sse",
                "--dialect",
                "nchan",
            ],
            &["x", "publish", "--dialect", "nchan"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["x", "publish", "--dialect", "pusher"]).is_err());
        let cli = Cli::try_parse_from(["x", "floor", "--listen", "127.0.0.1:18580"]).unwrap();
        assert!(matches!(cli.command, Command::Floor(_)));
        assert!(Cli::try_parse_from(["x", "floor", "--lifetime", "9999"]).is_err());
    }

    #[test]
    fn parses_a_storm_command_line() {
        let cli =
            Cli::try_parse_from(["x", "storm", "--window", "1", "--deadline", "100"]).unwrap();
        let Command::Storm(_) = cli.command else {
            panic!("not a storm");
        };
        assert!(Cli::try_parse_from(["x", "storm", "--subscribers", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "storm", "--deadline", "9999"]).is_err());
    }

    #[test]
    fn parses_a_failover_command_line() {
        let cli = Cli::try_parse_from([
            "x",
            "failover",
            "--vendor-pid",
            "4242",
            "--subscribers",
            "500",
            "--rate",
            "100",
            "--duration",
            "30",
            "--hang-at",
            "10",
            "--resume-at",
            "20",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Failover(_)));
        assert!(
            Cli::try_parse_from(["x", "failover", "--subscribers", "5", "--duration", "3"])
                .is_err()
        );
    }
}
