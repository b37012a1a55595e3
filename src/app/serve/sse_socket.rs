//! A connection that opens with `GET /v1/sse` is served here, on its socket, rather than by
//! hyper. hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for every connection for as
//! long as it is open, and will not go below that; an SSE stream is open for hours and mostly
//! idle, so two thirds of its memory would be hyper's buffers. Here:
//! - the request head is read into a buffer that is let go once it is parsed (`httparse`, hyper's
//!   own parser, with hyper's default limits: 100 headers, a head of at most 408 KiB, the
//!   listener's header deadline);
//! - the router answers the request as it answers any other, so authorization, validation and
//!   every error are the same as on hyper's path;
//! - the answer's head is written at once and its body chunk by chunk as the stream yields them,
//!   each chunk framed for the chunked encoding in an allocation that lives only until the
//!   socket took it. Between chunks the connection owns its socket, its stream state and nothing
//!   else.
//!
//! While the stream waits with nothing unsent, its socket is parked for publishers, who write
//! events to it themselves (`transport::direct`); each poll of the stream takes it back first.
//!
//! Only a connection's first request is looked at, by peeking at what has already arrived
//! without reading it: any other request, or one whose start has not all arrived yet (a client
//! that trickles its head), is hyper's as before. The stream is the connection's last answer: the
//! connection closes when the stream ends.

use std::future::poll_fn;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Request, Response, Version};
use axum::response::IntoResponse;
use axum::Router;
use bytes::{Buf, Bytes};
use http_body::Body as HttpBody;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::ops::metrics::Metrics;
use crate::transport::admission::Permit;
use crate::transport::deadline::Guarded;
use crate::transport::direct::Parking;
use crate::transport::shared_tcp::SharedTcp;
use crate::transport::wake::GatedRead;
use crate::transport::SseSocket;

use super::{linger, write_head_start, MAX_HEAD, MAX_HEADERS};

/// The stream's socket: shared with publishers' direct writes (see [`Parking`]).
type Io = Guarded<GatedRead<SharedTcp>>;
use crate::transport::ApiError;

/// What a connection's first request starts with when it asks for the SSE stream; a space or a
/// `?` follows.
const SSE_REQUEST: &[u8] = b"GET /v1/sse";

/// Whether `start`, the first bytes of a connection, ask for the SSE stream.
pub(super) fn is_sse(start: &[u8]) -> bool {
    matches!(start.strip_prefix(SSE_REQUEST), Some([b' ' | b'?', ..]))
}

/// The longest prefix [`is_sse`] looks at.
pub(super) const PEEK: usize = SSE_REQUEST.len() + 1;

/// Serves the connection's one request: reads its head, asks the router, writes the answer.
///
/// The task keeps its future's largest state for as long as the stream is open, so the steps
/// before the answer (the head's read, the handler) run boxed: what stays is the socket, the
/// body and the write in progress.
pub(super) async fn serve(
    stream: TcpStream,
    permit: Permit,
    head_by: Instant,
    write_deadline: Duration,
    router: Router,
    close: CancellationToken,
) {
    let stream = SharedTcp::new(stream);
    let parking = stream.parking();
    let io = Guarded::new(GatedRead::new(stream), write_deadline, permit);
    let prepared = Box::pin(prepare(io, head_by, router, close, parking.clone())).await;
    if let Some((mut io, head, framing)) = prepared {
        let _ = send(&mut io, head, framing, Some(&parking)).await;
    }
}

/// The answer to the connection's request, or `None` once the connection is done (the peer
/// left, or its head was refused and answered).
async fn prepare(
    mut io: Io,
    head_by: Instant,
    router: Router,
    close: CancellationToken,
    parking: Arc<Parking>,
) -> Option<(Io, Vec<u8>, Framing)> {
    let mut request = match read_head_within(&mut io, head_by, &close).await {
        Ok(request) => request,
        Err(HeadError::Gone) => return None,
        Err(HeadError::Refused(e)) => {
            let (head, framing) = head_of(e.into_response(), Version::HTTP_11);
            if send(&mut io, head, framing, None).await.is_ok() {
                linger(&mut io).await;
            }
            return None;
        }
    };
    let version = request.version();
    let chunked = streams_chunked(version);
    request
        .extensions_mut()
        .insert(SseSocket { parking, chunked });
    let Ok(response) = router.oneshot(request).await;
    let (head, framing) = head_of(response, version);
    Some((io, head, framing))
}

/// A request head in arbitrary bytes, as [`read_head`] takes it once it has them all: the request,
/// `None` for a head not yet whole, or the refusal it is answered with.
#[cfg(fuzzing)]
pub(crate) fn fuzz_head(data: &[u8]) -> Result<Option<Request<Body>>, ApiError> {
    match parse_head(data) {
        Ok(request) => Ok(request),
        Err(HeadError::Refused(e)) => Err(e),
        Err(HeadError::Gone) => unreachable!("parsing alone never loses the peer"),
    }
}

/// Writes an answer and closes the connection. A stream's socket is parked for publishers
/// whenever it waits with nothing unsent, if `parking` is given.
async fn send(
    io: &mut Io,
    head: Vec<u8>,
    framing: Framing,
    parking: Option<&Parking>,
) -> io::Result<()> {
    let (mut body, chunked) = match framing {
        Framing::Length(body) => return Box::pin(whole(io, head, body)).await,
        Framing::Chunked(body) => (body, true),
        Framing::UntilClose(body) => (body, false),
    };
    io.write_all(&head).await?;
    drop(head);
    write_stream(io, &mut body, chunked, parking).await?;
    finish(io, if chunked { b"0\r\n\r\n" } else { b"" }).await
}

/// The head by the header deadline (counted from the accept), unless the listener closes first.
async fn read_head_within(
    io: &mut Io,
    head_by: Instant,
    close: &CancellationToken,
) -> Result<Request<Body>, HeadError> {
    tokio::select! {
        () = close.cancelled() => Err(HeadError::Gone),
        head = tokio::time::timeout_at(head_by, read_head(io)) => head.unwrap_or_else(|_| {
            Metrics::connection_timed_out("header").increment(1);
            Err(HeadError::Gone)
        }),
    }
}

enum HeadError {
    /// The peer closed or reset before its head was whole.
    Gone,
    /// A head that cannot be served, answered with this error.
    Refused(ApiError),
}

impl From<io::Error> for HeadError {
    fn from(_: io::Error) -> Self {
        HeadError::Gone
    }
}

/// Reads until the head is whole, and not one byte of the socket past it.
async fn read_head(io: &mut Io) -> Result<Request<Body>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::Refused(ApiError::HeadTooLarge(MAX_HEAD)));
        }
        if buf.len() == buf.capacity() {
            // Exact, so a read never takes the buffer past the limit.
            buf.reserve_exact((MAX_HEAD - buf.len()).min(buf.len()));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(HeadError::Gone);
        }
        if let Some(request) = parse_head(&buf)? {
            return Ok(request);
        }
    }
}

/// The request, once `buf` holds its whole head. A GET carries no body here: one that says it has
/// one is refused rather than left unread in front of the stream.
fn parse_head(buf: &[u8]) -> Result<Option<Request<Body>>, HeadError> {
    let malformed = |why: &str| HeadError::Refused(ApiError::MalformedRequest(why.to_string()));
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Refused(ApiError::HeadTooLarge(MAX_HEAD)))
        }
        Err(e) => return Err(malformed(&format!("the request head is not HTTP/1.1: {e}"))),
    };
    if len != buf.len() {
        return Err(malformed(
            "bytes followed the head of a GET /v1/sse request, which has no body",
        ));
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut request = Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(version)
        .body(Body::empty())
        .map_err(|_| malformed("the request line is not a valid method and path"))?;
    let map = request.headers_mut();
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| malformed("a header name is not a valid token"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| malformed("a header value holds a control character"))?;
        map.append(name, value);
    }
    let has_body = map.contains_key(header::TRANSFER_ENCODING)
        || map
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return Err(malformed("a GET /v1/sse request has no body"));
    }
    Ok(Some(request))
}

/// How an answer's body goes on the wire (the request is always a GET: see [`classify`]).
enum Framing {
    /// Known length: `content-length`, all at once.
    Length(Body),
    /// A stream to an HTTP/1.1 client: the chunked encoding.
    Chunked(Body),
    /// A stream to an HTTP/1.0 client: the data as it is, ended by the close.
    UntilClose(Body),
}

/// Whether a stream to a client of `version` goes out in chunks (HTTP/1.1), rather than as it
/// is until the close (HTTP/1.0): the stream's writer and its publishers' writes frame alike.
fn streams_chunked(version: Version) -> bool {
    version == Version::HTTP_11
}

/// The answer's head, and how its body follows. Every answer closes the connection.
fn head_of(response: Response<Body>, version: Version) -> (Vec<u8>, Framing) {
    let (parts, body) = response.into_parts();
    let length = body.size_hint().exact();
    let framing = match length {
        Some(_) => Framing::Length(body),
        None if streams_chunked(version) => Framing::Chunked(body),
        None => Framing::UntilClose(body),
    };
    let mut head = Vec::with_capacity(512);
    write_head_start(&mut head, parts.status, &parts.headers);
    match &framing {
        Framing::Length(_) => {
            let _ = write!(head, "content-length: {}\r\n", length.unwrap_or(0));
        }
        Framing::Chunked(_) => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::UntilClose(_) => {}
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    (head, framing)
}

/// An answer of known length (an error, a refusal; small): head and body in one write.
async fn whole(io: &mut Io, mut head: Vec<u8>, body: Body) -> io::Result<()> {
    let length = body.size_hint().exact().unwrap_or(0);
    let body = axum::body::to_bytes(body, usize::try_from(length).unwrap_or(usize::MAX))
        .await
        .map_err(io::Error::other)?;
    head.extend_from_slice(&body);
    finish(io, &head).await
}

async fn finish(io: &mut Io, last: &[u8]) -> io::Result<()> {
    io.write_all(last).await?;
    io.shutdown().await
}

/// Writes the body's chunks until it ends, or until the peer leaves: a stream that would
/// otherwise write nothing for a while notices a closed socket by reading it. Between chunks,
/// with nothing unsent, the socket is parked for publishers; each poll takes it back, with the
/// rest of an event a publisher began, which goes out first.
async fn write_stream(
    io: &mut Io,
    body: &mut Body,
    chunked: bool,
    parking: Option<&Parking>,
) -> io::Result<()> {
    let mut out = Bytes::new();
    poll_fn(|cx| {
        if let Some(rest) = parking.and_then(Parking::claim) {
            out = rest;
        }
        if let Poll::Ready(gone) = poll_peer_gone(io, cx) {
            return Poll::Ready(gone);
        }
        loop {
            while !out.is_empty() {
                match Pin::new(&mut *io).poll_write(cx, &out) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => out.advance(n),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            // Let the last chunk's allocation go before waiting for the next.
            out = Bytes::new();
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => {
                    if let Some(parking) = parking {
                        parking.park();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        out = frame_chunk(data, chunked);
                    }
                }
            }
        }
    })
    .await
}

/// `data` as it goes on the wire: in the chunked encoding, its size in hex, CRLF, the data, CRLF
/// (an empty chunk would end the body, so empty data stays empty); up to the close, as it is.
fn frame_chunk(data: Bytes, chunked: bool) -> Bytes {
    if !chunked || data.is_empty() {
        return data;
    }
    let mut out = Vec::with_capacity(data.len() + 12);
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\r\n");
    out.into()
}

/// Ready with `Ok` when the peer closed its side, with the error when the socket failed; pending
/// while it is open. Anything it sends after its head is read and dropped: a stream's client has
/// nothing more to say.
fn poll_peer_gone(io: &mut Io, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut scratch = [0u8; 64];
    loop {
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_sse_request_line_start_is_taken() {
        for sse in [
            &b"GET /v1/sse?"[..],
            b"GET /v1/sse ",
            b"GET /v1/sse?channel=a",
        ] {
            assert!(is_sse(sse));
        }
        for other in [
            &b""[..],
            b"GET /v1/ss",
            b"GET /v1/sse",
            b"GET /v1/sses",
            b"GET /v1/ws?c",
            b"POST /v1/sse",
            b"get /v1/sse?",
        ] {
            assert!(!is_sse(other), "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn an_event_written_by_a_publisher_is_the_bytes_its_stream_would_write() {
        use crate::core::{ChannelName, Cursor, Epoch, Event, EventDraft};
        use parking_lot::Mutex;
        use std::sync::Arc;
        let draft = EventDraft::new(
            "n".into(),
            serde_json::value::RawValue::from_string(r#"{"a":[1,"x"]}"#.into()).unwrap(),
            None,
        );
        let event = |channel: &str, epoch: &str, seq| {
            let channel = ChannelName::parse(channel).unwrap();
            let epoch = Epoch::from_client(epoch);
            let id = draft.id.clone();
            Event::build(
                channel,
                seq,
                epoch,
                &draft,
                id,
                1,
                tokio::time::Instant::now(),
            )
        };
        // Two channels, one resumed from a cursor, and an epoch that changes under the stream.
        let events = [
            event("a", "e1", 4),
            event("b", "e2", 1),
            event("a", "e1", 5),
            event("a", "e9", 1),
            event("b", "e2", 2),
        ];
        let resumed = Cursor::parse("a~e1~3", 8).unwrap();
        for chunked in [true, false] {
            let task = Mutex::new(resumed.clone());
            let direct = Arc::new(Mutex::new(resumed.clone()));
            for e in &events {
                let (by_task, by_publisher) =
                    crate::transport::sse_event_both_ways(&task, &direct, chunked, e);
                assert_eq!(
                    String::from_utf8_lossy(&frame_chunk(by_task, chunked)),
                    String::from_utf8_lossy(&by_publisher),
                    "chunked: {chunked}, {}~{}",
                    e.channel.as_str(),
                    e.seq
                );
            }
            assert_eq!(*task.lock(), *direct.lock(), "the positions moved alike");
        }
    }

    #[test]
    fn a_head_is_parsed_whole_and_one_with_a_body_is_refused() {
        let head = b"GET /v1/sse?channel=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: a~e~1\r\n\r\n";
        assert!(matches!(parse_head(&head[..20]), Ok(None)));
        let request = parse_head(head).ok().flatten().expect("a whole head");
        assert_eq!(request.uri(), "/v1/sse?channel=a");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["last-event-id"], "a~e~1");
        for refused in [
            &b"GET /v1/sse HTTP/1.1\r\nContent-Length: 3\r\n\r\n"[..],
            b"GET /v1/sse HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /v1/sse HTTP/1.1\r\n\r\nGET /",
            b"GET /v1/sse HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_head(refused),
                    Err(HeadError::Refused(ApiError::MalformedRequest(_)))
                ),
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn a_chunk_carries_its_size_in_hex() {
        let data = Bytes::from(vec![b'x'; 26]);
        let framed = frame_chunk(data.clone(), true);
        assert!(framed.starts_with(b"1a\r\nxx"));
        assert!(framed.ends_with(b"xx\r\n"));
        assert_eq!(frame_chunk(data.clone(), false), data);
        assert!(frame_chunk(Bytes::new(), true).is_empty());
    }
}
