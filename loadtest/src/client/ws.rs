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

/// Turns an HTTP refusal of the upgrade into its status and body, which carry the server's
/// `{"error":{"code":..}}`.
fn describe_handshake_error(e: tokio_tungstenite::tungstenite::Error) -> anyhow::Error {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            anyhow::anyhow!(
                "WebSocket upgrade refused with {}: {body}",
                response.status()
            )
        }
        other => anyhow::anyhow!("WebSocket handshake failed: {other}"),
    }
}
