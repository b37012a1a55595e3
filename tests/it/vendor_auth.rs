//! Vendor channels are private, against a real vendor (sockudo): a bare client is refused, a
//! subscriber token authorizes its own channels through `POST /v1/vendor/auth` and no others,
//! and a published event arrives on the authorized private subscription. Pusher and Ably.

use std::time::Duration;

use serde_json::{json, Value};
use understudy::failover::Path;

use crate::support::ably_client::AblyClient;
use crate::support::pusher_client::PusherClient;
use crate::support::sockudo::Sockudo;
use crate::support::*;

fn config(vendor_url: &str, extra: &str) -> String {
    format!(
        "[vendors]\nurls = [\"{vendor_url}\"]\n{}{extra}",
        crate::support::tls::ca_file_toml()
    )
}

/// `POST /v1/vendor/auth` as pusher-js sends it: a form, the token as a bearer.
async fn pusher_auth(
    s: &Server,
    token: Option<&str>,
    socket_id: &str,
    channel: &str,
) -> (u16, Value) {
    let mut req = s
        .http
        .post(format!("{}/v1/vendor/auth", s.base))
        .form(&[("socket_id", socket_id), ("channel_name", channel)]);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// sockudo refuses a private subscription with `pusher:error` 4009 ("unauthorized").
fn assert_refused(refusal: &Value) {
    assert_eq!(
        (&refusal["event"], &refusal["data"]["code"]),
        (&json!("pusher:error"), &json!(4009)),
        "{refusal}"
    );
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test]
async fn pusher_private_channels_take_only_what_the_token_grants() {
    let sockudo = Sockudo::start().await;
    let s = Server::with(&config(&sockudo.pusher_url(), "")).await;
    eventually_within(PATIENCE, "route to the vendor", || {
        s.state.failover.route().path == Path::Vendor(0)
    })
    .await;
    let (_, route) = s.get("/v1/route").await;
    assert_eq!(route["vendor"]["private"], true, "{route}");
    let token = token(&["clinic-42.*"], 3600, SECRET);

    // A bare Pusher client with the public app key gets nothing on the private channel.
    let (mut bare, _) = PusherClient::connect(sockudo.port, &sockudo.key).await;
    let refused = bare
        .try_subscribe("private-clinic-42.waiting-room", None)
        .await
        .expect_err("no auth, no private channel");
    assert_refused(&refused);
    // ...and nothing is published where it could subscribe without auth.
    bare.try_subscribe("clinic-42.waiting-room", None)
        .await
        .expect("the public name is open but unused");

    // The token's channels are signed; others are refused by understudy.
    let (mut client, socket_id) = PusherClient::connect(sockudo.port, &sockudo.key).await;
    let (status, v) = pusher_auth(
        &s,
        Some(&token),
        &socket_id,
        "private-clinic-43.waiting-room",
    )
    .await;
    assert_eq!((status, code(&v)), (403, "channel_forbidden"), "{v}");
    assert_eq!(v["error"]["channel"], "clinic-43.waiting-room");
    let (status, v) = pusher_auth(&s, None, &socket_id, "private-clinic-42.waiting-room").await;
    assert_eq!((status, code(&v)), (401, "invalid_token"), "{v}");
    let (status, v) = pusher_auth(
        &s,
        Some(&token),
        &socket_id,
        "private-clinic-42.waiting-room",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let auth = v["auth"].as_str().expect("an auth signature").to_owned();
    assert!(auth.starts_with(&format!("{}:", sockudo.key)), "{auth}");
    assert!(!v.to_string().contains(&sockudo.secret));

    // A signature is good for its own socket and channel only.
    let (mut other, _) = PusherClient::connect(sockudo.port, &sockudo.key).await;
    assert_refused(
        &other
            .try_subscribe("private-clinic-42.waiting-room", Some(&auth))
            .await
            .expect_err("another socket cannot reuse the signature"),
    );
    assert_refused(
        &client
            .try_subscribe("private-clinic-43.waiting-room", Some(&auth))
            .await
            .expect_err("another channel cannot reuse the signature"),
    );
    client
        .try_subscribe("private-clinic-42.waiting-room", Some(&auth))
        .await
        .expect("authorized");

    let seq = s.publish_seq("clinic-42.waiting-room", 1).await;
    let got = client
        .next_event(PATIENCE)
        .await
        .expect("the event arrives on the private subscription");
    assert_eq!(
        (got.event.as_str(), got.channel.as_str()),
        ("understudy.event", "private-clinic-42.waiting-room")
    );
    let frame: Value = serde_json::from_str(got.data.as_str().expect("data is a string")).unwrap();
    assert_eq!(
        (frame["channel"].as_str(), frame["seq"].as_u64()),
        (Some("clinic-42.waiting-room"), Some(seq))
    );
    assert_eq!(
        bare.next_event(Duration::from_millis(300)).await,
        None,
        "nothing on the public name"
    );
}

#[tokio::test]
async fn the_auth_endpoint_refuses_bad_requests_with_json_errors() {
    let sockudo = Sockudo::start().await;
    let s = Server::with(&config(&sockudo.pusher_url(), "")).await;
    let token = token(&["clinic-42.*"], 3600, SECRET);
    let expired = crate::support::token(&["clinic-42.*"], -3600, SECRET);
    let ch = "private-clinic-42.waiting-room";
    for (token, socket_id, channel, want) in [
        (Some(expired.as_str()), "1.2", ch, (401, "token_expired")),
        (Some(&token), "1.2:x", ch, (400, "invalid_socket_id")),
        (Some(&token), "12", ch, (400, "invalid_socket_id")),
        (Some(&token), "", ch, (400, "missing_param")),
        (
            Some(&token),
            "1.2",
            "clinic-42.waiting-room",
            (400, "not_private_channel"),
        ),
        (
            Some(&token),
            "1.2",
            "presence-clinic-42.a",
            (400, "not_private_channel"),
        ),
        (
            Some(&token),
            "1.2",
            "private-clinic-42.a b",
            (422, "invalid_channel"),
        ),
    ] {
        let (status, v) = pusher_auth(&s, token, socket_id, channel).await;
        assert_eq!((status, code(&v)), want, "{socket_id} {channel}: {v}");
        assert!(v["error"]["message"].is_string());
    }
    // JSON bodies and a token parameter work as well as a form and a bearer.
    let (status, v) = s
        .post(
            "/v1/vendor/auth",
            json!({"socket_id": "1.2", "channel_name": ch, "token": token}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // The heartbeat channel is open to any valid token; an unknown vendor is named.
    let (status, _) = pusher_auth(&s, Some(&token), "1.2", "private-understudy.heartbeat").await;
    assert_eq!(status, 200);
    let r = s
        .http
        .post(format!("{}/v1/vendor/auth?vendor=nope", s.base))
        .bearer_auth(&token)
        .form(&[("socket_id", "1.2"), ("channel_name", ch)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(code(&r.json().await.unwrap()), "unknown_vendor");
    let r = s
        .http
        .post(format!("{}/v1/vendor/auth", s.base))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("socket_id=1.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = s
        .http
        .post(format!("{}/v1/vendor/auth", s.base))
        .bearer_auth(&token)
        .form(&[("socket_id", "1.2"), ("pad", &"x".repeat(9000))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(code(&r.json().await.unwrap()), "payload_too_large");
    // The server still serves.
    let (status, _) = s.get("/readyz").await;
    assert_eq!(status, 200);

    let none = Server::with("").await;
    let (status, v) = pusher_auth(&none, Some(&token), "1.2", ch).await;
    assert_eq!((status, code(&v)), (404, "no_vendor"), "{v}");
}

#[tokio::test]
async fn public_channels_are_an_explicit_setting() {
    let sockudo = Sockudo::start().await;
    let s = Server::with(&config(&sockudo.pusher_url(), "public_channels = true\n")).await;
    eventually_within(PATIENCE, "route to the vendor", || {
        s.state.failover.route().path == Path::Vendor(0)
    })
    .await;
    let (_, route) = s.get("/v1/route").await;
    assert_eq!(route["vendor"]["private"], false, "{route}");
    let mut bare = PusherClient::subscribe(sockudo.port, &sockudo.key, "lobby").await;
    s.publish_seq("lobby", 1).await;
    let got = bare
        .next_event(PATIENCE)
        .await
        .expect("public: anyone reads it");
    assert_eq!(got.channel, "lobby");
}

/// Exchanges a TokenRequest at the vendor, as ably-js does with what `authUrl` answers.
async fn ably_token(s: &Server, sockudo: &Sockudo, token: &str) -> (Value, String) {
    let r = s
        .http
        .get(format!("{}/v1/vendor/auth", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let request: Value = r.json().await.unwrap();
    let r = s
        .http
        .post(format!(
            "http://127.0.0.1:{}/keys/{}/requestToken",
            sockudo.port, sockudo.key
        ))
        .json(&request)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let details: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{details}");
    let vendor_token = details["token"].as_str().expect("a token").to_owned();
    (request, vendor_token)
}

#[tokio::test]
async fn ably_tokens_cover_exactly_the_subscriber_token() {
    let sockudo = Sockudo::start().await;
    let s = Server::with(&config(&sockudo.ably_url(), "")).await;
    eventually_within(PATIENCE, "route to the vendor", || {
        s.state.failover.route().path == Path::Vendor(0)
    })
    .await;
    // Anonymous: no credential, no connection.
    AblyClient::connect(sockudo.port, ("", ""))
        .await
        .err()
        .expect("an anonymous client is refused");

    let token = token(&["clinic-42.*"], 120, SECRET);
    let (request, vendor_token) = ably_token(&s, &sockudo, &token).await;
    assert_eq!(
        request["capability"],
        r#"{"clinic-42.*":["subscribe"],"understudy.heartbeat":["subscribe"]}"#
    );
    assert_eq!(request["keyName"], sockudo.key.as_str());
    let ttl = request["ttl"].as_u64().unwrap();
    assert!(
        ttl <= 120_000 && ttl > 100_000,
        "ttl {ttl} ends with the token"
    );
    assert!(!request.to_string().contains(&sockudo.secret));

    let mut client = AblyClient::connect(sockudo.port, ("accessToken", &vendor_token))
        .await
        .expect("CONNECTED with the token");
    let refused = client
        .try_attach("clinic-43.waiting-room")
        .await
        .expect_err("outside the token");
    assert_eq!(refused["error"]["code"], 40160, "{refused}");
    client
        .try_attach("clinic-42.waiting-room")
        .await
        .expect("inside the token");

    let seq = s.publish_seq("clinic-42.waiting-room", 1).await;
    let messages = client
        .next_messages(PATIENCE)
        .await
        .expect("the event arrives");
    let frame: Value = serde_json::from_str(messages[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(frame["seq"].as_u64(), Some(seq));
}
