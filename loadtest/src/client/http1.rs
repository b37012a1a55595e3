//! A minimal HTTP/1.1 keep-alive client for `POST /v1/publish`: one request in flight per
//! connection, `Content-Length` bodies only. It costs a few µs per request where a general
//! client costs several times that, which matters when the tool shares two cores with the
//! server it measures.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head or body accepted; publish answers are a few hundred bytes.
const MAX_ANSWER: usize = 1 << 20;

/// An answer: status code and body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// One keep-alive connection.
pub(crate) struct Http1Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed (nothing is left over without pipelining).
    buf: Vec<u8>,
    /// The server asked to close after the last answer.
    closing: bool,
}

impl Http1Conn {
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(1024),
            closing: false,
        })
    }

    /// Whether the connection can carry another request.
    pub(crate) fn reusable(&self) -> bool {
        !self.closing
    }

    /// Sends `head` (request line and headers, ending in the blank line) plus `body` in one
    /// write, and reads the answer.
    pub(crate) async fn send(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.stream.write_all(request).await?;
        let head_len = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = parse_head(&self.buf[..head_len])?;
        self.closing = head.close;
        let total = head_len + head.content_length;
        if total > MAX_ANSWER {
            return Err(invalid("answer too large"));
        }
        while self.buf.len() < total {
            self.fill().await?;
        }
        let body = self.buf[head_len..total].to_vec();
        self.buf.drain(..total);
        Ok(Answer {
            status: head.status,
            body,
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.len() > MAX_ANSWER {
            return Err(invalid("answer too large"));
        }
        self.buf.reserve(4096);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        Ok(())
    }
}

/// The parts of an answer head the client needs.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    content_length: usize,
    close: bool,
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("non-UTF-8 answer head"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("not an HTTP/1.x answer"));
    }
    let status = code.parse().map_err(|_| invalid("bad status code"))?;
    let mut content_length = None;
    let mut close = version == "HTTP/1.0";
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("bad header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| invalid("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid(
                "chunked answers are not supported by the publish client",
            ));
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    // 1xx, 204 and 304 have no body; anything else must say how long it is.
    let bodyless = status < 200 || status == 204 || status == 304;
    let content_length = match content_length {
        Some(n) => n,
        None if bodyless => 0,
        None => return Err(invalid("answer without Content-Length")),
    };
    Ok(Head {
        status,
        content_length,
        close,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answer_heads() {
        let head = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\nContent-Length: 57\r\n\r\n";
        assert_eq!(
            parse_head(head).unwrap(),
            Head {
                status: 202,
                content_length: 57,
                close: false
            }
        );
        let head =
            b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            parse_head(head).unwrap(),
            Head {
                status: 503,
                content_length: 0,
                close: true
            }
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn round_trips_keep_alive_requests() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            for n in 1..=2 {
                while find(&seen, b"}").is_none() {
                    let k = sock.read(&mut buf).await.unwrap();
                    seen.extend_from_slice(&buf[..k]);
                }
                seen.clear();
                let body = format!("{{\"seq\":{n}}}");
                let answer = format!(
                    "HTTP/1.1 202 Accepted\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                // Split the answer to exercise partial reads.
                let (a, b) = answer.as_bytes().split_at(10);
                sock.write_all(a).await.unwrap();
                sock.flush().await.unwrap();
                sock.write_all(b).await.unwrap();
            }
        });
        let mut conn = Http1Conn::connect(addr).await.unwrap();
        let req = b"POST /v1/publish HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
        for n in 1..=2 {
            let answer = conn.send(req).await.unwrap();
            assert_eq!(answer.status, 202);
            assert_eq!(answer.body, format!("{{\"seq\":{n}}}").as_bytes());
            assert!(conn.reusable());
        }
    }
}
