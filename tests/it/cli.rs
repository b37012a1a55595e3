//! The binary's own commands: check-config lists every problem; healthcheck probes /healthz.

use std::process::Command;

use crate::support::Server;

const BIN: &str = env!("CARGO_BIN_EXE_understudy");

#[test]
fn check_config_accepts_the_shipped_file_and_lists_every_problem_of_a_bad_one() {
    let ok = Command::new(BIN)
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/understudy.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = std::env::temp_dir().join(format!("understudy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"nowhere\"\n[history]\nmax_events = 0\n[log]\nformat = \"xml\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["server.listen", "history.max_events", "log.format"] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn healthcheck_succeeds_against_a_live_server_and_fails_without_one() {
    let s = Server::start().await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let probe = |addr: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(["healthcheck", &addr])
                .status()
                .unwrap()
        })
    };
    assert!(probe(addr).await.unwrap().success());
    drop(s);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    assert!(!probe(closed).await.unwrap().success());
}

#[tokio::test]
async fn mode_and_status_commands_drive_the_admin_api() {
    let token = "cli-admin-token-0123456789";
    let s = Server::with(&format!(
        "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"oncall\", token = \"{token}\" }}]\n"
    ))
    .await;
    let admin = s.admin.clone();
    let run = move |args: Vec<&'static str>| {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(&args)
                .env("UNDERSTUDY_ADMIN_LISTEN", admin)
                .env("UNDERSTUDY_ADMIN_TOKEN", "cli-admin-token-0123456789")
                .output()
                .unwrap()
        })
    };
    let out = run(vec![
        "mode",
        "set",
        "self",
        "--reason",
        "vendor incident",
        "--for",
        "2h",
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mode self (by oncall), route now self"),
        "{text}"
    );
    assert_eq!(s.state.failover.route().mode.as_str(), "self");

    let out = run(vec!["status"]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("set by oncall: vendor incident"), "{text}");

    let out = run(vec!["mode", "set", "self", "--reason", "x", "--for", "9d"])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("7 days"));

    let out = run(vec!["mode", "auto"]).await.unwrap();
    assert!(out.status.success());

    let out = run(vec![
        "maintenance",
        "schedule",
        "--start",
        "2099-01-01T02:00:00Z",
        "--end",
        "2099-01-01T03:00:00Z",
        "--reason",
        "vendor upgrade",
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(vec!["maintenance", "list"]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("#1") && text.contains("mode self") && text.contains("vendor upgrade"),
        "{text}"
    );
    let out = run(vec!["maintenance", "cancel", "1"]).await.unwrap();
    assert!(out.status.success());
    assert!(s.state.maintenance.schedule.lock().list().is_empty());

    s.state.audit.flush().await.unwrap();
    let out = run(vec!["audit", "tail", "--limit", "5"]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mode_changed")
            && text.contains("oncall")
            && text.contains("vendor incident"),
        "{text}"
    );
    assert_eq!(s.state.failover.route().mode.as_str(), "auto");
}
