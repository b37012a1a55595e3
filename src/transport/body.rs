//! Reading a request body: content type, size limit and read deadline, then parsing JSON with
//! errors that name the line, column or field at fault.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::deadline::BodyTimedOut;
use super::ApiError;

/// Checks the content type and reads at most `limit` bytes.
pub(crate) async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    read_body(headers, body, limit).await
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
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let e = e.into_inner();
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
    })
}

/// Parses JSON, telling syntax errors (400, with line and column) from schema errors (422,
/// naming the field).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
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
