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
