//! The pooled HTTP client every adapter shares: connect time-out, whole-request time-out,
//! bounded response bodies, no redirects, TLS from the side's one rustls configuration
//! ([`super::tls`], kept here so realtime sockets use the same), and the mapping of transport
//! failures to [`VendorError`] (connect failures are "not delivered", time-outs are "unknown
//! outcome", TLS failures are configuration errors).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::HeaderMap;

use super::tls::{self, CaBundle, TlsProblem};
use super::{BuildError, VendorError};

/// HTTP settings for vendor requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time allowed to open a TCP (and TLS) connection. Default 500 ms.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, answer body included. Default 2 s.
    pub request_timeout: Duration,
    /// Idle pooled connections are closed after this. Default 60 s.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept per host. Default 32.
    pub pool_max_idle_per_host: usize,
    /// Answer bodies are read up to this many bytes (the rest is ignored). Default 64 KiB.
    pub max_response_bytes: usize,
    /// CA certificates trusted besides the platform's (`vendors.ca_file`). Default none.
    pub ca: Option<CaBundle>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_host: 32,
            max_response_bytes: 64 * 1024,
            ca: None,
        }
    }
}

/// A vendor's answer: status, headers and the (bounded) body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The shared, pooled client. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    /// The TLS configuration `client` was built with; realtime sockets use it too.
    tls: Arc<rustls::ClientConfig>,
    request_timeout: Duration,
    max_response_bytes: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    pub fn new(config: &HttpConfig) -> Result<Self, BuildError> {
        let tls = tls::client_config(config.ca.as_ref())?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("understudy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::HttpClient(e.to_string()))?;
        Ok(HttpClient {
            client,
            tls,
            request_timeout: config.request_timeout,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// The TLS client configuration, for the vendor's realtime sockets.
    pub fn tls(&self) -> &Arc<rustls::ClientConfig> {
        &self.tls
    }

    /// The configured whole-request time-out.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub(crate) fn post(&self, url: url::Url) -> reqwest::RequestBuilder {
        self.client.post(url)
    }

    /// Sends the request and reads the answer, all within the request time-out (enforced here
    /// with `tokio::time` as well, so a paused clock governs it in tests).
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, VendorError> {
        let after = self.request_timeout;
        let exchange = async {
            let response = request.send().await.map_err(|e| map_error(e, after))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = read_bounded(response, self.max_response_bytes)
                .await
                .map_err(|e| map_error(e, after))?;
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(after, exchange).await {
            Ok(result) => result,
            Err(_) => Err(VendorError::Timeout { after }),
        }
    }
}

async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, reqwest::Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body.freeze())
}

/// Maps a reqwest failure. The URL is stripped: it can carry signatures.
pub(crate) fn map_error(error: reqwest::Error, request_timeout: Duration) -> VendorError {
    let error = error.without_url();
    if let Some(problem) = TlsProblem::of(&error) {
        VendorError::Tls {
            problem,
            detail: error_chain(&error),
        }
    } else if error.is_builder() {
        VendorError::Internal(error_chain(&error))
    } else if error.is_connect() {
        VendorError::Connect(error_chain(&error))
    } else if error.is_timeout() {
        VendorError::Timeout {
            after: request_timeout,
        }
    } else {
        VendorError::Transport(error_chain(&error))
    }
}

/// The error and its sources on one line (reqwest's own message is terse).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
