//! Ably messages as the SDKs send them (one message or an array, JSON or msgpack), checked
//! whole and turned into what understudy stores: a name, JSON data and an idempotency id.
//!
//! `data` after undoing `encoding` (applied right to left: `base64`, `utf-8`, `json`):
//! - text is stored as a JSON string;
//! - a JSON object or array (given as one, or as text with `encoding: "json"`) is stored as that
//!   JSON value;
//! - binary (msgpack `bin`, or text with `encoding: "base64"`) is stored as its standard base64
//!   text, a JSON string: understudy's events carry JSON;
//! - no data is stored as `null`.
//!
//! Refused (400 40013): encrypted (`cipher+...`) and delta (`vcdiff`) encodings, which understudy
//! cannot read, and numbers or booleans as data, which the SDKs refuse too. `clientId` is checked
//! against a token's, then not stored; `extras`, `timestamp`, `connectionKey` and other fields
//! are ignored (`extras` still counts toward the size, as on Ably).

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::AblyError;
use super::Format;
use crate::auth::ably::Credential;

/// Largest total size of the messages of one request, counted as Ably counts it (name,
/// clientId, extras as JSON, data bytes): Ably's default limit, 64 KiB.
pub(crate) const MAX_MESSAGES_BYTES: usize = 64 * 1024;
const MAX_NAME_LEN: usize = 200;
const MAX_ID_LEN: usize = 200;

/// One message as sent. Unknown fields are ignored, as Ably does.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WireMessage {
    name: Option<String>,
    data: Data,
    encoding: Option<String>,
    id: Option<String>,
    client_id: Option<String>,
    extras: Option<serde_json::Value>,
}

/// `data` as it came: text, bytes, a JSON structure, or something understudy refuses.
#[derive(Debug, Default, PartialEq)]
enum Data {
    #[default]
    Absent,
    Text(String),
    Binary(Vec<u8>),
    Json(serde_json::Value),
    /// A number or a boolean, named for the refusal.
    Other(&'static str),
}

/// A message checked and ready to publish.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) name: Arc<str>,
    pub(crate) data: Box<RawValue>,
    pub(crate) id: Option<Arc<str>>,
}

/// Decodes a body holding one message or an array of at most `max` messages.
pub(crate) fn decode(
    format: Format,
    bytes: &[u8],
    max: usize,
) -> Result<Vec<WireMessage>, AblyError> {
    let too_many = Cell::new(false);
    let seed = Messages {
        max,
        too_many: &too_many,
    };
    let decoded = match format {
        Format::Json => {
            let de = &mut serde_json::Deserializer::from_slice(bytes);
            seed.deserialize(&mut *de)
                .and_then(|m| de.end().map(|()| m))
                .map_err(|e| match e.classify() {
                    serde_json::error::Category::Data => AblyError::InvalidParameter(format!(
                        "the body is not an Ably message or array of messages: {e}"
                    )),
                    _ => AblyError::BadRequest(format!("the body is not valid JSON: {e}")),
                })
        }
        Format::Msgpack => {
            let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
            seed.deserialize(&mut de).map_err(|e| {
                AblyError::BadRequest(format!(
                    "the body is not msgpack of an Ably message or array of messages: {e}"
                ))
            })
        }
    };
    if too_many.get() {
        return Err(AblyError::InvalidParameter(format!(
            "at most {max} messages per request (publish.max_batch_events); split the publish"
        )));
    }
    let messages = decoded?;
    if messages.is_empty() {
        return Err(AblyError::InvalidParameter(
            "the array holds no message; send at least one".into(),
        ));
    }
    Ok(messages)
}

/// Checks every message (nothing is published unless all pass) against the credential and the
/// limits, and turns it into what understudy stores.
pub(crate) fn prepare(
    messages: Vec<WireMessage>,
    credential: &Credential,
) -> Result<Vec<Prepared>, AblyError> {
    let mut size = 0;
    let mut prepared = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let at = |what: String| format!("message {i}: {what}");
        size += m.size();
        let name = m.name.unwrap_or_default();
        if name.chars().count() > MAX_NAME_LEN {
            return Err(AblyError::InvalidParameter(at(format!(
                "name must be at most {MAX_NAME_LEN} characters"
            ))));
        }
        if let Some(id) = &m.id {
            if id.is_empty() || id.chars().count() > MAX_ID_LEN || id.chars().any(char::is_control)
            {
                return Err(AblyError::InvalidParameter(at(format!(
                    "id must be 1 to {MAX_ID_LEN} printable characters"
                ))));
            }
        }
        if let Some(client_id) = m.client_id.as_deref() {
            let allowed = credential.client_id.as_deref();
            if client_id == "*" || allowed.is_some_and(|a| a != "*" && a != client_id) {
                return Err(AblyError::ClientIdMismatch(at(format!(
                    "clientId {client_id:?} is not the credentials' clientId"
                ))));
            }
        }
        let data = decode_data(m.data, m.encoding.as_deref()).map_err(|e| match e {
            AblyError::InvalidData(m) => AblyError::InvalidData(at(m)),
            other => other,
        })?;
        prepared.push(Prepared {
            name: Arc::from(name),
            data,
            id: m.id.map(Arc::from),
        });
    }
    if size > MAX_MESSAGES_BYTES {
        return Err(AblyError::TooLarge(size));
    }
    Ok(prepared)
}

impl WireMessage {
    /// The size Ably counts: name, clientId, extras as JSON text, and data bytes as sent.
    fn size(&self) -> usize {
        let extras = (self.extras.as_ref()).map_or(0, |e| e.to_string().len());
        let data = match &self.data {
            Data::Text(t) => t.len(),
            Data::Binary(b) => b.len(),
            Data::Json(v) => v.to_string().len(),
            Data::Absent | Data::Other(_) => 0,
        };
        self.name.as_ref().map_or(0, String::len)
            + self.client_id.as_ref().map_or(0, String::len)
            + extras
            + data
    }
}

/// Undoes `encoding` and answers the JSON to store (see the module documentation).
fn decode_data(data: Data, encoding: Option<&str>) -> Result<Box<RawValue>, AblyError> {
    let invalid = |m: String| AblyError::InvalidData(m);
    let steps: Vec<&str> = (encoding.unwrap_or_default().split('/'))
        .filter(|s| !s.is_empty())
        .collect();
    // Every step is checked before any is undone, so the refusal names the step at fault.
    if let Some(step) =
        (steps.iter()).find(|s| !matches!(**s, "base64" | "utf-8" | "utf8" | "json"))
    {
        return Err(invalid(
            if step.starts_with("cipher") || *step == "vcdiff" {
                format!("encoding {step:?} is not supported: understudy stores readable data, so encrypted and delta-encoded messages are refused")
            } else {
                format!(
                    "encoding {:?} is not supported; use base64, utf-8 and json",
                    step.chars().take(40).collect::<String>()
                )
            },
        ));
    }
    let mut data = match data {
        Data::Other(kind) => {
            return Err(invalid(format!(
                "data is {kind}; send a string, binary, or a JSON object or array"
            )))
        }
        Data::Json(_) if !steps.is_empty() => {
            return Err(invalid(format!(
            "data is a JSON structure but encoding is {:?}; send the encoded text, or no encoding",
            encoding.unwrap_or_default()
        )))
        }
        other => other,
    };
    for step in steps.iter().rev() {
        data = match (*step, data) {
            (_, Data::Absent) => Data::Absent,
            ("base64", Data::Text(t)) => Data::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(t.trim())
                    .map_err(|_| invalid("data is not valid base64 (encoding base64)".into()))?,
            ),
            ("utf-8" | "utf8", Data::Binary(b)) => Data::Text(
                String::from_utf8(b)
                    .map_err(|_| invalid("data is not valid UTF-8 (encoding utf-8)".into()))?,
            ),
            ("utf-8" | "utf8", text @ Data::Text(_)) => text,
            ("json", Data::Text(t)) => Data::Json(
                serde_json::from_str(&t)
                    .map_err(|e| invalid(format!("data is not valid JSON (encoding json): {e}")))?,
            ),
            ("json", Data::Binary(b)) => Data::Json(
                serde_json::from_slice(&b)
                    .map_err(|e| invalid(format!("data is not valid JSON (encoding json): {e}")))?,
            ),
            (step, _) => {
                return Err(invalid(format!(
                    "encoding {step:?} applies to text, not to this data"
                )))
            }
        };
    }
    let json = match data {
        Data::Absent => serde_json::Value::Null,
        Data::Text(t) => serde_json::Value::String(t),
        Data::Binary(b) => {
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Data::Json(v) => v,
        Data::Other(_) => unreachable!("refused above"),
    };
    let text = serde_json::to_string(&json).expect("a JSON value serialises");
    Ok(RawValue::from_string(text).expect("serialised JSON is JSON"))
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DataVisitor)
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Data;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("message data: a string, binary, or a JSON object or array")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Data, E> {
        Ok(Data::Text(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Data, E> {
        Ok(Data::Text(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Data, E> {
        Ok(Data::Binary(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Data, E> {
        Ok(Data::Binary(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Data, E> {
        Ok(Data::Absent)
    }
    fn visit_none<E: de::Error>(self) -> Result<Data, E> {
        Ok(Data::Absent)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Data, D::Error> {
        d.deserialize_any(DataVisitor)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Data, E> {
        Ok(Data::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Data, E> {
        Ok(Data::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Data, E> {
        Ok(Data::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Data, E> {
        Ok(Data::Other("a number"))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Data, A::Error> {
        serde_json::Value::deserialize(MapAccessDeserializer::new(map)).map(Data::Json)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Data, A::Error> {
        serde_json::Value::deserialize(SeqAccessDeserializer::new(seq)).map(Data::Json)
    }
}

/// One message (a map) or an array of at most `max`; flags `too_many` and stops reading when
/// the array is longer, so a long array of tiny messages costs no more than `max` of them.
struct Messages<'a> {
    max: usize,
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Messages<'_> {
    type Value = Vec<WireMessage>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Messages<'_> {
    type Value = Vec<WireMessage>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an Ably message (an object) or an array of messages")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(vec![WireMessage::deserialize(MapAccessDeserializer::new(
            map,
        ))?])
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut messages = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(self.max));
        while let Some(m) = seq.next_element::<WireMessage>()? {
            if messages.len() == self.max {
                self.too_many.set(true);
                return Err(de::Error::custom("too many messages"));
            }
            messages.push(m);
        }
        Ok(messages)
    }
}

#[cfg(test)]
mod tests;
