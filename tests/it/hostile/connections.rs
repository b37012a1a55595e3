//! Connection-level protection: idle and trickling connections are cut at their deadlines, and
//! while thousands are open a normal publish and subscribe still complete promptly; connections
//! past a listener's or an address's cap get a 503 JSON answer and the admin listener still
//! answers.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::support::*;

/// Idle connections the flood test opens.
const IDLE: usize = 2000;

fn public_addr(s: &Server) -> SocketAddr {
    s.base.trim_start_matches("http://").parse().unwrap()
}

/// A connection from `source` (any 127.x.y.z address is loopback), so tests can stand for
/// several clients.
async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((source, 0))).unwrap();
    sock.connect(to).await.unwrap()
}

/// Reads until the server closes the connection (or resets it); fails after `within`.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close within {within:?}");
    got
}

/// The status and JSON body of a raw HTTP/1.1 answer.
fn answer(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A publish, and a WebSocket subscriber receiving it: how long the pair takes.
async fn publish_and_receive(s: &Server, channel: &str) -> Duration {
    let started = Instant::now();
    let mut ws = ws_connect(&s.ws_url(&format!("?channel={channel}"))).await;
    ws_expect(&mut ws, "welcome").await;
    ws_expect(&mut ws, "subscribed").await;
    let seq = s.publish_seq(channel, 1).await;
    let ev = ws_expect(&mut ws, "event").await;
    assert_eq!(ev["seq"], seq);
    started.elapsed()
}

#[tokio::test]
async fn idle_and_trickling_connections_are_cut_and_never_keep_others_out() {
    let s = Server::with(
        "[auth]\nsubscribe = \"none\"\n[server]\nheader_read_timeout_ms = 2000\nbody_read_timeout_ms = 2000\n",
    )
    .await;
    let addr = public_addr(&s);
    // Warm the path (first connection, channel creation) so the timing below measures the flood.
    publish_and_receive(&s, "warm").await;

    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(connect_from([127, 0, 0, 2], addr).await);
    }
    // A request head, then a body, each a byte at a time.
    let mut head = connect_from([127, 0, 0, 3], addr).await;
    let trickle_head = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
            .take(100)
        {
            if head.write_all(&[*b]).await.is_err() {
                return head;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        head
    });
    let mut body = connect_from([127, 0, 0, 3], addr).await;
    body.write_all(
        format!(
            "POST /v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let trickle_body = tokio::spawn(async move {
        for _ in 0..100 {
            if body.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        body
    });

    // With all of them open, a publisher and a subscriber are served as usual.
    let took = publish_and_receive(&s, "busy").await;
    assert!(
        took < Duration::from_secs(1),
        "publish and subscribe took {took:?} beside {IDLE} idle connections"
    );
    let (status, _) = s
        .admin_call(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(status, 200);

    // The server closes every idle one at the header deadline: none of them stays.
    let patience = Duration::from_secs(2) + PATIENCE;
    for conn in &mut idle {
        let got = read_to_close(conn, patience.saturating_sub(opened.elapsed())).await;
        assert!(
            got.is_empty(),
            "an idle connection is closed without an answer"
        );
    }
    // The byte-a-second head is cut too (hyper answers nothing to a head that never ended).
    let mut head = trickle_head.await.unwrap();
    read_to_close(&mut head, PATIENCE).await;
    // The byte-a-second body gets the body deadline's JSON answer.
    let mut body = trickle_body.await.unwrap();
    let (status, v) = answer(&read_to_close(&mut body, PATIENCE).await);
    assert_eq!(status, 408, "{v}");
    assert_eq!(v["error"]["code"], "body_timeout");
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains("understudy_connections_timed_out_total{stage=\"header\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn connections_past_a_cap_get_a_json_503_and_the_admin_listener_still_answers() {
    let s = Server::with(
        "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{ name = \"ops\", token = \"hostile-admin-token-0123456789\" }]\n[server]\nmax_connections = 40\nmax_connections_per_address = 20\n",
    )
    .await;
    let addr = public_addr(&s);
    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.push(connect_from([127, 0, 0, 2], addr).await);
    }
    // One address past its cap is told so; another address is still served.
    let mut over = connect_from([127, 0, 0, 2], addr).await;
    over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, v) = answer(&read_to_close(&mut over, PATIENCE).await);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "too_many_connections");
    assert!(v["error"]["message"].as_str().unwrap().contains("address"));
    assert_eq!(s.publish_seq("capped", 1).await, 1);

    // Fill the listener from two more addresses; then everyone is refused, clearly.
    for source in [[127, 0, 0, 3], [127, 0, 0, 4]] {
        for _ in 0..10 {
            flood.push(connect_from(source, addr).await);
        }
    }
    // reqwest's pooled connection from the publish above holds one place: fill to the cap.
    let open = || s.state.admission.public.status().open_connections;
    while open() < 40 {
        flood.push(connect_from([127, 0, 0, 5], addr).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut full = connect_from([127, 0, 0, 6], addr).await;
    full.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, v) = answer(&read_to_close(&mut full, PATIENCE).await);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "too_many_connections");

    // The admin listener counts apart: readiness and status still answer, with the caps.
    let (status, _) = s
        .admin_call(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(status, 200);
    let (status, v) = s
        .admin_call(
            reqwest::Method::GET,
            "/admin/status",
            Some("hostile-admin-token-0123456789"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["listeners"][0],
        json!({"listener": "public", "max_connections": 40, "max_connections_per_address": 20, "open_connections": 40,
               "new_subscribers": {"max_per_second": 1000, "burst": 200, "jitter_ms": 3000, "admitted": 0, "refused": 0}})
    );
    let metrics = s.metrics_text().await;
    // Metrics are the test process's (other tests' servers add to them): names and labels only.
    for line in [
        "understudy_connections_refused_total{listener=\"public\",reason=\"address_full\"} ",
        "understudy_connections_refused_total{listener=\"public\",reason=\"listener_full\"} ",
        "understudy_connection_cap{listener=\"public\",scope=\"listener\"} ",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // Places come back as connections close.
    flood.clear();
    eventually("the flood's places to come back", || open() <= 1).await;
    assert_eq!(s.publish_seq("capped", 2).await, 2);
}
