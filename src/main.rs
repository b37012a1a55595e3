//! The `understudy` binary: parse the command line, load and validate configuration, start
//! telemetry, bind the listeners and run the app until a signal says stop.

mod admin_cli;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use understudy::config::ConfigSource;
use understudy::{App, Config, Listeners};

#[derive(Parser)]
#[command(name = "understudy", version, about = "Realtime push fallback proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Without --config, the embedded defaults (config/understudy.toml) are used.
    Serve {
        /// A TOML file whose keys override the embedded defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and list every problem; exits non-zero if there is one.
    CheckConfig { file: PathBuf },
    /// Change the operator mode through the admin API.
    Mode {
        #[command(subcommand)]
        command: admin_cli::ModeCommand,
    },
    /// Show mode, route and vendor health from the admin API.
    Status {
        #[command(flatten)]
        target: admin_cli::AdminTarget,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Schedule, list and cancel planned maintenance windows through the admin API.
    Maintenance {
        #[command(subcommand)]
        command: admin_cli::MaintenanceCommand,
    },
    /// Make the server read its configuration file and environment again (like SIGHUP) and
    /// print what changed, or every problem if the new configuration is refused.
    Reload {
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
    /// Read the audit trail through the admin API.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print fresh random secrets (publisher key, subscriber secret, admin token) as environment
    /// lines ready for a secrets store; with --raw, one secret alone.
    GenSecret {
        /// Print a single secret and nothing else.
        #[arg(long)]
        raw: bool,
    },
    /// Exit 0 if the server at ADDR answers GET /healthz with 200 (for container healthchecks).
    Healthcheck {
        #[arg(default_value = "127.0.0.1:8080")]
        addr: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The newest entries, oldest first.
    Tail {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Healthcheck { addr } => healthcheck(&addr),
        Command::GenSecret { raw } => {
            gen_secret(raw);
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Tail { limit, target },
        } => client_runtime()?.block_on(admin_cli::audit_tail(target, limit)),
        Command::Maintenance { command } => {
            client_runtime()?.block_on(admin_cli::maintenance(command))
        }
        Command::Mode { command } => client_runtime()?.block_on(admin_cli::mode(command)),
        Command::Reload { target } => client_runtime()?.block_on(admin_cli::reload(target)),
        Command::Status { target, json } => {
            client_runtime()?.block_on(admin_cli::status(target, json))
        }
        Command::Serve { config } => {
            let source = ConfigSource::new(config);
            let config = source.load()?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?
                .block_on(serve(config, source))
        }
    }
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    match ConfigSource::new(Some(file.to_path_buf())).load() {
        Ok(_) => {
            println!("{}: ok", file.display());
            Ok(())
        }
        Err(e) => {
            eprintln!("{}: {e:#}", file.display());
            std::process::exit(1);
        }
    }
}

/// 32 bytes from the operating system's generator, base64url: 43 characters, 256 bits.
fn gen_secret(raw: bool) {
    let fresh = understudy::config::fresh_secret;
    if raw {
        println!("{}", fresh());
        return;
    }
    println!("# Fresh secrets for one deployment: keep them in your secrets store, never in git.");
    println!("UNDERSTUDY_PUBLISHER_KEYS={}", fresh());
    println!("UNDERSTUDY_SUBSCRIBER_SECRET={}", fresh());
    println!("UNDERSTUDY_ADMIN_TOKEN={}", fresh());
}

/// A plain HTTP/1.1 GET over a std socket: the runtime image needs no curl.
fn healthcheck(addr: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let sock_addr = addr
        .parse()
        .with_context(|| format!("{addr} is not IP:PORT"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&sock_addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    if answer.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        anyhow::bail!(
            "unhealthy: {}",
            answer.lines().next().unwrap_or("no answer")
        )
    }
}

async fn serve(config: Config, source: ConfigSource) -> anyhow::Result<()> {
    understudy::telemetry::init(&config.log);
    let public = understudy::bind(config.server.listen)
        .with_context(|| format!("binding server.listen {}", config.server.listen))?;
    let admin = understudy::bind(config.server.admin_listen)
        .with_context(|| format!("binding server.admin_listen {}", config.server.admin_listen))?;
    let public_addr = public.local_addr()?;
    let admin_addr = admin.local_addr()?;
    tracing::info!(%public_addr, %admin_addr, "understudy listening");
    println!("understudy {} listening", env!("CARGO_PKG_VERSION"));
    println!("  public API  http://{public_addr}  (publish, /v1/ws, /v1/sse, /v1/channels/..)");
    println!("  admin API   http://{admin_addr}  (/metrics, /healthz, /readyz)");
    println!("  publish:    curl -H 'Authorization: Bearer <key>' -H 'Content-Type: application/json' \\");
    println!("                -d '{{\"channel\":\"demo\",\"name\":\"hello\",\"data\":{{\"n\":1}}}}' http://{public_addr}/v1/publish");
    let app = App::build(config, Listeners { public, admin })
        .context("starting the vendor side")?
        .with_source(source);
    tokio::spawn(understudy::app::reload::reload_on(
        app.state().clone(),
        hangups()?,
    ));
    app.run(shutdown_signal()).await?;
    Ok(())
}

/// One item per SIGHUP: the configuration is read again.
fn hangups() -> anyhow::Result<impl futures_util::Stream<Item = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    Ok(futures_util::stream::unfold(hup, |mut hup| async move {
        hup.recv().await.map(|()| ((), hup))
    }))
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
