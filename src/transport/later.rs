//! Telling a refused subscriber to come back later (`reconnect_later`, see `admission::rate`)
//! in a form its client can read. An HTTP client reads the `503` answer's JSON and
//! `Retry-After`. A browser cannot: its `WebSocket` and `EventSource` report a refused handshake
//! as a bare error, with neither status nor body, so a page would take it for a dead transport
//! and move down its ladder. Requests from browsers are therefore answered in-band: a WebSocket
//! is accepted and closed at once with 1013 ("try again later") and the wait in the close
//! reason; an SSE stream opens with a `retry:` line and a `reconnect` message, and ends.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::wire::ServerMessage;

/// Close code: too many subscribers are connecting; reconnect after the close reason's
/// `retry_after_ms` (RFC 6455 registry: "Try Again Later").
pub(crate) const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
/// The `reason` of `reconnect` messages and the `code` of refusals.
pub(crate) const REASON: &str = "reconnect_later";
/// How long an in-band WebSocket refusal waits for the client's closing frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Whether a request comes from a browser, which cannot read a refused handshake: browsers send
/// `Origin` with every WebSocket handshake (RFC 6455 section 4.1) and `Sec-Fetch-Mode` with
/// every request, `EventSource` included; page scripts cannot set either.
pub(crate) fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-mode")
}

/// The close reason of an in-band WebSocket refusal: 48 bytes at most, within the 123 a close
/// frame allows.
pub(crate) fn close_reason(wait: Duration) -> String {
    serde_json::json!({"code": REASON, "retry_after_ms": wait.as_millis() as u64}).to_string()
}

/// Closes a just-accepted WebSocket with 1013 and the wait, then gives the client a moment to
/// answer the close before the socket goes.
pub(crate) async fn close_websocket(mut ws: super::ws::Socket, wait: Duration) {
    let frame = CloseFrame {
        code: CloseCode::from(CLOSE_TRY_AGAIN_LATER),
        reason: close_reason(wait).into(),
    };
    let bye = async {
        if ws.send(Message::Close(Some(frame))).await.is_ok() {
            use futures_util::StreamExt;
            while let Some(Ok(_)) = ws.next().await {}
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, bye).await;
}

/// The whole answer to a refused `EventSource`: a `retry:` line (a plain `EventSource` waits
/// that long before it reconnects by itself) and a `reconnect` message, then the end.
pub(crate) fn sse_response(wait: Duration) -> Response {
    let retry_ms = wait.as_millis() as u64;
    let mut body = format!("retry: {retry_ms}\ndata: ").into_bytes();
    body.extend_from_slice(
        &ServerMessage::Reconnect {
            reason: REASON,
            retry_ms,
        }
        .to_bytes(),
    );
    body.extend_from_slice(b"\n\n");
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_are_told_by_their_headers() {
        let mut h = HeaderMap::new();
        assert!(!from_browser(&h));
        h.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        assert!(from_browser(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://screens.example.com"),
        );
        assert!(from_browser(&h));
    }

    #[test]
    fn the_close_reason_fits_a_close_frame_whatever_the_wait() {
        let reason = close_reason(Duration::from_millis(u64::MAX));
        assert!(reason.len() <= 123, "{reason}");
        assert_eq!(
            close_reason(Duration::from_millis(1234)),
            r#"{"code":"reconnect_later","retry_after_ms":1234}"#
        );
    }
}
