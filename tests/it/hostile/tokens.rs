//! A subscriber token is good for an open connection only until it expires: the connection is
//! then closed with a code that tells the client to fetch a fresh token.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const JWT: &str = "[auth]\nsubscribe = \"jwt\"\n[subscribers]\nheartbeat_ms = 100\n";

/// A token inside the server's 5 s leeway: accepted now, expired about a second from now.
fn expiring_token() -> String {
    token(&["t"], -4, SECRET)
}

#[tokio::test]
async fn an_open_websocket_is_closed_4001_when_its_token_expires() {
    let s = Server::with(JWT).await;
    let mut ws = ws_connect(&s.ws_url(&format!("?channel=t&token={}", expiring_token()))).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    let code = loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => break frame.code,
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::from(4001));
    // A fresh token is served as usual.
    let fresh = token(&["t"], 3600, SECRET);
    let mut ws = ws_connect(&s.ws_url(&format!("?channel=t&token={fresh}"))).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
}

#[tokio::test]
async fn an_open_sse_stream_ends_with_a_token_expired_reconnect() {
    let s = Server::with(JWT).await;
    let mut sse = Sse::open(&s, &format!("?channel=t&token={}", expiring_token()), None).await;
    sse.expect("subscribed").await;
    // Heartbeats keep an open stream busy: bound the wait for its end.
    let mut last = None;
    let ended = tokio::time::timeout(PATIENCE, async {
        while let Some(v) = sse.next().await {
            last = Some(v);
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream did not end; last message {last:?}"
    );
    let last = last.expect("a message before the end");
    assert_eq!(last["type"], "reconnect", "{last}");
    assert_eq!(last["reason"], "token_expired");
}
