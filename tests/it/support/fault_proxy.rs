//! A small fault-injecting HTTP proxy on 127.0.0.1:0, speaking real HTTP (axum): it forwards
//! requests to an upstream (sockudo's plain port) or, on demand, answers with an error status,
//! hangs, answers slowly, or accepts without forwarding (REST accepted, never delivered).
//! understudy reaches it over TLS, through a [`TlsTerminator`] in front of it (`tls_port`), as
//! it reaches a vendor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use super::tls::TlsTerminator;

/// What the proxy does with the next requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Forward to the upstream.
    Pass,
    /// Answer this status and body without forwarding.
    Status(u16, &'static str),
    /// Never answer.
    Hang,
    /// Never answer requests whose body contains this text; forward the others.
    HangIfBodyContains(&'static str),
    /// Wait, then forward.
    Slow(Duration),
    /// Answer like a vendor that took the event (status, body), but forward nothing.
    Accept(u16, &'static str),
}

struct Shared {
    upstream: String,
    fault: Mutex<Fault>,
    client: reqwest::Client,
    requests: AtomicUsize,
}

/// A running proxy; it stops with the test's runtime.
pub(crate) struct FaultProxy {
    /// TLS in front of the proxy's plain port: what vendor URLs name.
    pub(crate) tls: TlsTerminator,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `http://127.0.0.1:{upstream_port}`.
    pub(crate) async fn start(upstream_port: u16) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream: format!("http://127.0.0.1:{upstream_port}"),
            fault: Mutex::new(Fault::Pass),
            client: reqwest::Client::new(),
            requests: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultProxy {
            tls: TlsTerminator::start(port).await,
            shared,
        }
    }

    pub(crate) fn set(&self, fault: Fault) {
        *self.shared.fault.lock() = fault;
    }

    /// Requests received so far.
    pub(crate) fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let fault = shared.fault.lock().clone();
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    match fault {
        Fault::Pass => {}
        Fault::Status(status, text) | Fault::Accept(status, text) => {
            return (StatusCode::from_u16(status).expect("status"), text).into_response();
        }
        Fault::Hang => std::future::pending::<()>().await,
        Fault::HangIfBodyContains(needle) => {
            if String::from_utf8_lossy(&body).contains(needle) {
                std::future::pending::<()>().await;
            }
        }
        Fault::Slow(delay) => tokio::time::sleep(delay).await,
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut upstream = shared
        .client
        .request(parts.method.clone(), format!("{}{path}", shared.upstream));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    match upstream.body(body).send().await {
        Ok(answer) => {
            let status = answer.status();
            let mut headers = HeaderMap::new();
            if let Some(ct) = answer.headers().get("content-type") {
                headers.insert("content-type", ct.clone());
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            (status, headers, Body::from(bytes)).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
