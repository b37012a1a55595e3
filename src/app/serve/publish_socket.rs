//! A connection that opens with a POST to a publish route is a backend's kept-alive publisher,
//! and its requests are served here, one after another on the socket, rather than by hyper: a
//! publish is a small head and a small JSON body, and hyper's connection machinery (its parser's
//! header map, its dispatcher, the boxed body and its timers re-armed on every request) cost as
//! much as the publish itself.
//! - A head is parsed with `httparse` (hyper's own parser) under hyper's limits: 100 headers, a
//!   head of at most 408 KiB, the listener's header deadline, which also bounds the wait for the
//!   next request on a kept-alive connection. The body must then arrive whole within the body
//!   deadline.
//! - `POST /v1/publish` is served from the bytes it came in: the two headers its handler reads
//!   (`authorization`, `content-type`) and its body, with the handler's checks in the handler's
//!   order (`transport::publish_read`); no `http` request is built, and its `202` is written
//!   from the answer's JSON behind a fixed head. Any other request goes through the router. So
//!   authorization, validation, every error and every answer are the same as on hyper's path.
//! - The answer goes out in one write: status line, the router's headers, `content-length`,
//!   the body.
//!
//! Only the plain case is served: an HTTP/1.1 POST whose body has a `content-length` of at most
//! [`MAX_BODY`], without `Expect`, `Transfer-Encoding` or `Upgrade`. The first request that is
//! anything else is handed, with every byte read so far, to hyper, which serves the connection
//! from there on; so is a connection whose first request is not a publish.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use axum::response::IntoResponse;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::ServiceExt;

use super::{linger, write_head_start, Answer, Io, MAX_HEAD, MAX_HEADERS};
use crate::core::json;
use crate::ops::metrics::Metrics;
use crate::transport::wake::WakeFlag;
use crate::transport::wire::PublishAnswer;
use crate::transport::ApiError;
use crate::transport::{self, read_body};

/// What a connection's first request starts with when a backend publishes: understudy's own
/// publish routes and Pusher's HTTP API (`/apps/{id}/events`, `/apps/{id}/batch_events`).
const PUBLISH_REQUESTS: [&[u8]; 2] = [b"POST /v1/publish", b"POST /apps/"];

/// The largest body served here; a larger one is hyper's, which reads it as it streams in.
const MAX_BODY: usize = 64 * 1024;

/// The largest answer written here (every publish answer is a few hundred bytes).
const MAX_ANSWER: usize = 1024 * 1024;

/// How much the read buffer grows by when it is full.
const READ_CHUNK: usize = 4096;

/// Whether `start`, the first bytes of a connection, open a publish.
pub(super) fn is_publish(start: &[u8]) -> bool {
    PUBLISH_REQUESTS.iter().any(|p| start.starts_with(p))
}

/// The longest prefix [`is_publish`] looks at.
pub(super) const PEEK: usize = 16;

/// Deadlines of the requests on one connection.
#[derive(Clone, Copy)]
pub(super) struct Deadlines {
    pub(super) header: Duration,
    pub(super) body: Duration,
}

/// How [`serve`] left the connection.
pub(super) enum Served {
    /// Closed, or to be closed: the peer left, a deadline passed, the listener is closing.
    Done,
    /// A request to serve with hyper: the socket, and the bytes read from it so far.
    Hyper(Io, Bytes),
}

/// Serves the connection's requests while they are plain publishes. `head_by` is the first
/// request's header deadline, counted from the accept.
pub(super) async fn serve(
    io: Io,
    head_by: Instant,
    deadlines: Deadlines,
    answer: Answer,
    close: CancellationToken,
) -> Served {
    let mut conn = Conn {
        io,
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::new(),
        json: Vec::new(),
        closing: Box::pin(close.cancelled_owned()),
        close_flag: WakeFlag::default(),
        closed: false,
        timer: None,
    };
    let mut by = head_by;
    loop {
        let plain = match conn.next_request(by, deadlines.body).await {
            Next::Request(plain) => plain,
            Next::Hyper => return Served::Hyper(conn.io, conn.buf.freeze()),
            Next::Done => return Served::Done,
            Next::Refused(e) => {
                conn.refuse(e).await;
                return Served::Done;
            }
        };
        let keep_alive = plain.keep_alive;
        let reply = match &answer.publish {
            // A publish (nearly every request here) read where it lies: the two headers its
            // handler reads and its body, with no `http` request built, and its answer written
            // without a response built.
            Some(state) if plain.target() == b"/v1/publish" => {
                let body = plain.body();
                let authorization = plain.authorization();
                let content_type = plain.content_type();
                match transport::publish_read(state, authorization, content_type, body).await {
                    Ok(published) => Reply::Accepted(published),
                    Err(e) => Reply::Response(e.into_response()),
                }
            }
            publish => {
                let request = match plain.into_request() {
                    Ok(request) => request,
                    Err(e) => {
                        conn.refuse(e).await;
                        return Served::Done;
                    }
                };
                Reply::Response(match publish {
                    // The route the router would take to the same handler, without the routing,
                    // the boxing of the handler's future and the headers the router adds.
                    Some(state) if request.uri().path() == "/v1/publish" => {
                        transport::publish_direct(state.clone(), request).await
                    }
                    _ => {
                        let Ok(response) = answer.router.clone().oneshot(request).await;
                        response
                    }
                })
            }
        };
        let keep_alive = keep_alive && !conn.close_asked().await;
        let written = match reply {
            Reply::Accepted(published) => conn.accepted(&published, keep_alive).await,
            Reply::Response(response) => conn.answer(response, keep_alive).await,
        };
        if written.is_err() || !keep_alive {
            let _ = conn.io.shutdown().await;
            return Served::Done;
        }
        by = Instant::now() + deadlines.header;
    }
}

/// The answer to a request served here.
enum Reply {
    /// A publish's, `202 Accepted`.
    Accepted(PublishAnswer),
    /// Any other.
    Response(Response<Body>),
}

struct Conn {
    io: Io,
    /// What was read and not yet served: the start of the next request, or pipelined ones.
    buf: BytesMut,
    /// An answer on its way out; kept for the next one.
    out: Vec<u8>,
    /// A publish's answer's JSON, written before its head (which gives its length).
    json: Vec<u8>,
    /// The listener's close, looked at only after it woke the task ([`WakeFlag`]).
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
    close_flag: WakeFlag,
    closed: bool,
    /// The deadline of the wait in progress, armed lazily (see [`Conn::poll_deadline`]).
    timer: Option<Pin<Box<Sleep>>>,
}

enum Next {
    Request(Plain),
    Hyper,
    Done,
    Refused(ApiError),
}

/// A request this module serves, whole: its bytes, and where its target and headers sit in
/// them. A publish is served from these; the `http` request is built only for the router.
struct Plain {
    /// The head and the body.
    frame: Bytes,
    head_len: usize,
    target: Span,
    /// Names and values, in the head's order.
    headers: Vec<(Span, Span)>,
    /// The values a publish reads: the first of each name.
    authorization: Option<Span>,
    content_type: Option<Span>,
    keep_alive: bool,
}

/// Where a piece of a head sits in its frame: start and length.
type Span = (usize, usize);

impl Plain {
    fn at(&self, (start, len): Span) -> &[u8] {
        &self.frame[start..start + len]
    }

    /// The request target, as sent.
    fn target(&self) -> &[u8] {
        self.at(self.target)
    }

    fn authorization(&self) -> Option<&[u8]> {
        self.authorization.map(|v| self.at(v))
    }

    fn content_type(&self) -> Option<&[u8]> {
        self.content_type.map(|v| self.at(v))
    }

    fn body(&self) -> &[u8] {
        &self.frame[self.head_len..]
    }

    /// The request as the router takes it: its header values and body share the frame's bytes.
    fn into_request(self) -> Result<Request<Body>, ApiError> {
        let malformed = |why: &str| ApiError::MalformedRequest(why.to_string());
        let slice = |(start, len): Span| self.frame.slice(start..start + len);
        let Ok(uri) = Uri::from_maybe_shared(slice(self.target)) else {
            return Err(malformed("the request target is not a valid path"));
        };
        let mut map = HeaderMap::with_capacity(self.headers.len());
        for &(name, value) in &self.headers {
            // httparse takes the same characters in names and values as `http`'s types, and
            // `take_request` held names to their length: these refusals are for safety only.
            let Ok(name) = HeaderName::from_bytes(self.at(name)) else {
                return Err(malformed("a header name is not a valid token"));
            };
            let Ok(value) = HeaderValue::from_maybe_shared(slice(value)) else {
                return Err(malformed("a header value holds a control character"));
            };
            map.append(name, value);
        }
        let mut request = Request::new(Body::from(self.frame.slice(self.head_len..)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = map;
        Ok(request)
    }
}

/// What a read brought.
enum Read {
    /// Some bytes.
    More,
    /// The peer closed its side, or the socket failed.
    Gone,
    /// The deadline passed.
    TimedOut,
    /// The listener is closing (looked at only between requests).
    Closing,
}

impl Conn {
    /// The next request, whole: its head by `head_by`, its body within `body` of the head.
    async fn next_request(&mut self, head_by: Instant, body: Duration) -> Next {
        loop {
            match take_request(&mut self.buf) {
                Take::Request(plain) => return Next::Request(plain),
                Take::Hyper => return Next::Hyper,
                Take::Refused(e) => return Next::Refused(e),
                Take::Partial { whole: None } => {
                    if self.buf.len() >= MAX_HEAD {
                        return Next::Refused(ApiError::HeadTooLarge(MAX_HEAD));
                    }
                    let between = self.buf.is_empty();
                    match self.read_more(head_by, between, MAX_HEAD).await {
                        Read::More => {}
                        Read::Gone | Read::Closing => return Next::Done,
                        Read::TimedOut => {
                            Metrics::connection_timed_out("header").increment(1);
                            return Next::Done;
                        }
                    }
                }
                Take::Partial { whole: Some(total) } => {
                    // The head is parsed again only once the whole body is in.
                    let by = Instant::now() + body;
                    while self.buf.len() < total {
                        match self.read_more(by, false, total).await {
                            Read::More => {}
                            Read::Gone | Read::Closing => return Next::Done,
                            Read::TimedOut => {
                                Metrics::connection_timed_out("body").increment(1);
                                return Next::Refused(ApiError::BodyTimeout(body));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads what has arrived, waiting for it until `by`. `up_to` bounds how far the buffer
    /// grows. `between` requests, the listener's close ends the wait too.
    async fn read_more(&mut self, by: Instant, between: bool, up_to: usize) -> Read {
        // A read never takes the buffer past `up_to` (at least one byte is asked for, so a
        // peer's close is told from a full buffer): `reserve` may allocate more than asked.
        let room = up_to.saturating_sub(self.buf.len()).clamp(1, READ_CHUNK);
        self.buf.reserve(room);
        poll_fn(|cx| {
            let mut limited = (&mut self.buf).limit(room);
            let read = pin!(self.io.read_buf(&mut limited)).poll(cx);
            match read {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Read::Gone),
                Poll::Ready(Ok(_)) => return Poll::Ready(Read::More),
                Poll::Pending => {}
            }
            if between && self.poll_close(cx).is_ready() {
                return Poll::Ready(Read::Closing);
            }
            self.poll_deadline(cx, by).map(|()| Read::TimedOut)
        })
        .await
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.closed {
            return Poll::Ready(());
        }
        let closing = &mut self.closing;
        if self
            .close_flag
            .poll(cx, |cx| closing.as_mut().poll(cx))
            .is_ready()
        {
            self.closed = true;
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Whether the listener asked to close, without waiting for it.
    async fn close_asked(&mut self) -> bool {
        poll_fn(|cx| Poll::Ready(self.poll_close(cx).is_ready())).await
    }

    /// Ready once `by` has passed. The timer is armed once and moved only when it would fire
    /// late: a kept-alive connection's deadline moves on with every request, and rather than
    /// re-arm a timer per request, one that fires early is set again to the deadline then due.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, by: Instant) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(by)));
        if timer.deadline() > by {
            timer.as_mut().reset(by);
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= by {
                return Poll::Ready(());
            }
            timer.as_mut().reset(by);
        }
    }

    /// Writes `response`, with `connection: close` unless the connection is kept.
    async fn answer(&mut self, response: Response<Body>, keep_alive: bool) -> io::Result<()> {
        let (parts, body) = response.into_parts();
        let body = read_body(&HeaderMap::new(), body, MAX_ANSWER)
            .await
            .map_err(|_| io::Error::other("the answer's body could not be read"))?;
        self.out.clear();
        write_head_start(&mut self.out, parts.status, &parts.headers);
        finish_answer(&mut self.out, &body, keep_alive);
        self.write_out().await
    }

    /// Writes a publish's `202 Accepted`: the bytes [`Conn::answer`] writes for the response
    /// `PublishAnswer::into_response` builds.
    async fn accepted(&mut self, published: &PublishAnswer, keep_alive: bool) -> io::Result<()> {
        self.json.clear();
        published.write_json(&mut self.json);
        self.out.clear();
        self.out.extend_from_slice(ACCEPTED_HEAD);
        finish_answer(&mut self.out, &self.json, keep_alive);
        if self.json.capacity() > READ_CHUNK {
            self.json = Vec::new();
        }
        self.write_out().await
    }

    async fn write_out(&mut self) -> io::Result<()> {
        let written = self.io.write_all(&self.out).await;
        if self.out.capacity() > READ_CHUNK {
            self.out = Vec::new();
        }
        written
    }

    /// Answers a request that cannot be served and closes; the peer is given a moment to stop
    /// sending, so a reset does not eat the answer (as for a refused SSE head).
    async fn refuse(&mut self, e: ApiError) {
        if self.answer(e.into_response(), false).await.is_ok() {
            let _ = self.io.shutdown().await;
            linger(&mut self.io).await;
        }
    }
}

/// The head of a publish's answer, up to its length: the status and headers
/// `PublishAnswer::into_response` gives.
const ACCEPTED_HEAD: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n";

/// Ends an answer's head after its own headers, and appends its body.
fn finish_answer(out: &mut Vec<u8>, body: &[u8], keep_alive: bool) {
    out.extend_from_slice(b"content-length: ");
    json::push_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// What the buffer holds.
enum Take {
    /// A whole plain request, taken off the buffer.
    Request(Plain),
    /// Not all of it yet: `whole` is the request's length, head and body, once its head is in.
    Partial { whole: Option<usize> },
    /// A request to leave to hyper (nothing was taken off the buffer).
    Hyper,
    /// A head that cannot be served.
    Refused(ApiError),
}

/// Takes the request at the start of `buf` if it is whole and plain.
fn take_request(buf: &mut BytesMut) -> Take {
    let malformed = |why: &str| Take::Refused(ApiError::MalformedRequest(why.to_string()));
    // Uninitialised: zeroing a hundred headers would cost more than parsing a publish's head.
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let head_len = match parsed.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => {
            return Take::Refused(ApiError::HeadTooLarge(MAX_HEAD))
        }
        Ok(httparse::Status::Partial) => return Take::Partial { whole: None },
        Err(httparse::Error::TooManyHeaders) => {
            return Take::Refused(ApiError::HeadTooLarge(MAX_HEAD))
        }
        // hyper says what is wrong with it, as before.
        Err(_) => return Take::Hyper,
    };
    if parsed.method != Some("POST") || parsed.version != Some(1) {
        return Take::Hyper;
    }
    let mut length: Option<usize> = None;
    let mut keep_alive = true;
    // The first `authorization` and `content-type`, as `HeaderMap::get` finds them.
    let (mut authorization, mut content_type) = (None, None);
    for (i, h) in parsed.headers.iter().enumerate() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"authorization") {
            authorization.get_or_insert(i);
        } else if name.eq_ignore_ascii_case(b"content-type") {
            content_type.get_or_insert(i);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // Digits only: `usize`'s parser would also take a sign.
            let digits = !h.value.is_empty() && h.value.iter().all(u8::is_ascii_digit);
            let value = digits
                .then(|| std::str::from_utf8(h.value).ok()?.parse().ok())
                .flatten();
            match (length, value) {
                (None, Some(n)) => length = Some(n),
                // Two lengths, or one that is not a number: hyper refuses it.
                _ => return Take::Hyper,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Take::Hyper;
        } else if name.eq_ignore_ascii_case(b"connection") {
            if h.value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if !h.value.eq_ignore_ascii_case(b"keep-alive") {
                return Take::Hyper;
            }
        }
    }
    let Some(length) = length.filter(|&n| n <= MAX_BODY) else {
        return Take::Hyper;
    };
    let total = head_len + length;
    if buf.len() < total {
        return Take::Partial { whole: Some(total) };
    }
    // `http` refuses a header name longer than this, and nothing else httparse takes.
    if (parsed.headers.iter()).any(|h| h.name.len() > MAX_HEADER_NAME) {
        return malformed("a header name is not a valid token");
    }
    // Note where the target and each name and value sit, then take the request off the buffer.
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let target = at(parsed.path.unwrap_or("/").as_bytes());
    let headers: Vec<_> = (parsed.headers.iter())
        .map(|h| (at(h.name.as_bytes()), at(h.value)))
        .collect();
    let value = |i: Option<usize>| i.map(|i: usize| headers[i].1);
    Take::Request(Plain {
        authorization: value(authorization),
        content_type: value(content_type),
        frame: buf.split_to(total).freeze(),
        head_len,
        target,
        headers,
        keep_alive,
    })
}

/// The longest header name `http`'s `HeaderName` takes.
const MAX_HEADER_NAME: usize = (1 << 16) - 1;

/// A request in arbitrary bytes, as [`take_request`] takes it off a connection's buffer: what
/// it took and what it left, for the fuzz target to check.
#[cfg(fuzzing)]
pub(crate) fn fuzz_take(data: &[u8]) -> FuzzTaken {
    let mut buf = BytesMut::from(data);
    match take_request(&mut buf) {
        Take::Request(plain) => {
            let publish = plain.target() == b"/v1/publish";
            let read = [plain.authorization(), plain.content_type()].map(|v| v.map(<[u8]>::to_vec));
            let request = match plain.into_request() {
                Ok(request) => request,
                Err(e) => return FuzzTaken::Refused(e),
            };
            // What a publish is served from without its request is what the request holds.
            if publish {
                assert_eq!(request.uri().path(), "/v1/publish");
                assert_eq!(request.uri().query(), None);
            }
            let held = |name| request.headers().get(name).map(|v| v.as_bytes().to_vec());
            assert_eq!(read, [held("authorization"), held("content-type")]);
            let (parts, body) = request.into_parts();
            let body =
                futures_util::FutureExt::now_or_never(axum::body::to_bytes(body, usize::MAX))
                    .expect("a body in memory is ready")
                    .expect("a body in memory reads");
            FuzzTaken::Request {
                headers: parts.headers.len(),
                body,
                left: buf.len(),
            }
        }
        Take::Partial { .. } | Take::Hyper => FuzzTaken::Nothing { left: buf.len() },
        Take::Refused(e) => FuzzTaken::Refused(e),
    }
}

#[cfg(fuzzing)]
pub(crate) enum FuzzTaken {
    Request {
        headers: usize,
        body: Bytes,
        left: usize,
    },
    Nothing {
        left: usize,
    },
    Refused(ApiError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &str, body: &str) -> String {
        format!(
            "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn a_whole_plain_request_is_taken_and_what_follows_is_left() {
        let first = request("Authorization: Bearer k\r\n", "{\"a\":1}");
        let mut buf = BytesMut::from(format!("{first}POST /v1/pu").as_bytes());
        let Take::Request(plain) = take_request(&mut buf) else {
            panic!("a whole request")
        };
        assert!(plain.keep_alive);
        assert_eq!(&buf[..], b"POST /v1/pu");
        assert_eq!(plain.target(), b"/v1/publish");
        assert_eq!(plain.authorization(), Some(&b"Bearer k"[..]));
        assert_eq!(plain.content_type(), None);
        assert_eq!(plain.body(), b"{\"a\":1}");
        let (parts, body) = plain.into_request().unwrap().into_parts();
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri, "/v1/publish");
        assert_eq!(parts.headers["authorization"], "Bearer k");
        assert_eq!(parts.headers.len(), 3);
        let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(body, 1024))
            .unwrap()
            .unwrap();
        assert_eq!(&body[..], b"{\"a\":1}");
        assert!(matches!(
            take_request(&mut buf),
            Take::Partial { whole: None }
        ));
        assert_eq!(&buf[..], b"POST /v1/pu", "nothing taken");
    }

    #[test]
    fn a_request_waits_for_its_whole_body_and_says_how_long_it_is() {
        let whole = request("", "0123456789");
        let mut buf = BytesMut::from(&whole.as_bytes()[..whole.len() - 4]);
        assert!(
            matches!(take_request(&mut buf), Take::Partial { whole: Some(n) } if n == whole.len())
        );
        assert_eq!(buf.len(), whole.len() - 4, "nothing taken");
    }

    #[test]
    fn anything_but_a_plain_request_is_left_to_hyper_untouched() {
        let big = "x".repeat(MAX_BODY + 1);
        for other in [
            request("Transfer-Encoding: chunked\r\n", ""),
            request("Expect: 100-continue\r\n", "{}"),
            request("Upgrade: websocket\r\n", "{}"),
            request("Connection: upgrade\r\n", "{}"),
            request("Content-Length: 2\r\n", "{}"),
            request("", &big),
            "POST /v1/publish HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}".into(),
            "POST /v1/publish HTTP/1.1\r\n\r\n".into(),
            "POST /v1/publish HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}".into(),
            "GET /healthz HTTP/1.1\r\n\r\n".into(),
            "POST /v1/publish HTTP/1.1\r\nBad Name: x\r\n\r\n".into(),
        ] {
            let mut buf = BytesMut::from(other.as_bytes());
            assert!(
                matches!(take_request(&mut buf), Take::Hyper),
                "{}",
                other.escape_debug()
            );
            assert_eq!(&buf[..], other.as_bytes(), "nothing taken");
        }
    }

    #[test]
    fn the_first_of_a_repeated_header_is_read_as_a_header_map_reads_it() {
        let head = "Content-Type: text/plain\r\ncontent-type: application/json\r\n";
        let mut buf = BytesMut::from(request(head, "{}").as_bytes());
        let Take::Request(plain) = take_request(&mut buf) else {
            panic!("a whole request")
        };
        assert_eq!(plain.content_type(), Some(&b"text/plain"[..]));
        let request = plain.into_request().unwrap();
        assert_eq!(request.headers()["content-type"], "text/plain");
    }

    #[test]
    fn a_header_name_http_would_refuse_is_refused() {
        let long = format!("{}: x\r\n", "n".repeat(MAX_HEADER_NAME + 1));
        let mut buf = BytesMut::from(request(&long, "{}").as_bytes());
        let Take::Refused(e) = take_request(&mut buf) else {
            panic!("refused")
        };
        assert_eq!(e.code(), "malformed_request");
        assert!(HeaderName::from_bytes(&[b'n'; MAX_HEADER_NAME + 1]).is_err());
        let at_limit = format!("{}: x\r\n", "n".repeat(MAX_HEADER_NAME));
        let mut buf = BytesMut::from(request(&at_limit, "{}").as_bytes());
        let Take::Request(plain) = take_request(&mut buf) else {
            panic!("a whole request")
        };
        assert!(plain.into_request().is_ok());
    }

    #[tokio::test]
    async fn a_publish_is_answered_with_the_bytes_of_its_response() {
        use crate::core::{ChannelName, Epoch};
        use crate::transport::wire::PublishResult;
        let published = || {
            PublishAnswer::One(PublishResult {
                channel: ChannelName::parse("room-1").unwrap(),
                duplicate: false,
                epoch: Epoch::from_client("e1"),
                id: "id-1".into(),
                seq: 7,
            })
        };
        for keep_alive in [true, false] {
            let mut direct = ACCEPTED_HEAD.to_vec();
            let mut json = Vec::new();
            published().write_json(&mut json);
            finish_answer(&mut direct, &json, keep_alive);
            let (parts, body) = published().into_response().into_parts();
            let body = read_body(&HeaderMap::new(), body, MAX_ANSWER)
                .await
                .unwrap();
            let mut built = Vec::new();
            write_head_start(&mut built, parts.status, &parts.headers);
            finish_answer(&mut built, &body, keep_alive);
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(built).unwrap()
            );
        }
    }

    #[test]
    fn connection_close_is_seen_and_a_head_too_large_refused() {
        let mut buf = BytesMut::from(request("connection: Close\r\n", "{}").as_bytes());
        let Take::Request(plain) = take_request(&mut buf) else {
            panic!("a whole request")
        };
        assert!(!plain.keep_alive);
        let huge = request(&format!("X-Huge: {}\r\n", "x".repeat(MAX_HEAD)), "{}");
        let mut buf = BytesMut::from(huge.as_bytes());
        assert!(matches!(
            take_request(&mut buf),
            Take::Refused(ApiError::HeadTooLarge(_))
        ));
    }
}
