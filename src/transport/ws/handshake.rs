//! The WebSocket opening handshake (RFC 6455 section 4.2), done here rather than by axum's
//! `WebSocketUpgrade` so that the session gets the connection's own `TcpStream` back: event frames
//! are written to it directly (see `frames`), which axum's wrapper does not allow.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::transport::admission::Permit;
use crate::transport::deadline::Guarded;
use crate::transport::shared_tcp::SharedTcp;
use crate::transport::wake::GatedRead;
use crate::transport::ApiError;

/// A request that asked for a WebSocket, ready to be answered with `101 Switching Protocols`.
pub(crate) struct Handshake {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let refuse = |what: &str| ApiError::NotWebSocket(what.to_string());
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(refuse("the Connection header does not ask for an upgrade"));
        }
        if !header_is(&parts.headers, header::UPGRADE, "websocket") {
            return Err(refuse("the Upgrade header is not \"websocket\""));
        }
        if !header_is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(refuse("Sec-WebSocket-Version is not 13"));
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or_else(|| refuse("Sec-WebSocket-Key is missing"))?;
        if !valid_key(key.as_bytes()) {
            return Err(refuse(
                "Sec-WebSocket-Key is not 16 bytes in base64 (RFC 6455 section 4.1)",
            ));
        }
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| refuse("this connection cannot be upgraded"))?;
        Ok(Self { key, on_upgrade })
    }
}

impl Handshake {
    /// Answers `101` and runs `session` on the upgraded connection once hyper hands it over.
    ///
    /// The session runs in a task of its own: awaited inside the upgrade's task, its future would
    /// sit beside what the upgrade captured (`session` itself among them) for as long as the
    /// connection stays open.
    pub(crate) fn accept<F, Fut>(self, config: WebSocketConfig, session: F) -> Response
    where
        F: FnOnce(super::Socket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let Some((stream, permit, read)) = into_tcp(upgraded) else {
                tracing::error!("a WebSocket upgrade did not come from a TCP listener");
                return;
            };
            let stream = SharedTcp::new(stream);
            let ws = WebSocketStream::from_partially_read(stream, read, Role::Server, Some(config))
                .await;
            // The permit holds the connection's place on the listener while the session runs.
            tokio::spawn(session(ws).map(move |()| drop(permit)));
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (
                    header::SEC_WEBSOCKET_ACCEPT,
                    HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
                ),
            ],
        )
            .into_response()
    }
}

/// The TCP stream under an upgrade, its listener permit, and any bytes hyper read past the
/// request. The session sets its own write deadlines, so the socket leaves its guard.
fn into_tcp(upgraded: Upgraded) -> Option<(TcpStream, Permit, Vec<u8>)> {
    let parts = upgraded
        .downcast::<TokioIo<Guarded<GatedRead<TcpStream>>>>()
        .ok()?;
    let (gated, permit) = parts.io.into_inner().into_parts();
    let (tcp, unread) = gated.into_parts();
    let mut read = parts.read_buf.to_vec();
    read.extend_from_slice(&unread);
    Some((tcp, permit, read))
}

/// A key is a random 16-byte value in base64: 24 characters ending in `==`.
fn valid_key(key: &[u8]) -> bool {
    use base64::Engine;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|k| k.len() == 16)
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_16_byte_base64_key_is_valid() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            &b""[..],
            b"x",
            b"not base64 at all!!!!!!!",
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZQ==x",
        ] {
            assert!(!valid_key(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn connection_tokens_are_matched_whole_and_without_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(header_has_token(&h, header::CONNECTION, "upgrade"));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgraded"));
        assert!(!header_has_token(&h, header::CONNECTION, "upgrade"));
    }
}
