//! TLS to the vendor, for real: sockudo behind a TLS terminator with a certificate from the
//! run's CA. Not trusting that CA, a certificate for another host, and `tls=true` on a plain
//! port are each a fatal configuration error told with its cause (REST, canary, and through
//! the whole server in `/admin/status`); the plain port still works with `tls=false`.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use understudy::failover::{canary, CanaryConfig, CanaryFailure, CanaryResult, Observation, Path};
use understudy::upstream::http::{HttpClient, HttpConfig};
use understudy::upstream::realtime::RealtimeConfig;
use understudy::upstream::tls::TlsProblem;
use understudy::upstream::{
    self, ErrorClass, OutboundEvent, Party, Priority, Vendor, VendorConfig, VendorError,
};

use crate::support::sockudo::Sockudo;
use crate::support::tls::TlsTerminator;
use crate::support::*;

const ADMIN: &str = "test-admin-token-0123456789";

fn vendor_with(url: &str, http: &HttpConfig) -> std::sync::Arc<dyn Vendor> {
    let http = HttpClient::new(http).expect("http client");
    let config = VendorConfig::from_url(url).expect("vendor url");
    upstream::build(&config, &http, &RealtimeConfig::default()).expect("adapter")
}

fn event() -> OutboundEvent {
    OutboundEvent::new(
        "room",
        "e",
        "tls-1",
        Bytes::from_static(br#"{"type":"event","id":"tls-1"}"#),
        Priority::Realtime,
    )
}

/// The first canary round's result for `vendor`.
async fn first_canary(vendor: std::sync::Arc<dyn Vendor>) -> CanaryResult {
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let config = CanaryConfig {
        jitter: 0.0,
        ..CanaryConfig::default()
    };
    tokio::spawn(async move { canary::run(0, vendor.as_ref(), &config, tx, stop).await });
    let result = match tokio::time::timeout(PATIENCE, rx.recv()).await {
        Ok(Some(Observation::Canary(c))) => c.result,
        other => panic!("expected a canary observation, got {other:?}"),
    };
    cancel.cancel();
    result
}

fn tls_problem(error: &VendorError) -> Option<TlsProblem> {
    match error {
        VendorError::Tls { problem, .. } => Some(*problem),
        _ => None,
    }
}

#[tokio::test]
async fn a_vendor_whose_ca_is_not_trusted_is_refused_with_the_cause() {
    let sockudo = Sockudo::start().await;
    let vendor = vendor_with(&sockudo.pusher_url(), &HttpConfig::default());
    let error = vendor.publish(&[event()]).await.expect_err("not trusted");
    assert_eq!(
        tls_problem(&error),
        Some(TlsProblem::UnknownIssuer),
        "{error}"
    );
    assert_eq!(
        (error.class(), error.party(), error.retry_allowed()),
        (ErrorClass::Tls, Party::Client, false)
    );
    let shown = error.to_string();
    assert!(
        shown.starts_with("TLS certificate not trusted (UnknownIssuer): set vendors.ca_file"),
        "{shown}"
    );
    assert!(!shown.contains(&sockudo.secret), "{shown}");
    assert_eq!(
        first_canary(vendor).await,
        CanaryResult::Lost {
            failure: CanaryFailure::Tls {
                problem: TlsProblem::UnknownIssuer
            }
        }
    );
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused_with_the_cause() {
    let sockudo = Sockudo::start().await;
    let elsewhere = TlsTerminator::start_for(sockudo.port, &["vendor.example"]).await;
    let url = sockudo.pusher_url().replace(
        &format!(":{}/", sockudo.tls.port),
        &format!(":{}/", elsewhere.port),
    );
    let vendor = vendor_with(&url, &crate::support::tls::http_config());
    let error = vendor.publish(&[event()]).await.expect_err("wrong host");
    assert_eq!(
        tls_problem(&error),
        Some(TlsProblem::NotValidForName),
        "{error}"
    );
    assert_eq!(
        first_canary(vendor).await,
        CanaryResult::Lost {
            failure: CanaryFailure::Tls {
                problem: TlsProblem::NotValidForName
            }
        }
    );
}

#[tokio::test]
async fn tls_on_a_plain_port_is_a_handshake_error_and_tls_false_works_there() {
    let sockudo = Sockudo::start().await;
    let plain = sockudo.plain_pusher_url();
    let tls_on_plain = plain.replace("?tls=false", "");
    let error = vendor_with(&tls_on_plain, &crate::support::tls::http_config())
        .publish(&[event()])
        .await
        .expect_err("no TLS there");
    assert_eq!(tls_problem(&error), Some(TlsProblem::Handshake), "{error}");
    vendor_with(&plain, &HttpConfig::default())
        .publish(&[event()])
        .await
        .expect("plain HTTP with tls=false");
}

async fn status(s: &Server) -> Value {
    let (code, v) = s
        .admin_call(reqwest::Method::GET, "/admin/status", Some(ADMIN), None)
        .await;
    assert_eq!(code, 200, "{v}");
    v
}

/// Through the whole server: without `vendors.ca_file` the vendor goes down at once and
/// `/admin/status` says why; with it, the same vendor is routed to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_shows_an_untrusted_vendor_down_with_its_cause_and_trusts_the_ca_file() {
    let sockudo = Sockudo::start().await;
    let config = |ca: &str| {
        format!(
            "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"ops\", token = \"{ADMIN}\" }}]\n[vendors]\nurls = [\"{}\"]\n{ca}",
            sockudo.pusher_url()
        )
    };
    let s = Server::with(&config("")).await;
    eventually_within(PATIENCE, "the untrusted vendor to be down", || {
        s.state.failover.route().path == Path::SelfHosted
    })
    .await;
    let v = status(&s).await;
    let vendor = &v["vendors"][0];
    assert_eq!(vendor["state"], "down", "{vendor}");
    let last = &vendor["last_error"];
    assert_eq!(
        (&last["kind"], &last["fatal"]),
        (&"tls".into(), &true.into()),
        "{last}"
    );
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .starts_with("TLS certificate not trusted (UnknownIssuer): set vendors.ca_file"),
        "{last}"
    );
    assert_eq!(
        vendor["transitions"][0]["to"], "down",
        "fatal at once: {vendor}"
    );
    drop(s);

    let s = Server::with(&config(&crate::support::tls::ca_file_toml())).await;
    let arrived = async {
        loop {
            let v = status(&s).await;
            if v["vendors"][0]["last_canary"]["result"]["outcome"] == "arrived" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let v = tokio::time::timeout(PATIENCE, arrived)
        .await
        .expect("a canary over TLS arrives");
    assert_eq!(v["vendors"][0]["state"], "healthy", "{v}");
    assert_eq!(s.state.failover.route().path, Path::Vendor(0));
}
