//! SSE subscriber: a streaming `GET /v1/sse` and an incremental `text/event-stream` parser
//! that yields the `data` of unnamed events and skips comments, `id:`, `retry:` and named
//! events (`event: heartbeat`).

use anyhow::{bail, Context, Result};
use reqwest::Url;

use super::{CloseInfo, Incoming};

pub(crate) struct SseConnection {
    response: reqwest::Response,
    parser: SseParser,
}

impl SseConnection {
    pub(crate) async fn open(http: &reqwest::Client, url: Url) -> Result<Self> {
        let response = http
            .get(url)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .context("SSE request failed")?;
        let status = response.status();
        if status.as_u16() != 200 {
            let body = response.bytes().await.unwrap_or_default();
            return Err(super::ws::Refused::of(status.as_u16(), &body).into());
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with("text/event-stream") {
            bail!("SSE answered Content-Type {content_type:?}, not text/event-stream");
        }
        Ok(Self {
            response,
            parser: SseParser::default(),
        })
    }

    pub(crate) async fn next(&mut self) -> Result<Incoming<'_>> {
        loop {
            if self.parser.advance() {
                let (data, id) = self.parser.message();
                return Ok(Incoming::Message(data, id));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.parser.feed(&chunk),
                Ok(None) => {
                    return Ok(Incoming::Closed(CloseInfo {
                        code: None,
                        reason: "stream ended".into(),
                    }))
                }
                Err(e) => {
                    return Ok(Incoming::Closed(CloseInfo {
                        code: None,
                        reason: format!("read error: {e}"),
                    }))
                }
            }
        }
    }
}

/// Incremental `text/event-stream` parser (the WHATWG algorithm, minus what the tool ignores).
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes received and not yet consumed, from `pos` on.
    buf: Vec<u8>,
    pos: usize,
    /// `data` of the event being assembled (lines joined by `\n`).
    data: Vec<u8>,
    /// `id` of the event being assembled, if it had one.
    id: Option<Vec<u8>>,
    has_data: bool,
    /// The event being assembled has an `event:` name other than `message`.
    named: bool,
    /// `data` holds the last dispatched message and must be cleared before reuse.
    dispatched: bool,
}

impl SseParser {
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Consumes lines until an unnamed event with data is complete; then [`Self::message`]
    /// returns it. `false` when more input is needed.
    pub(crate) fn advance(&mut self) -> bool {
        if self.dispatched {
            self.data.clear();
            self.id = None;
            self.dispatched = false;
        }
        while let Some(nl) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
            let mut line = &self.buf[self.pos..self.pos + nl];
            self.pos += nl + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() {
                let ready = self.has_data && !self.named;
                self.has_data = false;
                self.named = false;
                if ready {
                    self.dispatched = true;
                    return true;
                }
                self.data.clear();
                self.id = None;
                continue;
            }
            if line[0] == b':' {
                continue; // comment
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let value = &line[i + 1..];
                    (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            match field {
                b"data" => {
                    if self.has_data {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                    self.has_data = true;
                }
                b"event" => self.named = !value.is_empty() && value != b"message",
                b"id" => self.id = Some(value.to_vec()),
                _ => {} // retry, unknown fields
            }
        }
        false
    }

    /// The message [`Self::advance`] completed, and its `id:` if it had one.
    pub(crate) fn message(&self) -> (&[u8], Option<&[u8]>) {
        (&self.data, self.id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(chunks: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            p.feed(chunk);
            while p.advance() {
                out.push(String::from_utf8(p.message().0.to_vec()).unwrap());
            }
        }
        out
    }

    #[test]
    fn yields_unnamed_events_and_skips_the_rest() {
        let stream = b"retry: 2000\n\nid: a~e~17\ndata: {\"type\":\"subscribed\"}\n\n\
            : heartbeat\nevent: heartbeat\ndata: {\"type\":\"heartbeat\",\"ts\":1}\n\n\
            id: a~e~18\r\ndata: {\"type\":\"event\",\"seq\":18}\r\n\r\n";
        assert_eq!(
            messages(&[stream]),
            [
                "{\"type\":\"subscribed\"}",
                "{\"type\":\"event\",\"seq\":18}"
            ]
        );
    }

    #[test]
    fn reassembles_across_chunk_boundaries_and_joins_data_lines() {
        let stream: &[u8] = b"data: one\ndata:two\n\nevent: message\ndata: three\n\n";
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(messages(&[a, b]), ["one\ntwo", "three"], "split at {split}");
        }
    }

    #[test]
    fn keeps_each_events_id() {
        let mut p = SseParser::default();
        p.feed(b"id: a~e~1\ndata: one\n\ndata: two\n\n");
        assert!(p.advance());
        assert_eq!(p.message(), (&b"one"[..], Some(&b"a~e~1"[..])));
        assert!(p.advance());
        assert_eq!(p.message(), (&b"two"[..], None));
    }

    #[test]
    fn waits_for_the_blank_line() {
        assert!(messages(&[b"data: partial\n"]).is_empty());
    }
}
