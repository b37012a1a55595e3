//! The floor over real loopback sockets: a WebSocket and an EventSource subscriber get every
//! publish of their channel exactly once and nothing of another channel.

use std::time::Duration;

use tokio::time::Instant;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::Floor;
use crate::client::http1::Http1Conn;

/// Starts a floor on a port of its own, served by a thread until the test process ends.
fn start() -> std::net::SocketAddr {
    let mut floor = Floor::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = floor.local_addr().unwrap();
    std::thread::spawn(move || floor.serve(Instant::now() + Duration::from_secs(120)));
    addr
}

fn publish_request(channel: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /pub?id={channel} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn delivers_each_publish_once_to_its_channels_subscribers() {
    let addr = start();
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{addr}/sub/a"))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    let mut sse = TcpStream::connect(addr).await.unwrap();
    sse.write_all(b"GET /sub/a HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    // The EventSource head is written when the subscriber is registered.
    let mut sse_bytes = Vec::new();
    while !sse_bytes.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        sse.read_exact(&mut byte).await.unwrap();
        sse_bytes.push(byte[0]);
    }
    assert!(sse_bytes.starts_with(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream"));

    let mut publisher = Http1Conn::connect(addr).await.unwrap();
    for (channel, body) in [("a", "one"), ("b", "other"), ("a", "two")] {
        let answer = publisher
            .send(&publish_request(channel, body))
            .await
            .unwrap();
        assert_eq!(answer.status, 202);
        assert!(publisher.reusable());
    }

    for expected in ["one", "two"] {
        let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::text(expected));
    }
    let want = b"data: one\n\ndata: two\n\n";
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(Duration::from_secs(10), sse.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, want);

    // Nothing more arrives: no duplicate, nothing of channel b.
    let answer = publisher
        .send(&publish_request("a", "three"))
        .await
        .unwrap();
    assert_eq!(answer.status, 202);
    let got = ws.next().await.unwrap().unwrap();
    assert_eq!(got, Message::text("three"));
}

#[tokio::test]
async fn refuses_what_it_does_not_serve_and_keeps_serving() {
    let addr = start();
    let mut other = Http1Conn::connect(addr).await.unwrap();
    let answer = other
        .send(b"GET /v1/ws?channel=a HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answer.status, 404);
    assert!(!other.reusable());
    let mut publisher = Http1Conn::connect(addr).await.unwrap();
    let answer = publisher.send(&publish_request("a", "x")).await.unwrap();
    assert_eq!(answer.status, 202);
}

#[test]
fn listens_on_loopback_only() {
    let args = super::FloorArgs {
        listen: "0.0.0.0:0".parse().unwrap(),
        lifetime: 1.0,
    };
    let err = super::run(args).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the floor listens on loopback only, not 0.0.0.0:0"
    );
}
