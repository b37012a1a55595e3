//! Publishing as it goes on the wire, where a connection that opens with a publish is served
//! without hyper while its requests are plain: kept alive and pipelined, a request split across
//! reads, requests left to hyper on the same connection, `Connection: close`, the body and header
//! deadlines, a head too large, and the listener's close.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A publish request with a `content-length`, and `extra` header lines.
fn publish(channel: &str, n: u64, extra: &str) -> Vec<u8> {
    let body = json!({"channel": channel, "name": "n", "data": {"n": n}}).to_string();
    format!(
        "POST /v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One answer: its head (lower-cased) and its body, read by its `content-length`.
struct Answer {
    head: String,
    body: Value,
    text: String,
}

/// Reads answers off `sock` as they come, keeping what is read past one for the next.
struct Reader {
    sock: TcpStream,
    raw: Vec<u8>,
}

impl Reader {
    async fn open(s: &Server) -> Self {
        let addr: SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
        Reader {
            sock: TcpStream::connect(addr).await.unwrap(),
            raw: Vec::new(),
        }
    }

    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, self.sock.read(&mut buf))
            .await
            .expect("an answer within the test's patience")
            .unwrap_or(0);
        self.raw.extend_from_slice(&buf[..n]);
        n > 0
    }

    async fn answer(&mut self) -> Answer {
        loop {
            if let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.raw[..end].to_vec())
                    .unwrap()
                    .to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .expect("a content-length")
                    .parse()
                    .unwrap();
                let whole = end + 4 + length;
                while self.raw.len() < whole {
                    assert!(self.fill().await, "closed inside an answer");
                }
                let text = String::from_utf8(self.raw[end + 4..whole].to_vec()).unwrap();
                let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                self.raw.drain(..whole);
                return Answer { head, body, text };
            }
            assert!(
                self.fill().await,
                "closed before an answer: {:?}",
                String::from_utf8_lossy(&self.raw)
            );
        }
    }

    /// Reads until `raw` holds `what`.
    async fn until(&mut self, what: &str) {
        while !String::from_utf8_lossy(&self.raw).contains(what) {
            assert!(
                self.fill().await,
                "closed before {what:?}: {:?}",
                String::from_utf8_lossy(&self.raw)
            );
        }
    }

    /// Reads to the close; what came is left in `raw`.
    async fn closed(&mut self) {
        while self.fill().await {}
    }
}

async fn history(s: &Server, channel: &str) -> Vec<u64> {
    let (status, v) = s
        .get(&format!("/v1/channels/{channel}/events?since=0"))
        .await;
    assert_eq!(status, 200, "{v}");
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["n"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn kept_alive_and_pipelined_publishes_are_answered_in_order() {
    let s = Server::start().await;
    let mut r = Reader::open(&s).await;
    // Three requests in one write, then a fourth whose head and body arrive apart.
    let mut three = publish("p", 1, "");
    three.extend(publish("p", 2, ""));
    three.extend(publish("p", 3, ""));
    r.sock.write_all(&three).await.unwrap();
    let fourth = publish("p", 4, "");
    let split = fourth.len() - 10;
    r.sock.write_all(&fourth[..split]).await.unwrap();
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let a = r.answer().await;
        assert!(
            a.head.starts_with("http/1.1 202 accepted\r\n"),
            "{}",
            a.head
        );
        assert!(
            a.head.contains("content-type: application/json"),
            "{}",
            a.head
        );
        assert!(!a.head.contains("connection: close"), "{}", a.head);
        seqs.push(a.body["seq"].as_u64().unwrap());
    }
    r.sock.write_all(&fourth[split..]).await.unwrap();
    seqs.push(r.answer().await.body["seq"].as_u64().unwrap());
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(history(&s, "p").await, [1, 2, 3, 4]);
    // And again on the same connection.
    r.sock.write_all(&publish("p", 5, "")).await.unwrap();
    assert_eq!(r.answer().await.body["seq"], 5);
}

#[tokio::test]
async fn a_request_left_to_hyper_is_served_on_the_same_connection() {
    let s = Server::start().await;
    let mut r = Reader::open(&s).await;
    let body = json!({"channel": "h", "name": "n", "data": {"n": 3}}).to_string();
    let chunked = format!(
        "POST /v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let mut all = publish("h", 1, "");
    all.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    all.extend(publish("h", 2, ""));
    all.extend_from_slice(chunked.as_bytes());
    all.extend(publish("h", 4, ""));
    r.sock.write_all(&all).await.unwrap();

    let first = r.answer().await;
    assert!(first.head.starts_with("http/1.1 202 "), "{}", first.head);
    let health = r.answer().await;
    assert!(health.head.starts_with("http/1.1 200 "), "{}", health.head);
    assert_eq!(health.text, "ok");
    let mut seqs = vec![first.body["seq"].as_u64().unwrap()];
    for _ in 0..3 {
        let a = r.answer().await;
        assert!(a.head.starts_with("http/1.1 202 "), "{}", a.head);
        seqs.push(a.body["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(history(&s, "h").await, [1, 2, 3, 4]);
}

#[tokio::test]
async fn connection_close_is_answered_and_honoured() {
    let s = Server::start().await;
    let mut r = Reader::open(&s).await;
    let mut two = publish("c", 1, "Connection: close\r\n");
    two.extend(publish("c", 2, ""));
    r.sock.write_all(&two).await.unwrap();
    let a = r.answer().await;
    assert!(a.head.contains("\r\nconnection: close"), "{}", a.head);
    assert_eq!(a.body["seq"], 1);
    r.closed().await;
    assert!(r.raw.is_empty(), "nothing after the last answer");
    assert_eq!(history(&s, "c").await, [1]);
}

#[tokio::test]
async fn a_body_past_its_deadline_is_refused_in_json_and_nothing_is_published() {
    let s =
        Server::with("[auth]\nsubscribe = \"none\"\n[server]\nbody_read_timeout_ms = 500\n").await;
    let mut r = Reader::open(&s).await;
    let request = publish("b", 1, "");
    r.sock
        .write_all(&request[..request.len() - 5])
        .await
        .unwrap();
    let a = r.answer().await;
    assert!(a.head.starts_with("http/1.1 408 "), "{}", a.head);
    assert!(a.head.contains("\r\nconnection: close"), "{}", a.head);
    assert_eq!(a.body["error"]["code"], "body_timeout");
    r.closed().await;
    assert_eq!(
        s.publish_seq("b", 1).await,
        1,
        "nothing was published before"
    );
}

#[tokio::test]
async fn an_idle_publisher_connection_is_closed_at_the_header_deadline() {
    let s = Server::with("[auth]\nsubscribe = \"none\"\n[server]\nheader_read_timeout_ms = 500\n")
        .await;
    let open_connections = || s.state.admission.public.status().open_connections;
    let mut r = Reader::open(&s).await;
    r.sock.write_all(&publish("i", 1, "")).await.unwrap();
    assert_eq!(r.answer().await.body["seq"], 1);
    // Half a head, then nothing: the deadline counts from the end of the last answer.
    r.sock
        .write_all(b"POST /v1/publish HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    r.closed().await;
    assert!(r.raw.is_empty(), "closed without an answer");
    eventually("the connection to be let go", || open_connections() == 0).await;
    assert_eq!(s.publish_seq("i", 2).await, 2);
}

#[tokio::test]
async fn a_publish_head_too_large_is_answered_in_json() {
    let s = Server::start().await;
    let mut r = Reader::open(&s).await;
    let huge = "x".repeat(500 * 1024);
    let request = publish("t", 1, &format!("X-Huge: {huge}\r\n"));
    // The server answers before it has read it all; what it did not read may reset the write.
    let _ = r.sock.write_all(&request).await;
    let a = r.answer().await;
    assert!(a.head.starts_with("http/1.1 431 "), "{}", a.head);
    assert_eq!(a.body["error"]["code"], "request_head_too_large");
    assert_eq!(
        s.publish_seq("t", 1).await,
        1,
        "nothing was published before"
    );
}

#[tokio::test]
async fn an_idle_kept_alive_publisher_does_not_hold_up_shutdown() {
    // The header deadline far away: only the listener's close can end the connection in time.
    let mut s =
        Server::with("[auth]\nsubscribe = \"none\"\n[server]\nheader_read_timeout_ms = 60000\n")
            .await;
    let mut r = Reader::open(&s).await;
    r.sock.write_all(&publish("s", 1, "")).await.unwrap();
    assert_eq!(r.answer().await.body["seq"], 1);
    let stopped = s.shutdown();
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("the server stops with a publisher connection open")
        .unwrap()
        .unwrap();
    r.closed().await;
    assert!(r.raw.is_empty());
}

#[tokio::test]
async fn a_publisher_connection_can_upgrade_to_a_websocket_after_publishing() {
    let s = Server::start().await;
    let mut r = Reader::open(&s).await;
    r.sock.write_all(&publish("u", 1, "")).await.unwrap();
    assert_eq!(r.answer().await.body["seq"], 1);
    // hyper takes the connection over at the upgrade and hands its socket to the session.
    r.sock
        .write_all(
            b"GET /v1/ws?channel=u HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    r.until("\"type\":\"subscribed\"").await;
    assert!(
        String::from_utf8_lossy(&r.raw).starts_with("HTTP/1.1 101 "),
        "{:?}",
        String::from_utf8_lossy(&r.raw)
    );
    assert_eq!(s.publish_seq("u", 2).await, 2);
    r.until("\"seq\":2,").await;
}
