//! What the floor server reads and writes, without sockets: the opening request of a
//! connection (nchan's dialect: `POST /pub?id=<channel>`, `GET /sub/<channel>` upgraded to a
//! WebSocket or answered as an EventSource), publish requests, and the bytes each event
//! becomes on a WebSocket (one unmasked text frame) and an EventSource (`data:` lines).

use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Headers read from one request; more is a client the floor does not serve.
const MAX_HEADERS: usize = 32;

/// The answer to every accepted publish.
pub(crate) const PUBLISHED: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
/// The answer to anything else.
pub(crate) const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
/// A WebSocket close frame with no status, the answer to the client's.
pub(crate) const WS_CLOSE: &[u8] = &[0x88, 0x00];

/// What a connection's first request makes it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// A publisher: the request (still in the buffer) is its first publish.
    Publisher,
    /// A subscriber of `channel`, answered with `reply` (the 101 or the EventSource head).
    Subscriber {
        channel: Box<str>,
        kind: Stream,
        reply: Vec<u8>,
    },
    /// Not a request the floor serves.
    Refused,
}

/// A subscriber's transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Ws,
    Sse,
}

/// A complete publish request at the front of a publisher's buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Publish<'a> {
    pub(crate) channel: &'a str,
    pub(crate) body: &'a [u8],
    /// Bytes of the buffer the request took (head and body).
    pub(crate) len: usize,
}

/// Reads the opening request of a connection from `head`; `None` until the head is complete.
pub(crate) fn opening(head: &[u8]) -> Option<Opening> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Partial) => return None,
        Ok(httparse::Status::Complete(_)) => {}
        Err(_) => return Some(Opening::Refused),
    }
    let (method, path) = (req.method.unwrap_or_default(), req.path.unwrap_or_default());
    if method == "POST" && publish_channel(path).is_some() {
        return Some(Opening::Publisher);
    }
    let channel = match path.strip_prefix("/sub/") {
        Some(rest) if method == "GET" => rest.split('?').next().unwrap_or_default(),
        _ => return Some(Opening::Refused),
    };
    if channel.is_empty() {
        return Some(Opening::Refused);
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
    let (kind, reply) = match (upgrade, header("sec-websocket-key")) {
        (true, Some(key)) => (
            Stream::Ws,
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                 sec-websocket-accept: {}\r\n\r\n",
                derive_accept_key(key)
            )
            .into_bytes(),
        ),
        (true, None) => return Some(Opening::Refused),
        // The stream ends when the connection does: no length, no chunking.
        (false, _) => (
            Stream::Sse,
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
              connection: close\r\n\r\n"
                .to_vec(),
        ),
    };
    Some(Opening::Subscriber {
        channel: channel.into(),
        kind,
        reply,
    })
}

/// The publish at the front of `buf`: `Ok(None)` while incomplete, `Err` for a request the
/// floor does not serve (the connection is closed).
pub(crate) fn publish(buf: &[u8]) -> Result<Option<Publish<'_>>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) => n,
        Err(_) => return Err("not HTTP"),
    };
    if req.method != Some("POST") {
        return Err("not a POST");
    }
    let channel = publish_channel(req.path.unwrap_or_default()).ok_or("not /pub?id=")?;
    let length = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or("no content-length")?;
    let len = head_len.checked_add(length).ok_or("too long")?;
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(Publish {
        channel,
        body: &buf[head_len..len],
        len,
    }))
}

/// `<channel>` of `/pub?id=<channel>` (other query parameters allowed).
fn publish_channel(path: &str) -> Option<&str> {
    let query = path.strip_prefix("/pub?")?;
    query
        .split('&')
        .find_map(|p| p.strip_prefix("id="))
        .filter(|c| !c.is_empty())
}

/// `body` as one unmasked WebSocket text frame.
pub(crate) fn ws_text_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + 10);
    frame.push(0x81);
    match body.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(body);
    frame
}

/// `body` as one EventSource event: a `data:` line per line of the body, then a blank line.
pub(crate) fn sse_event(body: &[u8]) -> Vec<u8> {
    let mut event = Vec::with_capacity(body.len() + 8);
    for line in body.split(|&b| b == b'\n') {
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(line);
        event.push(b'\n');
    }
    event.push(b'\n');
    event
}

/// Whether bytes a WebSocket subscriber sent start with a close frame (the only frame the
/// load tool sends to a server that never pings).
pub(crate) fn is_ws_close(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| b & 0x0f == 0x8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_publishers_and_both_kinds_of_subscriber() {
        let publish = b"POST /pub?id=lt-1 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(opening(publish), Some(Opening::Publisher));
        let ws =
            b"GET /sub/lt-1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let Some(Opening::Subscriber {
            channel,
            kind,
            reply,
        }) = opening(ws)
        else {
            panic!("not a subscriber");
        };
        assert_eq!((&*channel, kind), ("lt-1", Stream::Ws));
        // RFC 6455's example key and accept value.
        assert!(String::from_utf8(reply)
            .unwrap()
            .contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        let sse = b"GET /sub/lt-2 HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n";
        assert!(matches!(
            opening(sse),
            Some(Opening::Subscriber { kind: Stream::Sse, ref channel, .. }) if &**channel == "lt-2"
        ));
        assert_eq!(opening(b"GET /sub/lt-1 HTTP/1.1\r\nhost: x\r\n"), None);
        for refused in [
            &b"GET /v1/ws HTTP/1.1\r\n\r\n"[..],
            b"GET /sub/ HTTP/1.1\r\n\r\n",
            b"POST /pub HTTP/1.1\r\n\r\n",
            b"GET /sub/a HTTP/1.1\r\nupgrade: websocket\r\n\r\n",
            b"\x16\x03\x01 tls",
        ] {
            assert_eq!(opening(refused), Some(Opening::Refused), "{refused:?}");
        }
    }

    #[test]
    fn reads_keep_alive_publishes_one_at_a_time() {
        let two = b"POST /pub?id=a HTTP/1.1\r\ncontent-length: 3\r\n\r\none\
            POST /pub?x=1&id=b HTTP/1.1\r\nContent-Length: 3\r\n\r\ntwo";
        let first = publish(two).unwrap().unwrap();
        assert_eq!((first.channel, first.body), ("a", &b"one"[..]));
        let second = publish(&two[first.len..]).unwrap().unwrap();
        assert_eq!((second.channel, second.body), ("b", &b"two"[..]));
        assert_eq!(first.len + second.len, two.len());
        assert_eq!(publish(&two[..first.len - 1]), Ok(None));
        assert_eq!(publish(b"POST /pub?id=a HTTP/1.1\r\n"), Ok(None));
        assert!(publish(b"POST /pub?id=a HTTP/1.1\r\n\r\n").is_err());
        assert!(publish(b"GET /pub?id=a HTTP/1.1\r\ncontent-length: 0\r\n\r\n").is_err());
    }

    #[test]
    fn frames_events() {
        assert_eq!(ws_text_frame(b"hi"), b"\x81\x02hi");
        let mid = vec![b'x'; 300];
        assert_eq!(ws_text_frame(&mid)[..4], [0x81, 126, 0x01, 0x2c]);
        let big = vec![b'x'; 70_000];
        assert_eq!(
            ws_text_frame(&big)[..10],
            [0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]
        );
        assert_eq!(sse_event(b"{\"a\":1}"), b"data: {\"a\":1}\n\n");
        assert_eq!(sse_event(b"a\nb"), b"data: a\ndata: b\n\n");
        assert!(is_ws_close(&[0x88, 0x80, 1, 2, 3, 4]));
        assert!(!is_ws_close(&[0x81, 0x80]));
    }
}
