//! `GET /v1/sse` as it goes on the wire, where a connection that opens with it is served without
//! hyper: the chunked framing, HTTP/1.0, heads too large or malformed answered in JSON, a peer
//! that leaves noticed without a write, and the server serving after each.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Heartbeats far apart, so nothing but reading the socket can notice a peer that left.
const QUIET: &str = "[auth]\nsubscribe = \"none\"\n[subscribers]\nheartbeat_ms = 600000\n";

async fn open(s: &Server, head: &[u8]) -> TcpStream {
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(head).await.unwrap();
    sock
}

/// Reads until `raw` holds `want`; fails after the test's patience or at the close.
async fn read_until(sock: &mut TcpStream, raw: &mut Vec<u8>, want: &str) {
    tokio::time::timeout(PATIENCE, async {
        while !String::from_utf8_lossy(raw).contains(want) {
            let mut buf = [0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before {want:?}: {:?}",
                String::from_utf8_lossy(raw)
            );
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {want:?} in {:?}", String::from_utf8_lossy(raw)));
}

async fn read_to_close(sock: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, sock.read_to_end(&mut raw))
        .await
        .expect("the server closes")
        .expect("a clean close");
    String::from_utf8(raw).unwrap()
}

/// A chunked body's data, the chunks checked against their sizes.
fn dechunk(mut body: &str) -> (String, bool) {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).expect("a chunk size in hex");
        if size == 0 {
            return (data, rest == "\r\n");
        }
        data.push_str(&rest[..size]);
        assert_eq!(&rest[size..size + 2], "\r\n", "a chunk ends with CRLF");
        body = &rest[size + 2..];
    }
    (data, false)
}

fn json_answer(raw: &str) -> (&str, Value) {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole answer");
    (head, serde_json::from_str(body).expect("a JSON body"))
}

#[tokio::test]
async fn a_stream_is_chunked_and_its_end_is_framed() {
    let mut s = Server::with(QUIET).await;
    let mut sock = open(&s, b"GET /v1/sse?channel=w HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut raw = Vec::new();
    read_until(&mut sock, &mut raw, "\"type\":\"subscribed\"").await;
    assert_eq!(s.publish_seq("w", 1).await, 1);
    assert_eq!(s.publish_seq("w", 2).await, 2);
    read_until(&mut sock, &mut raw, "\"seq\":2,").await;
    // Shutting down ends the stream with a reconnect and the chunked encoding's last chunk.
    let stopped = s.shutdown();
    raw.extend_from_slice(read_to_close(&mut sock).await.as_bytes());
    stopped.await.unwrap().unwrap();

    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: text/event-stream\r\n"),
        "{head}"
    );
    assert_eq!(
        head.matches("transfer-encoding: chunked").count(),
        1,
        "{head}"
    );
    assert!(!head.contains("content-length"), "{head}");
    let (data, ended) = dechunk(body);
    assert!(ended, "the last chunk closes the body: {body:?}");
    let messages: Vec<Value> = data
        .split("\n\n")
        .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let kinds: Vec<(&str, Option<u64>)> = messages
        .iter()
        .map(|m| (m["type"].as_str().unwrap(), m["seq"].as_u64()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("subscribed", Some(0)),
            ("event", Some(1)),
            ("event", Some(2)),
            ("reconnect", None)
        ]
    );
}

#[tokio::test]
async fn an_http_1_0_stream_runs_to_the_close_unchunked() {
    let s = Server::with(QUIET).await;
    let mut sock = open(&s, b"GET /v1/sse?channel=o HTTP/1.0\r\n\r\n").await;
    let mut raw = Vec::new();
    read_until(&mut sock, &mut raw, "\"type\":\"subscribed\"").await;
    assert_eq!(s.publish_seq("o", 1).await, 1);
    read_until(&mut sock, &mut raw, "\"seq\":1,").await;
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(
        body.starts_with("retry: "),
        "the events as they are: {body:?}"
    );
}

#[tokio::test]
async fn a_refused_stream_gets_its_json_error_and_a_close() {
    let s = Server::with(QUIET).await;
    let mut sock = open(&s, b"GET /v1/sse HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let raw = read_to_close(&mut sock).await;
    let (head, v) = json_answer(&raw);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert_eq!(
        head.to_ascii_lowercase().matches("content-length").count(),
        1,
        "{head}"
    );
    assert_eq!(v["error"]["code"], "invalid_query");
    assert_eq!(s.publish_seq("after-refusal", 1).await, 1);
}

#[tokio::test]
async fn a_head_too_large_or_malformed_is_answered_in_json() {
    let s = Server::with(QUIET).await;
    // Past hyper's own limit (408 KiB), in one header the size of a huge cursor.
    let huge = "x".repeat(500 * 1024);
    let head = format!("GET /v1/sse?channel=h HTTP/1.1\r\nLast-Event-ID: {huge}\r\n\r\n");
    let mut sock = open(&s, head.as_bytes()).await;
    let raw = read_to_close(&mut sock).await;
    let (status, v) = json_answer(&raw);
    assert!(status.starts_with("HTTP/1.1 431 "), "{status}");
    assert_eq!(v["error"]["code"], "request_head_too_large");

    for (bad, what) in [
        (
            &b"GET /v1/sse?channel=h HTTP/1.1\r\nBad Name: x\r\n\r\n"[..],
            "not HTTP/1.1",
        ),
        (
            b"GET /v1/sse?channel=h HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            "no body",
        ),
    ] {
        let mut sock = open(&s, bad).await;
        let raw = read_to_close(&mut sock).await;
        let (status, v) = json_answer(&raw);
        assert!(status.starts_with("HTTP/1.1 400 "), "{status}");
        assert_eq!(v["error"]["code"], "malformed_request");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(what), "{message}");
    }
    assert_eq!(s.publish_seq("h", 1).await, 1);
}

#[tokio::test]
async fn a_peer_that_leaves_is_noticed_without_a_write() {
    let s = Server::with(QUIET).await;
    let open_connections = || s.state.admission.public.status().open_connections;
    let mut sock = open(&s, b"GET /v1/sse?channel=gone HTTP/1.1\r\n\r\n").await;
    let mut raw = Vec::new();
    read_until(&mut sock, &mut raw, "\"type\":\"subscribed\"").await;
    assert_eq!(open_connections(), 1);
    drop(sock);
    // No heartbeat or event is due for ten minutes: only the read side can see the close.
    eventually("the stream to close with its peer", || {
        open_connections() == 0
    })
    .await;
    assert_eq!(s.publish_seq("gone", 1).await, 1);
}

#[tokio::test]
async fn a_stream_head_that_never_ends_is_cut_at_the_header_deadline() {
    let s = Server::with("[auth]\nsubscribe = \"none\"\n[server]\nheader_read_timeout_ms = 1000\n")
        .await;
    // Enough to be taken for a stream, never the blank line that ends the head.
    let mut sock = open(&s, b"GET /v1/sse?channel=slow HTTP/1.1\r\nHost: x\r\n").await;
    assert_eq!(
        read_to_close(&mut sock).await,
        "",
        "closed without an answer"
    );
    assert_eq!(s.publish_seq("slow", 1).await, 1);
}
