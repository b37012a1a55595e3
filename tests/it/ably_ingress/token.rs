//! `POST /keys/{keyName}/requestToken`: a signed TokenRequest is exchanged once for an Ably JWT
//! that publishes where its capability says; replays, bad macs, stale timestamps, unknown keys
//! and unsigned parameters without the key's Basic auth are refused with Ably's codes.

use serde_json::json;

use super::{assert_refused, basic, now_s, post, publish_json, APP_KEY, APP_SECRET};
use crate::support::*;

#[tokio::test]
async fn request_token_issues_a_jwt_once_per_signed_request() {
    let s = Server::with(&super::apps_toml()).await;
    let ts = now_s() * 1000;
    let nonce = "0123456789abcdef";
    let text = format!("{APP_KEY}\n60000\n{{\"ward-4\":[\"publish\"]}}\n\n{ts}\n{nonce}\n");
    let mac = understudy::upstream::ably::token_request::mac(APP_SECRET, &text);
    let request = json!({"keyName": APP_KEY, "ttl": 60000, "capability": "{\"ward-4\":[\"publish\"]}",
        "timestamp": ts, "nonce": nonce, "mac": mac});
    let path = format!("/keys/{APP_KEY}/requestToken");
    let (status, details, _) = post(
        &s,
        &path,
        None,
        "application/json",
        request.to_string().into(),
    )
    .await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["keyName"], APP_KEY);
    assert_eq!(details["capability"], "{\"ward-4\":[\"publish\"]}");
    assert_eq!(
        details["expires"].as_u64().unwrap() - details["issued"].as_u64().unwrap(),
        60000
    );
    let token = format!("Bearer {}", details["token"].as_str().unwrap());
    assert_eq!(
        publish_json(&s, "ward-4", &token, json!({"name": "n"}))
            .await
            .0,
        201
    );
    assert_eq!(
        publish_json(&s, "ward-5", &token, json!({"name": "n"}))
            .await
            .0,
        403
    );

    let replay = post(
        &s,
        &path,
        None,
        "application/json",
        request.to_string().into(),
    )
    .await;
    assert_refused("a replayed request", replay, 401, 40105);
    let mut tampered = request.clone();
    tampered["ttl"] = json!(86_400_000);
    tampered["nonce"] = json!("fedcba9876543210");
    let bad_mac = post(
        &s,
        &path,
        None,
        "application/json",
        tampered.to_string().into(),
    )
    .await;
    assert_refused("a mac that does not match", bad_mac, 401, 40101);
    let stale_ts = ts - 10 * 60 * 1000;
    let text = format!("{APP_KEY}\n\n\n\n{stale_ts}\n{nonce}\n");
    let stale = json!({"keyName": APP_KEY, "timestamp": stale_ts, "nonce": nonce,
        "mac": understudy::upstream::ably::token_request::mac(APP_SECRET, &text)});
    let stale = post(
        &s,
        &path,
        None,
        "application/json",
        stale.to_string().into(),
    )
    .await;
    assert_refused("a stale timestamp", stale, 401, 40104);
    let unknown = post(
        &s,
        "/keys/no.such/requestToken",
        None,
        "application/json",
        b"{}".to_vec(),
    )
    .await;
    assert_refused("an unknown key", unknown, 404, 40400);
    // Unsigned parameters take the key's own Basic auth, and nothing less.
    let params = json!({"ttl": 5000}).to_string().into_bytes();
    let unsigned = post(&s, &path, None, "application/json", params.clone()).await;
    assert_refused("unsigned without Basic", unsigned, 401, 40101);
    let key = basic(APP_KEY, APP_SECRET);
    let (status, details, _) = post(&s, &path, Some(&key), "application/json", params).await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["capability"], "{\"*\":[\"*\"]}");
}
