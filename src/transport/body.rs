//! Reading a request body: content type, size limit and read deadline, then parsing JSON with
//! errors that name the line, column or field at fault.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;

use super::deadline::BodyTimedOut;
use super::ApiError;

/// Checks the content type and reads at most `limit` bytes.
pub(crate) async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    if !is_json(headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes())) {
        return Err(ApiError::UnsupportedMediaType);
    }
    read_body(headers, body, limit).await
}

/// Whether a `content-type` header's value says JSON: `application/json`, with any parameters.
pub(crate) fn is_json(content_type: Option<&[u8]>) -> bool {
    content_type
        .and_then(header_text)
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// A header's value as text, as `HeaderValue::to_str` reads it: visible ASCII and tabs only, so a
/// value read from a head's bytes and one read from a `HeaderMap` are taken or refused alike.
pub(crate) fn header_text(value: &[u8]) -> Option<&str> {
    let visible = value.iter().all(|&b| (32..127).contains(&b) || b == b'\t');
    // Visible ASCII is UTF-8.
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// Reads at most `limit` bytes of any content type (the caller has checked it).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    // The frames are gathered by hand: a body that arrives in one frame (nearly every publish)
    // is that frame's bytes, with none of `Collect`'s buffer list and trailers to build and drop.
    let mut body = http_body_util::Limited::new(body, limit);
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|e| unreadable(e, limit))?.into_data() else {
            continue; // trailers
        };
        match &first {
            None => first = Some(data),
            Some(head) => {
                if joined.is_empty() {
                    joined.extend_from_slice(head);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(if joined.is_empty() {
        first.unwrap_or_default()
    } else {
        Bytes::from(joined)
    })
}

/// What a body that could not be read is answered: over the limit, past its deadline, or gone.
fn unreadable(e: Box<dyn std::error::Error + Send + Sync>, limit: usize) -> ApiError {
    if e.downcast_ref::<http_body_util::LengthLimitError>()
        .is_some()
    {
        return ApiError::PayloadTooLarge(limit);
    }
    // The deadline's error sits under the body's own wrappers.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
    while let Some(c) = cause {
        if let Some(BodyTimedOut(limit)) = c.downcast_ref::<BodyTimedOut>() {
            return ApiError::BodyTimeout(*limit);
        }
        cause = c.source();
    }
    ApiError::BodyUnreadable
}

/// Parses JSON, telling syntax errors (400, with line and column) from schema errors (422,
/// naming the field).
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    // Most bodies parse: tracking the path costs about a third of the parse, so it is paid only
    // to name the field of a body that failed (parsing the same bytes fails the same way).
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut *de);
    let value = parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg);
                if path == "." || path.is_empty() {
                    ApiError::InvalidField(msg.to_string())
                } else {
                    ApiError::InvalidField(format!("field {path}: {msg}"))
                }
            }
            _ => ApiError::InvalidJson(inner.to_string()),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::InvalidJson(format!("{e}; send exactly one JSON value")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::wire::PublishBody;

    /// A body sent as `chunks`, one frame each, with no declared length.
    fn chunked(chunks: &[&'static str]) -> Body {
        let frames = chunks
            .iter()
            .map(|c| Ok::<_, std::io::Error>(Bytes::from(*c)));
        Body::from_stream(futures_util::stream::iter(frames.collect::<Vec<_>>()))
    }

    #[tokio::test]
    async fn a_body_is_read_whole_from_one_frame_or_several_and_held_to_its_limit() {
        let headers = HeaderMap::new();
        let read = |chunks: &[&'static str], limit| read_body(&headers, chunked(chunks), limit);
        assert_eq!(read(&["{\"a\":1}"], 64).await.unwrap(), "{\"a\":1}");
        assert_eq!(
            read(&["", "{\"a\"", "", ":1}"], 64).await.unwrap(),
            "{\"a\":1}"
        );
        assert_eq!(read(&["ab", "", ""], 64).await.unwrap(), "ab");
        assert_eq!(read(&[], 64).await.unwrap(), "");
        assert_eq!(read(&["abcd", "ef"], 6).await.unwrap(), "abcdef");
        let over = read(&["abcd", "efg"], 6).await.unwrap_err();
        assert_eq!(over.code(), "payload_too_large");
    }

    #[test]
    fn header_text_and_json_content_types_are_read_as_a_header_map_reads_them() {
        let values: [&[u8]; 9] = [
            b"application/json",
            b"Application/JSON; charset=utf-8",
            b" application/json ;x",
            b"application/json\tx",
            b"text/plain",
            b"application/jsonx",
            b"application/json\x80",
            b"application/json\xc3\xa9",
            b"",
        ];
        for value in values {
            let header = axum::http::HeaderValue::from_bytes(value).unwrap();
            assert_eq!(header_text(value), header.to_str().ok(), "{value:?}");
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, header);
            let read =
                futures_util::FutureExt::now_or_never(read_json_body(&headers, Body::empty(), 8))
                    .unwrap();
            assert_eq!(is_json(Some(value)), read.is_ok(), "{value:?}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = parse_json::<PublishBody>(b"{\n  \"channel\": \"a\",,\n}").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        assert!(err.to_string().contains("line 2 column"), "{err}");
    }

    #[test]
    fn schema_errors_name_the_field() {
        let err = parse_json::<PublishBody>(br#"{"channel": 5, "name": "x"}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_field");
        assert!(err.to_string().contains("channel"), "{err}");
        let err = parse_json::<PublishBody>(br#"{"channel": "a"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `name`"), "{err}");
        let err = parse_json::<PublishBody>(br#"{"name":"x","chanel":"a"}"#).unwrap_err();
        assert!(err.to_string().contains("chanel"), "{err}");
    }
}
