//! JWT-signed webhooks (`"signature": "jwt"`): every attempt, a retry included, carries an
//! `Authorization` token over its own body, checked here with `hmac` and `sha2` directly; the
//! cluster's stream delivery sends it too. LiveKit's own receivers check it in tests/compat.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use herald::config::Config;
use herald::metrics::Metrics;
use herald::webhooks::{StreamEndpoint, WebhookEvent};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::receiver::{RawReceiver, Received, Receiver};
use crate::support::*;

fn jwt_hook(url: String) -> Value {
    json!({"url": url, "event_types": ["channel_occupied"], "signature": "jwt",
        "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 100, "max_elapsed_time_ms": 3000}})
}

/// The claims of `request`'s token, once its HS256 signature with `secret` and its digest of
/// the body have been checked.
fn verified_claims(request: &Received, secret: &str) -> Value {
    let token = request.header("authorization");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!(decode(parts[0]), json!({"alg": "HS256", "typ": "JWT"}));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        mac.finalize().into_bytes().to_vec()
    );
    let claims = decode(parts[1]);
    let digest = STANDARD.encode(Sha256::digest(request.body.as_bytes()));
    assert_eq!(claims["sha256"], json!(digest));
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["nbf"], json!(iat));
    assert_eq!(claims["exp"], json!(iat + 300));
    claims
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn each_attempt_a_retry_included_carries_a_token_over_its_own_body() {
    let receiver = Receiver::start().await;
    receiver.script(&[503]);
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["webhooks"] = json!([jwt_hook(receiver.url("/jwt"))]);
        c["webhooks"] = json!({"grace_period_ms": 0, "batching": {"enabled": false}});
    })
    .await;
    server.client().await.subscribe("jwt-room").await;
    let requests = receiver.wait_until(|r| r.len() >= 2).await;
    assert_eq!(requests[0].status, 503);
    assert!(requests[1].accepted());
    assert_eq!(
        requests[0].header("webhook-id"),
        requests[1].header("webhook-id")
    );
    assert_ne!(requests[0].body, requests[1].body, "time_ms is fresh");
    for request in &requests {
        let claims = verified_claims(request, SECRET);
        assert_eq!(claims["iss"], json!(KEY));
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(request.header("webhook-timestamp"), iat.to_string());
        assert!(iat.abs_diff(now_secs()) < 60, "issued now: {iat}");
        // The Pusher signature stays.
        assert_eq!(request.header("x-pusher-key"), KEY);
        assert_eq!(
            request.header("x-pusher-signature"),
            hmac_hex(SECRET, &request.body)
        );
    }
    assert_ne!(
        requests[0].header("authorization"),
        requests[1].header("authorization"),
        "the retry is signed again"
    );
}

#[tokio::test]
async fn the_header_is_authorization_with_the_bare_token_and_only_on_jwt_endpoints() {
    let (jwt, plain) = (RawReceiver::start().await, RawReceiver::start().await);
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["webhooks"] = json!([
            jwt_hook(format!("http://{}/jwt", jwt.addr)),
            {"url": format!("http://{}/plain", plain.addr), "event_types": ["channel_occupied"]},
        ]);
    })
    .await;
    server.client().await.subscribe("jwt-cased").await;
    let head = jwt.first_request().await;
    let line = head.lines().find(|l| l.starts_with("Authorization: "));
    assert!(
        line.is_some_and(|l| l.starts_with("Authorization: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.")),
        "{head}"
    );
    let head = plain.first_request().await;
    assert!(
        !head.to_ascii_lowercase().contains("\nauthorization:"),
        "{head}"
    );
}

#[tokio::test]
async fn cluster_stream_delivery_signs_with_the_same_token() {
    let receiver = Receiver::start().await;
    let config = json!({"app_manager": {"array": {"apps": [{"id": "a", "key": "k", "secret": "s",
        "webhooks": [jwt_hook(receiver.url("/h"))]}]}}});
    let config = Config::from_json(&config.to_string()).unwrap();
    let endpoints = StreamEndpoint::all(&config.apps, Arc::new(Metrics::new("t_", ["a"])));
    let events = [WebhookEvent::ChannelOccupied {
        channel: "c".into(),
    }];
    assert!(endpoints[0].send("msg_1", &events).await);
    let request = receiver.wait_until(|r| !r.is_empty()).await.remove(0);
    assert_eq!(request.header("webhook-id"), "msg_1");
    assert_eq!(verified_claims(&request, "s")["iss"], json!("k"));
}
