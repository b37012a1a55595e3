//! WebSocket subscriber: raw TCP (optionally from a chosen loopback source address), the
//! upgrade, then text frames handed out one at a time.

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::{CloseInfo, Incoming};

/// Client-side buffer sizes: small for thousands of idle connections, larger for fan-out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WsSettings {
    pub(crate) read_buffer_bytes: usize,
}

impl WsSettings {
    fn config(self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_bytes)
            .write_buffer_size(0)
            .max_message_size(Some(16 << 20))
    }
}

pub(crate) struct WsConnection {
    stream: WebSocketStream<TcpStream>,
    /// The last text frame, kept so [`Incoming::Message`] can borrow it.
    last: Utf8Bytes,
}

impl WsConnection {
    pub(crate) async fn open(
        addr: SocketAddr,
        url: &Url,
        source: Option<IpAddr>,
        settings: WsSettings,
    ) -> Result<Self> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("binding source {ip}"))?;
        }
        let tcp = socket
            .connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (stream, response) =
            tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(settings.config()))
                .await
                .map_err(describe_handshake_error)?;
        if response.status().as_u16() != 101 {
            bail!("WebSocket upgrade answered {}", response.status());
        }
        Ok(Self {
            stream,
            last: Utf8Bytes::from_static(""),
        })
    }

    pub(crate) async fn next(&mut self) -> Result<Incoming<'_>> {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    self.last = text;
                    return Ok(Incoming::Message(self.last.as_bytes(), None));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Incoming::Closed(CloseInfo {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map_or_else(
                            || "close without a frame".into(),
                            |f| f.reason.to_string(),
                        ),
                    }));
                }
                Some(Ok(Message::Binary(_))) => {
                    bail!("server sent a binary frame; the protocol is JSON text")
                }
                // Pongs to the server's pings are queued by tungstenite and flushed on the next read.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => {
                    return Ok(Incoming::Closed(CloseInfo {
                        code: None,
                        reason: format!("read error: {e}"),
                    }))
                }
                None => {
                    return Ok(Incoming::Closed(CloseInfo {
                        code: None,
                        reason: "EOF without close frame".into(),
                    }))
                }
            }
        }
    }

    /// Sends one text frame (a client message such as `subscribe`).
    pub(crate) async fn send_text(&mut self, text: String) -> Result<()> {
        self.stream.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Sends a close frame and waits briefly for the server's.
    pub(crate) async fn close(mut self) {
        let bye = async {
            let _ = self.stream.close(None).await;
            while let Some(Ok(_)) = self.stream.next().await {}
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), bye).await;
    }
}

/// An HTTP answer instead of `101`: its status and the server's `{"error":{..}}` body. A
/// `503 reconnect_later` carries the wait the server asked for.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: u16,
    /// `error.retry_after_ms` of a `reconnect_later` refusal.
    pub(crate) retry_after_ms: Option<u64>,
    pub(crate) body: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused with {}: {}", self.status, self.body)
    }
}

impl std::error::Error for Refused {}

impl Refused {
    pub(crate) fn of(status: u16, body: &[u8]) -> Self {
        let retry_after_ms = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .filter(|v| v["error"]["code"] == "reconnect_later")
            .and_then(|v| v["error"]["retry_after_ms"].as_u64());
        Self {
            status,
            retry_after_ms,
            body: String::from_utf8_lossy(body).chars().take(300).collect(),
        }
    }
}

/// Turns an HTTP refusal of the upgrade into a [`Refused`] error, which carries the server's
/// `{"error":{"code":..}}`.
fn describe_handshake_error(e: tokio_tungstenite::tungstenite::Error) -> anyhow::Error {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(response) => anyhow::Error::new(Refused::of(
            response.status().as_u16(),
            response.body().as_deref().unwrap_or_default(),
        )),
        other => anyhow::anyhow!("WebSocket handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_later_refusal_carries_its_wait() {
        let r = Refused::of(
            503,
            br#"{"error":{"code":"reconnect_later","message":"m","retry_after_ms":1234}}"#,
        );
        assert_eq!((r.status, r.retry_after_ms), (503, Some(1234)));
        let r = Refused::of(503, br#"{"error":{"code":"shutting_down","message":"m"}}"#);
        assert_eq!(r.retry_after_ms, None);
        assert_eq!(Refused::of(502, b"<html>").retry_after_ms, None);
    }
}
