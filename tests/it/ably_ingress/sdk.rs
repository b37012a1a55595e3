//! The official Ably SDKs, unmodified, publishing through understudy's Ably REST ingress: npm
//! `ably` 2 (tests/node/ably_rest.mjs) and PyPI `ably` 3.1.4 (tests/py/ably_rest.py), with the
//! key (Basic) and with token auth (`useTokenAuth`: a signed TokenRequest exchanged at
//! `/keys/{keyName}/requestToken`, then Bearer), in msgpack (their default) and JSON. Each run's
//! events must arrive on understudy's WebSocket, SSE and poll in order, each exactly once
//! (the same ids published twice give one event each); a wrong secret, an expired token and a
//! token without publish capability are refused with Ably's codes.
//!
//! The SDKs come from `npm ci` (node_modules) and `.venv-test` (`$UNDERSTUDY_PYTHON`), which
//! scripts/test installs; a missing one fails the test with the command, it never skips.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::{ably_jwt, apps_toml, history, now_s, APP_KEY, APP_SECRET};
use crate::support::tls::{ca_file, TlsTerminator};
use crate::support::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn node() -> tokio::process::Command {
    let script = root().join("tests/node/ably_rest.mjs");
    assert!(
        root().join("node_modules/ably").is_dir(),
        "node_modules/ably is missing: run `npm ci` in {}",
        root().display()
    );
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script);
    cmd
}

fn python() -> tokio::process::Command {
    let python = std::env::var_os("UNDERSTUDY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-test/bin/python"));
    assert!(
        python.is_file(),
        "{} is missing: python3 -m venv .venv-test && .venv-test/bin/pip install -r tests/py/requirements.txt",
        python.display()
    );
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(root().join("tests/py/ably_rest.py"));
    cmd
}

/// Runs an SDK script to its end (bounded) and answers its JSON lines by step.
async fn run(mut cmd: tokio::process::Command, env: &[(&str, String)]) -> Vec<Value> {
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the SDK script ends within 60 s")
        .expect("the SDK script starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK script failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn port_of(s: &Server) -> u16 {
    s.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// The settings of one run publishing on `channel`.
fn settings(port: u16, auth: &str, binary: bool, channel: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ABLY_PORT", port.to_string()),
        ("ABLY_KEY", format!("{APP_KEY}:{APP_SECRET}")),
        ("ABLY_AUTH", auth.to_owned()),
        ("ABLY_BINARY", if binary { "1" } else { "0" }.to_owned()),
        ("ABLY_CHANNEL", channel.to_owned()),
    ]
}

/// Runs the publish steps with `cmd` on a fresh channel and checks what the SDK was answered
/// and what arrived on the WebSocket, SSE and poll.
async fn publish_and_check(
    s: &Server,
    what: &str,
    cmd: tokio::process::Command,
    env: Vec<(&str, String)>,
) {
    let channel = env
        .iter()
        .find(|(k, _)| *k == "ABLY_CHANNEL")
        .unwrap()
        .1
        .clone();
    let token = env.iter().any(|(k, v)| *k == "ABLY_AUTH" && v == "token");
    let mut ws = ws_connect(&s.ws_url(&format!("?channel={channel}"))).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    let mut sse = Sse::open(s, &format!("?channel={channel}"), None).await;
    sse.expect("subscribed").await;

    let steps = run(cmd, &env).await;
    let by_step = |name: &str| -> Value {
        let step = steps.iter().find(|v| v["step"] == name);
        step.unwrap_or_else(|| panic!("{what}: no step {name} in {steps:?}"))
            .clone()
    };
    for name in ["single", "array", "ids", "ids again", "binary"] {
        assert_eq!(by_step(name)["ok"], true, "{what}: {name}: {steps:?}");
    }
    let serials = |name: &str| by_step(name)["serials"].as_array().unwrap().len();
    assert_eq!(
        [
            serials("single"),
            serials("array"),
            serials("ids"),
            serials("binary")
        ],
        [1, 2, 2, 1],
        "{what}"
    );
    assert_eq!(
        by_step("ids")["serials"],
        by_step("ids again")["serials"],
        "{what}: the retry names the same events"
    );
    if token {
        assert_eq!(
            (
                by_step("token")["jwt"].clone(),
                by_step("token")["ttl"].clone()
            ),
            (json!(true), json!(3_600_000)),
            "{what}"
        );
    }

    let mut via_ws = Vec::new();
    let mut via_sse = Vec::new();
    for _ in 0..6 {
        via_ws.push(ws_expect(&mut ws, "event").await);
        via_sse.push(sse.expect("event").await);
    }
    let polled = history(s, &channel).await;
    assert_eq!(via_ws, via_sse, "{what}");
    assert_eq!(
        via_ws, polled,
        "{what}: the duplicate ids published nothing more"
    );
    let got: Vec<_> = polled
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["name"].as_str().unwrap(),
                e["data"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "n1", json!("d1")),
            (2, "n2", json!({"a": 1})),
            (3, "n3", json!("d3")),
            (4, "n4", json!("d4")),
            (5, "n5", json!("d5")),
            (6, "n6", json!("AAEC")),
        ],
        "{what}"
    );
    let ids: Vec<&str> = polled.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids[3..5], ["fixed:0", "fixed:1"], "{what}");
    // The SDK's own idempotent ids: one base per publish, `<base>:<index>`.
    assert!(
        ids[0].ends_with(":0") && ids[1].ends_with(":0") && ids[2].ends_with(":1"),
        "{what}: {ids:?}"
    );
    assert_eq!(
        ids[1].split(':').next(),
        ids[2].split(':').next(),
        "{what}: {ids:?}"
    );
}

#[tokio::test]
async fn ably_js_publishes_with_key_and_token_in_msgpack_and_json() {
    let s = Server::with(&apps_toml()).await;
    let port = port_of(&s);
    for (auth, binary) in [
        ("basic", true),
        ("token", true),
        ("basic", false),
        ("token", false),
    ] {
        let what = format!("ably-js {auth} binary={binary}");
        let channel = format!("js-{auth}-{binary}");
        publish_and_check(&s, &what, node(), settings(port, auth, binary, &channel)).await;
    }
}

#[tokio::test]
async fn ably_python_publishes_with_token_over_http_and_key_over_tls() {
    let s = Server::with(&apps_toml()).await;
    let port = port_of(&s);
    for binary in [true, false] {
        let what = format!("ably-python token binary={binary}");
        let channel = format!("py-token-{binary}");
        publish_and_check(
            &s,
            &what,
            python(),
            settings(port, "token", binary, &channel),
        )
        .await;
    }
    // ably-python refuses Basic auth over plain HTTP (40103), as Ably does: understudy behind a
    // TLS terminator, as in production.
    let tls = TlsTerminator::start(port).await;
    let mut env = settings(tls.port, "basic", true, "py-basic-tls");
    env.push(("ABLY_TLS", "1".into()));
    env.push(("SSL_CERT_FILE", ca_file().display().to_string()));
    publish_and_check(&s, "ably-python basic over TLS", python(), env).await;
}

#[tokio::test]
async fn the_sdks_are_refused_a_wrong_secret_an_expired_token_and_a_token_without_publish() {
    let s = Server::with(&apps_toml()).await;
    let port = port_of(&s);
    let now = now_s();
    let tokens = json!({
        "expired": ably_jwt(APP_KEY, APP_SECRET, r#"{"*":["*"]}"#, now - 7200, now - 3600),
        "subscribe only": ably_jwt(APP_KEY, APP_SECRET, r#"{"*":["subscribe"]}"#, now, now + 600),
    });
    let tls = TlsTerminator::start(port).await;
    // Both SDKs, answered a token error (40140 to 40149) for their expired token, try to renew
    // it (RSA4b) and, given no key or callback to renew with, report 403 40171: an answer outside
    // that range would have been reported as it came. each_refusal_answers_ablys_code_and_
    // publishes_nothing checks the 401 40142 itself.
    for (what, cmd, port, tls_on) in [
        ("ably-js", node(), port, false),
        ("ably-python", python(), tls.port, true),
    ] {
        let mut env = settings(port, "basic", true, "refused");
        env.retain(|(k, _)| *k != "ABLY_KEY");
        env.push(("ABLY_KEY", format!("{APP_KEY}:wrongWrongWrongWrong")));
        env.push(("ABLY_MODE", "refusals".into()));
        env.push(("ABLY_TOKENS", tokens.to_string()));
        if tls_on {
            env.push(("ABLY_TLS", "1".into()));
            env.push(("SSL_CERT_FILE", ca_file().display().to_string()));
        }
        let steps = run(cmd, &env).await;
        let codes: Vec<_> = steps
            .iter()
            .map(|v| {
                (
                    v["step"].clone(),
                    v["error"]["statusCode"].clone(),
                    v["error"]["code"].clone(),
                )
            })
            .collect();
        assert_eq!(
            codes,
            [
                (json!("key"), json!(401), json!(40101)),
                (json!("expired"), json!(403), json!(40171)),
                (json!("subscribe only"), json!(403), json!(40160)),
            ],
            "{what}: {steps:?}"
        );
    }
    assert!(history(&s, "refused").await.is_empty());
    assert_eq!(
        s.publish_seq("refused", 1).await,
        1,
        "the server still serves"
    );
}
