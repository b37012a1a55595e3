//! The operator commands of the binary: thin clients of the admin API, so the CLI and the API can
//! never disagree about what a mode change means.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Where the admin API is and who is calling.
#[derive(Args)]
pub(crate) struct AdminTarget {
    /// Admin listener address (IP:PORT or URL).
    #[arg(
        long,
        env = "UNDERSTUDY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    admin: String,
    /// Admin token; its name is recorded with every change.
    #[arg(long, env = "UNDERSTUDY_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Subcommand)]
pub(crate) enum ModeCommand {
    /// Force a path: vendor, self or poll. It falls back to auto after --for. With --tenant,
    /// for that tenant alone (auto too), falling back to the node-wide mode.
    Set {
        mode: String,
        #[arg(long)]
        reason: String,
        /// How long the forced mode lasts, e.g. 90s, 30m, 2h, 1d.
        #[arg(long = "for")]
        duration: String,
        /// A tenant's id: its mode alone; the others keep the node-wide mode.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Return to automatic failover. With --tenant, lift that tenant's own mode: it follows the
    /// node-wide mode again.
    Auto {
        #[arg(long, default_value = "back to automatic failover")]
        reason: String,
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        target: AdminTarget,
    },
}

impl AdminTarget {
    fn url(&self, path: &str) -> String {
        let base = if self.admin.starts_with("http") {
            self.admin.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", self.admin)
        };
        format!("{base}{path}")
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        let mut req = client
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("calling {}", self.url(path)))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let mut message = v["error"]["message"]
                .as_str()
                .unwrap_or("no error message")
                .to_string();
            for problem in v["error"]["errors"].as_array().into_iter().flatten() {
                message.push_str("\n  - ");
                message.push_str(problem.as_str().unwrap_or("?"));
            }
            bail!("{status}: {message}");
        }
        Ok(v)
    }
}

pub(crate) async fn mode(cmd: ModeCommand) -> anyhow::Result<()> {
    let (target, body) = match cmd {
        ModeCommand::Set {
            mode,
            reason,
            duration,
            tenant: Some(tenant),
            target,
        } => (
            target,
            json!({"tenant": tenant, "mode": mode, "reason": reason, "expires_in": duration}),
        ),
        ModeCommand::Set {
            mode,
            reason,
            duration,
            tenant: None,
            target,
        } => (
            target,
            json!({"mode": mode, "reason": reason, "expires_in": duration}),
        ),
        ModeCommand::Auto {
            reason,
            tenant: Some(tenant),
            target,
        } => (
            target,
            json!({"tenant": tenant, "mode": "inherit", "reason": reason}),
        ),
        ModeCommand::Auto {
            reason,
            tenant: None,
            target,
        } => (target, json!({"mode": "auto", "reason": reason})),
    };
    let v = target
        .call(reqwest::Method::PUT, "/admin/mode", Some(body))
        .await?;
    if let Some(tenant) = v["tenant"].as_str() {
        println!(
            "tenant {tenant}: mode {}, route now {}: {}",
            v["mode"]["mode"].as_str().unwrap_or("node-wide"),
            v["route"]["route"].as_str().unwrap_or("?"),
            v["route"]["reason"].as_str().unwrap_or("")
        );
        return Ok(());
    }
    println!(
        "mode {} (by {}), route now {}: {}",
        v["mode"]["mode"].as_str().unwrap_or("?"),
        v["mode"]["set_by"].as_str().unwrap_or("?"),
        v["route"]["route"].as_str().unwrap_or("?"),
        v["route"]["reason"].as_str().unwrap_or("")
    );
    Ok(())
}

pub(crate) async fn reload(target: AdminTarget) -> anyhow::Result<()> {
    let v = target
        .call(reqwest::Method::POST, "/admin/reload", None)
        .await?;
    let list = |key: &str| {
        let items: Vec<&str> = (v[key].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    println!("reloaded; changed: {}", list("changed"));
    if v["vendors_rebuilt"] == true {
        println!(
            "vendor side rebuilt ({} queued vendor events dropped)",
            v["vendor_queue_dropped"]
        );
    }
    if v["restart_required"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        println!(
            "changed but applied only after a restart: {}",
            list("restart_required")
        );
    }
    Ok(())
}

pub(crate) async fn status(target: AdminTarget, json_out: bool) -> anyhow::Result<()> {
    let v = target
        .call(reqwest::Method::GET, "/admin/status", None)
        .await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "route   {} ({})",
        v["route"]["route"].as_str().unwrap_or("?"),
        v["route"]["reason"].as_str().unwrap_or("")
    );
    println!(
        "mode    {} set by {}: {}",
        v["mode"]["mode"].as_str().unwrap_or("?"),
        v["mode"]["set_by"].as_str().unwrap_or("?"),
        v["mode"]["reason"].as_str().unwrap_or("")
    );
    for vendor in v["vendors"].as_array().into_iter().flatten() {
        println!(
            "vendor  {} ({}): {}  p99 {} ms",
            vendor["name"].as_str().unwrap_or("?"),
            vendor["kind"].as_str().unwrap_or("?"),
            vendor["state"].as_str().unwrap_or("?"),
            vendor["window"]["p99_ms"]
                .as_u64()
                .map_or("-".into(), |n| n.to_string())
        );
    }
    println!(
        "channels {}  history events {}",
        v["channels"], v["history_events"]
    );
    Ok(())
}

pub(crate) async fn audit_tail(target: AdminTarget, limit: u32) -> anyhow::Result<()> {
    let v = target
        .call(
            reqwest::Method::GET,
            &format!("/admin/audit?limit={limit}"),
            None,
        )
        .await?;
    for e in v["entries"].as_array().into_iter().flatten() {
        println!(
            "{}  {:<22} {:<10} {}  {}",
            e["ts"],
            e["action"].as_str().unwrap_or("?"),
            e["actor"].as_str().unwrap_or("?"),
            e["details"],
            e["reason"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

#[derive(Subcommand)]
pub(crate) enum MaintenanceCommand {
    /// Schedule a window: the mode holds from --start to --end (RFC 3339 times).
    Schedule {
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        #[arg(long, default_value = "self")]
        mode: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// List scheduled and running windows.
    List {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Cancel a window (a running one hands control back to auto).
    Cancel {
        id: u64,
        #[command(flatten)]
        target: AdminTarget,
    },
}

pub(crate) async fn maintenance(cmd: MaintenanceCommand) -> anyhow::Result<()> {
    let print = |w: &Value| {
        println!(
            "#{}  {} -> {}  mode {}  by {}: {}{}",
            w["id"],
            w["start"],
            w["end"],
            w["mode"].as_str().unwrap_or("?"),
            w["set_by"].as_str().unwrap_or("?"),
            w["reason"].as_str().unwrap_or(""),
            if w["started"] == true {
                "  (in progress)"
            } else {
                ""
            }
        )
    };
    match cmd {
        MaintenanceCommand::Schedule {
            start,
            end,
            mode,
            reason,
            target,
        } => {
            let body = json!({"start": start, "end": end, "mode": mode, "reason": reason});
            let v = target
                .call(reqwest::Method::PUT, "/admin/maintenance", Some(body))
                .await?;
            print(&v["window"]);
        }
        MaintenanceCommand::List { target } => {
            let v = target
                .call(reqwest::Method::GET, "/admin/maintenance", None)
                .await?;
            v["windows"]
                .as_array()
                .into_iter()
                .flatten()
                .for_each(print);
        }
        MaintenanceCommand::Cancel { id, target } => {
            let path = format!("/admin/maintenance/{id}");
            let v = target.call(reqwest::Method::DELETE, &path, None).await?;
            print(&v["cancelled"]);
        }
    }
    Ok(())
}
