//! A WebSocket consumer that reads, but only at 64 KB/s, while events come faster: it is cut with
//! a whole 4008 close frame after whole event frames, never a frame cut short.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::support::*;

/// What the reader takes per read, and how often: 8 KiB every 125 ms is 64 KB/s.
const CHUNK: usize = 8 * 1024;
const EVERY: Duration = Duration::from_millis(125);
/// Reads the test allows itself: 60 s of reading at that pace.
const MAX_READS: usize = 480;

#[tokio::test]
async fn a_consumer_reading_at_64_kb_per_second_gets_whole_frames_then_4008() {
    let s = Server::with(
        "[auth]\nsubscribe = \"none\"\n[subscribers]\nbuffer_events = 64\nbuffer_bytes = 65536\nwrite_timeout_ms = 300\n[history]\nmax_events = 5000\n",
    )
    .await;
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    let mut conn = sock.connect(addr).await.unwrap();
    conn.write_all(
        format!("GET /v1/ws?channel=fast HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();

    // Events come much faster than the reader takes them.
    let publisher = {
        let (http, url) = (s.http.clone(), format!("{}/v1/publish", s.base));
        tokio::spawn(async move {
            let pad = "x".repeat(4096);
            for n in 1..=2000u64 {
                let r = http
                    .post(&url)
                    .bearer_auth(KEY)
                    .json(&json!({"channel": "fast", "name": "n", "data": {"n": n, "pad": pad}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        })
    };

    let mut buf: Vec<u8> = Vec::new();
    let mut at = 0;
    let mut head_done = false;
    let mut events = 0u64;
    let mut close = None;
    'reading: for _ in 0..MAX_READS {
        let mut chunk = vec![0u8; CHUNK];
        let n = tokio::time::timeout(PATIENCE, conn.read(&mut chunk))
            .await
            .expect("the server writes or closes")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if !head_done {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            assert!(buf.starts_with(b"HTTP/1.1 101"));
            at = end + 4;
            head_done = true;
        }
        // Whole frames only: a server frame's header, then its payload.
        while buf.len() >= at + 2 {
            let (len, header) = match buf[at + 1] & 0x7f {
                126 if buf.len() >= at + 4 => (
                    usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])),
                    4,
                ),
                127 if buf.len() >= at + 10 => {
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&buf[at + 2..at + 10]);
                    (u64::from_be_bytes(l) as usize, 10)
                }
                126 | 127 => break,
                n => (usize::from(n), 2),
            };
            if buf.len() < at + header + len {
                break;
            }
            let payload = &buf[at + header..at + header + len];
            match buf[at] & 0x0f {
                0x1 => {
                    let v: serde_json::Value =
                        serde_json::from_slice(payload).expect("every text frame is whole JSON");
                    if v["type"] == "event" {
                        events += 1;
                        assert_eq!(v["seq"], events, "in order, without a gap");
                    }
                }
                0x8 => {
                    close = Some(u16::from_be_bytes([payload[0], payload[1]]));
                    break 'reading;
                }
                _ => {}
            }
            at += header + len;
        }
        tokio::time::sleep(EVERY).await;
    }
    assert_eq!(
        close,
        Some(4008),
        "cut as slow with a whole close frame after {events} events"
    );
    assert!(events > 0 && events < 2000, "it fell behind: {events}");
    publisher.await.unwrap();
}
