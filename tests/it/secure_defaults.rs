//! Secure by default: the shipped development credentials never face the network, and an
//! operator's admin token replaces the shipped one.

use std::process::Command;

use crate::support::{scratch_dir, spawn_serving, PATIENCE};

const BIN: &str = env!("CARGO_BIN_EXE_understudy");
const KEY: &str = "secure-publisher-key-0123456789";
const SECRET: &str = "secure-subscriber-secret-0123456789";
const ADMIN: &str = "secure-admin-token-0123456789";

/// `understudy serve` with only `env` from the UNDERSTUDY_ variables.
fn serve(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve");
    for (k, _) in std::env::vars() {
        if k.starts_with("UNDERSTUDY_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("UNDERSTUDY_AUDIT_DIR", scratch_dir("secure-audit"));
    cmd.envs(env.iter().copied());
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn development_credentials_on_an_exposed_address_are_refused_naming_what_to_set() {
    let mut cmd = tokio::process::Command::from(serve(&[
        ("UNDERSTUDY_LISTEN", "0.0.0.0:0"),
        ("UNDERSTUDY_ADMIN_LISTEN", "127.0.0.1:0"),
    ]));
    cmd.kill_on_drop(true);
    // A server that started anyway would run until killed: give it the time a refusal takes.
    let out = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .expect("the server started with development credentials on 0.0.0.0")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("protected mode"), "{err}");
    assert!(err.contains("0.0.0.0:0"), "{err}");
    for var in [
        "UNDERSTUDY_PUBLISHER_KEYS",
        "UNDERSTUDY_SUBSCRIBER_SECRET",
        "UNDERSTUDY_ADMIN_TOKEN",
    ] {
        assert!(err.contains(var), "{var} not named: {err}");
    }
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "nothing was bound, so no listening banner"
    );
}

#[tokio::test]
async fn credentials_of_its_own_start_it_exposed_and_retire_the_development_admin_token() {
    let admin_port = free_port();
    let admin_listen = format!("0.0.0.0:{admin_port}");
    let cmd = serve(&[
        ("UNDERSTUDY_LISTEN", "0.0.0.0:0"),
        ("UNDERSTUDY_ADMIN_LISTEN", &admin_listen),
        ("UNDERSTUDY_PUBLISHER_KEYS", KEY),
        ("UNDERSTUDY_SUBSCRIBER_SECRET", SECRET),
        ("UNDERSTUDY_ADMIN_TOKEN", ADMIN),
    ]);
    let (mut child, base) = tokio::task::spawn_blocking(move || spawn_serving(cmd))
        .await
        .unwrap();
    let base = base.replace("0.0.0.0", "127.0.0.1");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let http = reqwest::Client::new();
    let status = |token: &'static str| {
        let req = http.get(format!("{admin}/admin/status")).bearer_auth(token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(understudy::config::DEV_ADMIN_TOKEN).await, 401);
    assert_eq!(status(ADMIN).await, 200);
    let published = http
        .post(format!("{base}/v1/publish"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"channel": "c", "name": "n", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status().as_u16(), 202);
    let dev_key = http
        .post(format!("{base}/v1/publish"))
        .bearer_auth(understudy::config::DEV_PUBLISHER_KEY)
        .json(&serde_json::json!({"channel": "c", "name": "n", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(dev_key.status().as_u16(), 401);
    child.kill().ok();
    child.wait().ok();
}

#[test]
fn gen_secret_prints_fresh_environment_lines() {
    let run = || {
        let out = Command::new(BIN).arg("gen-secret").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let (a, b) = (run(), run());
    assert_ne!(a, b, "fresh each time");
    for var in [
        "UNDERSTUDY_PUBLISHER_KEYS=",
        "UNDERSTUDY_SUBSCRIBER_SECRET=",
        "UNDERSTUDY_ADMIN_TOKEN=",
    ] {
        let line = a.lines().find(|l| l.starts_with(var)).expect(var);
        assert_eq!(line.len() - var.len(), 43, "{line}");
    }
    let raw = Command::new(BIN)
        .args(["gen-secret", "--raw"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(raw.stdout).unwrap().trim().len(), 43);
}
