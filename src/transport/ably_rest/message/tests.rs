use serde_json::json;

use super::*;
use crate::auth::ably::Capability;
use crate::config::{AppConfig, Forward, Secret};

fn key() -> Credential {
    Credential {
        app: Arc::new(AppConfig {
            id: "1".into(),
            key: "k".into(),
            secret: Secret::new("0123456789abcdef"),
            forward: Forward::AsPublished,
        }),
        capability: None,
        client_id: None,
    }
}

fn json_body(v: serde_json::Value) -> Vec<WireMessage> {
    decode(Format::Json, v.to_string().as_bytes(), 10).unwrap()
}

fn stored(messages: Vec<WireMessage>) -> Vec<(String, String, Option<String>)> {
    prepare(messages, &key())
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                p.name.to_string(),
                p.data.get().to_owned(),
                p.id.map(|i| i.to_string()),
            )
        })
        .collect()
}

fn one(message: serde_json::Value) -> Result<String, AblyError> {
    let p = prepare(json_body(message), &key())?;
    Ok(p[0].data.get().to_owned())
}

#[test]
fn json_single_and_array_keep_order_names_and_ids() {
    assert_eq!(
        stored(json_body(json!({"name": "a", "data": "x", "id": "b:0"}))),
        [("a".into(), r#""x""#.into(), Some("b:0".into()))]
    );
    assert_eq!(
        stored(json_body(
            json!([{"name": "a", "data": "1"}, {"data": {"k": [1]}}])
        )),
        [
            ("a".into(), r#""1""#.into(), None),
            ("".into(), r#"{"k":[1]}"#.into(), None)
        ]
    );
}

#[test]
fn each_data_encoding_is_stored_as_documented() {
    assert_eq!(one(json!({"name": "n"})).unwrap(), "null");
    assert_eq!(one(json!({"data": null})).unwrap(), "null");
    assert_eq!(one(json!({"data": "plain"})).unwrap(), r#""plain""#);
    assert_eq!(
        one(json!({"data": "{\"a\":1}", "encoding": "json"})).unwrap(),
        r#"{"a":1}"#
    );
    assert_eq!(one(json!({"data": [1, 2]})).unwrap(), "[1,2]");
    // Binary in JSON: base64 text, stored as that (standard) base64 text.
    assert_eq!(
        one(json!({"data": "AAEC/w==", "encoding": "base64"})).unwrap(),
        r#""AAEC/w==""#
    );
    // Text that went through utf-8 and base64 comes back as the text.
    assert_eq!(
        one(json!({"data": "aMOpbGxv", "encoding": "utf-8/base64"})).unwrap(),
        r#""héllo""#
    );
    assert_eq!(
        one(json!({"data": "eyJhIjpbMV19", "encoding": "json/utf-8/base64"})).unwrap(),
        r#"{"a":[1]}"#
    );
}

#[test]
fn msgpack_text_binary_and_maps_are_told_apart() {
    #[derive(serde::Serialize)]
    struct Bin<'a> {
        name: &'a str,
        #[serde(with = "serde_bytes_shim")]
        data: &'a [u8],
        id: &'a str,
    }
    mod serde_bytes_shim {
        pub(super) fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(b)
        }
    }
    let bin = rmp_serde::to_vec_named(&Bin {
        name: "b",
        data: &[0, 1, 2, 255],
        id: "x:0",
    })
    .unwrap();
    let text =
        rmp_serde::to_vec_named(&json!({"name": "t", "data": "hi", "clientId": null})).unwrap();
    let object = rmp_serde::to_vec_named(&json!([{"name": "o", "data": "{\"a\":1}", "encoding": "json"}, {"name": "m", "data": {"b": 2}}])).unwrap();
    assert_eq!(
        stored(decode(Format::Msgpack, &bin, 10).unwrap()),
        [("b".into(), r#""AAEC/w==""#.into(), Some("x:0".into()))]
    );
    assert_eq!(
        stored(decode(Format::Msgpack, &text, 10).unwrap()),
        [("t".into(), r#""hi""#.into(), None)]
    );
    assert_eq!(
        stored(decode(Format::Msgpack, &object, 10).unwrap()),
        [
            ("o".into(), r#"{"a":1}"#.into(), None),
            ("m".into(), r#"{"b":2}"#.into(), None)
        ]
    );
    let err = decode(Format::Msgpack, &[0xc1], 10).unwrap_err();
    assert_eq!(err.status_and_code().1, 40000, "{err}");
}

fn code(e: AblyError) -> u32 {
    e.status_and_code().1
}

#[test]
fn each_refusal_has_its_ably_code() {
    // Data and encodings understudy cannot store.
    for (m, why) in [
        (json!({"data": 5}), "a number"),
        (json!({"data": true}), "a boolean"),
        (
            json!({"data": "x", "encoding": "cipher+aes-128-cbc/base64"}),
            "cipher",
        ),
        (json!({"data": "x", "encoding": "vcdiff"}), "vcdiff"),
        (json!({"data": "x", "encoding": "rot13"}), "rot13"),
        (json!({"data": "%%", "encoding": "base64"}), "base64"),
        (json!({"data": "{", "encoding": "json"}), "JSON"),
        (json!({"data": "/w==", "encoding": "utf-8/base64"}), "UTF-8"),
        (json!({"data": {"a": 1}, "encoding": "json"}), "structure"),
    ] {
        let err = one(m.clone()).unwrap_err();
        assert!(err.to_string().contains(why), "{m}: {err}");
        assert_eq!(code(err), 40013, "{m}");
    }
    assert_eq!(
        code(one(json!({"name": "n".repeat(201)})).unwrap_err()),
        40003
    );
    for id in ["", "a\u{7}b", &"i".repeat(201)] {
        assert_eq!(code(one(json!({"id": id})).unwrap_err()), 40003, "{id:?}");
    }
    assert_eq!(code(one(json!({"clientId": "*"})).unwrap_err()), 40012);
    // Wrong types and bad syntax.
    let err = decode(Format::Json, br#"{"name": 5}"#, 10).unwrap_err();
    assert_eq!(code(err), 40003);
    let err = decode(Format::Json, br#"{"name": "a",,}"#, 10).unwrap_err();
    assert_eq!(code(err), 40000);
    let err = decode(Format::Json, b"\"just a string\"", 10).unwrap_err();
    assert_eq!(code(err), 40003);
    assert_eq!(code(decode(Format::Json, b"[]", 10).unwrap_err()), 40003);
    // Eleven messages where ten are allowed: refused, without reading them all.
    let many = serde_json::Value::Array(vec![json!({"data": "x"}); 11]);
    let err = decode(Format::Json, many.to_string().as_bytes(), 10).unwrap_err();
    assert_eq!(code(err), 40003);
}

#[test]
fn the_size_limit_counts_every_message_of_the_request() {
    let half = "x".repeat(MAX_MESSAGES_BYTES / 2);
    let fits = json!([{"data": half}, {"data": &half[1..]}, {"name": "n"}]);
    let n = prepare(json_body(fits), &key()).unwrap().len();
    assert_eq!(n, 3);
    let over = json!([{"data": half}, {"data": half, "name": "n"}]);
    let err = prepare(json_body(over), &key()).unwrap_err();
    assert_eq!(
        err.status_and_code(),
        (axum::http::StatusCode::PAYLOAD_TOO_LARGE, 40009)
    );
    let extras = json!({"data": &half[..], "extras": {"headers": {"h": half}}});
    assert_eq!(code(prepare(json_body(extras), &key()).unwrap_err()), 40009);
}

#[test]
fn a_tokens_client_id_binds_the_messages() {
    let token = Credential {
        capability: Some(Capability::parse("").unwrap()),
        client_id: Some("kiosk-1".into()),
        ..key()
    };
    assert!(prepare(json_body(json!({"clientId": "kiosk-1"})), &token).is_ok());
    assert!(prepare(json_body(json!({"data": "no client id"})), &token).is_ok());
    let err = prepare(
        json_body(json!([{"data": "ok"}, {"clientId": "kiosk-2"}])),
        &token,
    )
    .unwrap_err();
    assert_eq!(code(err), 40012);
}
