//! Webhooks against a real HTTP receiver: shapes, once-per-transition, filters, headers,
//! signatures, batching, retries, isolation, shutdown flush and the grace period.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::receiver::{RawReceiver, Receiver};
use crate::support::*;

const ALL_EVENTS: [&str; 9] = herald::config::EVENT_TYPES;

/// A server whose app has `hooks`; grace period `grace_ms`, batching window `batch_ms` (0: off).
async fn server_with(
    hooks: Value,
    grace_ms: u64,
    batch_ms: u64,
    edit: impl FnOnce(&mut Value),
) -> TestServer {
    TestServer::start_with(|c| {
        TestServer::app(c)["webhooks"] = hooks;
        c["webhooks"] = json!({"grace_period_ms": grace_ms, "batching": {"enabled": batch_ms > 0, "duration": batch_ms}});
        edit(c);
    })
    .await
}

fn hook(receiver: &Receiver, path: &str, events: &[&str]) -> Value {
    json!({"url": receiver.url(path), "event_types": events, "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 100, "max_elapsed_time_ms": 3000}})
}

fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["name"].as_str().unwrap(),
                e["channel"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn occupancy_events_fire_once_for_two_sockets() {
    let receiver = Receiver::start().await;
    let server = server_with(json!([hook(&receiver, "/h", &ALL_EVENTS)]), 0, 0, |_| {}).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("room").await;
    b.subscribe("room").await;
    a.disconnect().await;
    b.disconnect().await;
    receiver.wait_events("/h", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.events_at("/h"),
        [
            json!({"name": "channel_occupied", "channel": "room"}),
            json!({"name": "channel_vacated", "channel": "room"})
        ]
    );
}

#[tokio::test]
async fn member_events_fire_once_per_user_with_two_sockets() {
    let receiver = Receiver::start().await;
    let server = server_with(
        json!([hook(&receiver, "/h", &["member_added", "member_removed"])]),
        0,
        0,
        |_| {},
    )
    .await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join_presence("presence-r", "u1").await;
    b.join_presence("presence-r", "u1").await;
    a.disconnect().await;
    b.disconnect().await;
    receiver.wait_events("/h", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.events_at("/h"),
        [
            json!({"name": "member_added", "channel": "presence-r", "user_id": "u1"}),
            json!({"name": "member_removed", "channel": "presence-r", "user_id": "u1"})
        ]
    );
}

#[tokio::test]
async fn client_cache_miss_and_subscription_count_events_have_their_fields() {
    let receiver = Receiver::start().await;
    let hooks = json!([hook(
        &receiver,
        "/h",
        &["client_event", "cache_miss", "subscription_count"]
    )]);
    let server = server_with(hooks, 0, 0, |c| {
        TestServer::app(c)["enable_subscription_count"] = json!(true)
    })
    .await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join_presence("presence-chat", "alice").await;
    b.join_presence("presence-chat", "bob").await;
    a.recv_event("pusher_internal:member_added").await;
    a.send(json!({"event": "client-hi", "channel": "presence-chat", "data": {"text": "hey"}}))
        .await;
    b.recv_event("client-hi").await;
    a.subscribe("cache-empty").await;
    let events = receiver.wait_events("/h", 3).await;
    let client_event = events.iter().find(|e| e["name"] == "client_event").unwrap();
    assert_eq!(
        client_event,
        &json!({"name": "client_event", "channel": "presence-chat", "event": "client-hi",
                "data": "{\"text\":\"hey\"}", "socket_id": a.socket_id, "user_id": "alice"})
    );
    assert!(
        events.contains(&json!({"name": "cache_miss", "channel": "cache-empty"})),
        "{events:?}"
    );
    assert!(events.contains(&json!({"name": "subscription_count", "channel": "cache-empty", "subscription_count": 1})), "{events:?}");
}

#[tokio::test]
async fn filters_select_by_type_prefix_and_both() {
    let receiver = Receiver::start().await;
    let occupied = ["channel_occupied"];
    let mut by_type = hook(&receiver, "/type", &occupied);
    by_type["filter"] = json!({"channel_type": "private"});
    let mut by_prefix = hook(&receiver, "/prefix", &occupied);
    by_prefix["filter"] = json!({"channel_prefix": "team-"});
    let mut both = hook(&receiver, "/both", &occupied);
    both["filter"] = json!({"channel_type": "presence", "channel_prefix": "presence-team-"});
    // Same URL as /type but another filter: a separate endpoint.
    let mut same_url = hook(&receiver, "/type", &occupied);
    same_url["filter"] = json!({"channel_type": "public"});
    let server = server_with(json!([by_type, by_prefix, both, same_url]), 0, 0, |_| {}).await;
    let mut c = server.client().await;
    c.subscribe("team-a").await;
    c.subscribe_private("private-x").await;
    c.subscribe_private("private-encrypted-y").await;
    c.join_presence("presence-team-1", "u").await;
    c.join_presence("presence-other", "u").await;
    receiver.wait_events("/both", 1).await;
    receiver.wait_events("/type", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut typed = names(&receiver.events_at("/type"));
    typed.sort();
    assert_eq!(
        typed,
        [
            "channel_occupied private-encrypted-y",
            "channel_occupied private-x",
            "channel_occupied team-a"
        ]
    );
    assert_eq!(
        names(&receiver.events_at("/prefix")),
        ["channel_occupied team-a"]
    );
    assert_eq!(
        names(&receiver.events_at("/both")),
        ["channel_occupied presence-team-1"]
    );
}

#[tokio::test]
async fn requests_are_signed_with_custom_headers_that_cannot_override_pushers() {
    let receiver = Receiver::start().await;
    let mut endpoint = hook(&receiver, "/h", &["channel_occupied"]);
    endpoint["headers"] = json!({"X-Custom-Auth": "token-1", "X-Pusher-Key": "spoofed"});
    let server = server_with(json!([endpoint]), 0, 0, |_| {}).await;
    server.client().await.subscribe("signed").await;
    let request = receiver.wait_until(|r| !r.is_empty()).await.remove(0);
    assert_eq!(request.header("x-custom-auth"), "token-1");
    assert_eq!(request.header("x-pusher-key"), KEY);
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(
        request.header("x-pusher-signature"),
        hmac_hex(SECRET, &request.body)
    );
    let body = request.json();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now_ms - body["time_ms"].as_i64().unwrap()).abs() < 10_000,
        "{body}"
    );
    assert!(request.header("webhook-id").starts_with("msg_"));
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert!((now_ms / 1000 - timestamp).abs() < 10);
}

#[tokio::test]
async fn header_names_keep_their_case_on_the_wire() {
    let raw = RawReceiver::start().await;
    let endpoint =
        json!({"url": format!("http://{}/raw", raw.addr), "event_types": ["channel_occupied"]});
    let server = server_with(json!([endpoint]), 0, 0, |_| {}).await;
    server.client().await.subscribe("cased").await;
    let head = raw.first_request().await;
    let lines: Vec<&str> = head.lines().collect();
    assert!(
        lines.contains(&format!("X-Pusher-Key: {KEY}").as_str()),
        "{head}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("X-Pusher-Signature: ")),
        "{head}"
    );
    assert!(lines.contains(&"Content-Type: application/json"), "{head}");
}

#[tokio::test]
async fn standard_webhooks_signature_verifies() {
    let receiver = Receiver::start().await;
    let secret =
        base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdef0123456789abcdef");
    let mut endpoint = hook(&receiver, "/std", &["channel_occupied"]);
    endpoint["signature"] = json!("standard-webhooks");
    endpoint["standard_webhooks_secret"] = json!(format!("whsec_{secret}"));
    let server = server_with(json!([endpoint]), 0, 0, |_| {}).await;
    server.client().await.subscribe("std").await;
    let request = receiver.wait_until(|r| !r.is_empty()).await.remove(0);
    let signed = format!(
        "{}.{}.{}",
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        request.body
    );
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
    mac.update(signed.as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(request.header("webhook-signature"), expected);
    assert_eq!(
        request.header("x-pusher-signature"),
        hmac_hex(SECRET, &request.body)
    );
}

#[tokio::test]
async fn batching_sends_events_of_one_window_in_one_post_in_order() {
    let receiver = Receiver::start().await;
    let server = server_with(
        json!([hook(
            &receiver,
            "/h",
            &["channel_occupied", "channel_vacated"]
        )]),
        0,
        300,
        |_| {},
    )
    .await;
    let mut c = server.client().await;
    for channel in ["b1", "b2", "b3"] {
        c.subscribe(channel).await;
    }
    c.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "b1"}}))
        .await;
    let requests = receiver.wait_until(|r| !r.is_empty()).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(
        names(&requests[0].events()),
        [
            "channel_occupied b1",
            "channel_occupied b2",
            "channel_occupied b3",
            "channel_vacated b1"
        ]
    );
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_id_and_events_and_a_fresh_signature() {
    let receiver = Receiver::start().await;
    receiver.script(&[500, 503]);
    let server = server_with(
        json!([hook(&receiver, "/h", &["channel_occupied"])]),
        0,
        0,
        |_| {},
    )
    .await;
    server.client().await.subscribe("retry").await;
    let requests = receiver.wait_until(|r| r.len() >= 3).await;
    assert_eq!(requests.len(), 3);
    let id = requests[0].header("webhook-id");
    for request in &requests {
        assert_eq!(request.header("webhook-id"), id);
        assert_eq!(
            request.events(),
            [json!({"name": "channel_occupied", "channel": "retry"})]
        );
        assert_eq!(
            request.header("x-pusher-signature"),
            hmac_hex(SECRET, &request.body)
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().len(), 3, "no retry after the success");
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let receiver = Receiver::start().await;
    receiver.script(&[400]);
    let server = server_with(
        json!([hook(&receiver, "/h", &["channel_occupied"])]),
        0,
        0,
        |_| {},
    )
    .await;
    let mut c = server.client().await;
    c.subscribe("no-retry").await;
    receiver.wait_until(|r| !r.is_empty()).await;
    // A later event is still delivered: the endpoint is not stuck.
    c.subscribe("next").await;
    let requests = receiver.wait_until(|r| r.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        names(&receiver.events_at("/h")),
        ["channel_occupied no-retry", "channel_occupied next"]
    );
    assert_ne!(
        requests[0].header("webhook-id"),
        requests[1].header("webhook-id")
    );
}

#[tokio::test]
async fn a_hanging_receiver_does_not_slow_socket_delivery() {
    let receiver = Receiver::start().await;
    receiver.hang(Duration::from_secs(30));
    let mut endpoint = hook(
        &receiver,
        "/h",
        &["channel_occupied", "channel_vacated", "client_event"],
    );
    endpoint["request_timeout_ms"] = json!(20_000);
    let server = server_with(json!([endpoint]), 0, 0, |_| {}).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let started = tokio::time::Instant::now();
    for i in 0..20 {
        let channel = format!("private-h{i}");
        a.subscribe_private(&channel).await;
        b.subscribe_private(&channel).await;
        a.send(json!({"event": "client-x", "channel": channel, "data": {"i": i}}))
            .await;
        assert_eq!(b.recv().await["data"]["i"], i);
    }
    let rest = Rest::new(&server);
    rest.post(
        &format!("/apps/{APP_ID}/events"),
        json!({"name": "e", "channel": "private-h0", "data": "x"}),
    )
    .await;
    assert_eq!(b.recv().await["data"], "x");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "socket traffic waited for webhooks: {:?}",
        started.elapsed()
    );
    assert!(
        !receiver.received().is_empty(),
        "the receiver was reached and is hanging"
    );
}

#[tokio::test]
async fn shutdown_flushes_held_and_batched_events() {
    let receiver = Receiver::start().await;
    let server = server_with(
        json!([hook(
            &receiver,
            "/h",
            &["channel_occupied", "channel_vacated"]
        )]),
        60_000,
        60_000,
        |_| {},
    )
    .await;
    let mut c = server.client().await;
    c.subscribe("flush").await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        receiver.received().is_empty(),
        "held by the batch window and the grace period"
    );
    tokio::time::timeout(WAIT, server.running.shutdown())
        .await
        .expect("shutdown in time")
        .unwrap();
    assert_eq!(
        names(&receiver.events_at("/h")),
        ["channel_occupied flush", "channel_vacated flush"]
    );
}

#[tokio::test]
async fn the_grace_period_suppresses_a_quick_leave_and_return() {
    let receiver = Receiver::start().await;
    let hooks = json!([hook(
        &receiver,
        "/h",
        &[
            "channel_occupied",
            "channel_vacated",
            "member_added",
            "member_removed"
        ]
    )]);
    let server = server_with(hooks, 700, 0, |_| {}).await;
    let mut first = server.client().await;
    first.join_presence("presence-g", "u").await;
    receiver.wait_events("/h", 2).await;
    first.disconnect().await;
    let mut again = server.client().await;
    again.join_presence("presence-g", "u").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        names(&receiver.events_at("/h")),
        ["channel_occupied presence-g", "member_added presence-g"]
    );
    again.disconnect().await;
    receiver.wait_events("/h", 4).await;
    let events = receiver.events_at("/h");
    assert_eq!(
        names(&events[2..]),
        ["member_removed presence-g", "channel_vacated presence-g"]
    );
}

#[tokio::test]
async fn lambda_targets_are_invoked_with_a_sigv4_signature() {
    // nextest runs each test in its own process, so setting the environment here is contained.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-secret");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let receiver = Receiver::start().await;
    let endpoint = json!({
        "lambda": {"function_name": "presence-handler", "invocation_type": "RequestResponse", "qualifier": "live",
                   "region": "eu-west-1", "endpoint_url": receiver.url("")},
        "event_types": ["channel_occupied"]
    });
    let server = server_with(json!([endpoint]), 0, 0, |_| {}).await;
    server.client().await.subscribe("lambda").await;
    let request = receiver.wait_until(|r| !r.is_empty()).await.remove(0);
    assert_eq!(
        request.path,
        "/2015-03-31/functions/presence-handler/invocations"
    );
    assert_eq!(request.query, "Qualifier=live");
    assert_eq!(request.header("x-amz-invocation-type"), "RequestResponse");
    let authorization = request.header("authorization");
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
        "{authorization}"
    );
    assert!(
        authorization.contains("/eu-west-1/lambda/aws4_request"),
        "{authorization}"
    );
    assert_eq!(
        request.events(),
        [json!({"name": "channel_occupied", "channel": "lambda"})]
    );
    assert!(!request.headers.contains_key("x-pusher-signature"));
}

#[tokio::test]
async fn grace_cancels_even_when_the_endpoint_wants_only_one_half() {
    let receiver = Receiver::start().await;
    let server = server_with(
        json!([hook(&receiver, "/h", &["channel_vacated"])]),
        500,
        0,
        |_| {},
    )
    .await;
    let mut first = server.client().await;
    first.subscribe("half").await;
    first.disconnect().await;
    let mut again = server.client().await;
    again.subscribe("half").await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(receiver.received().is_empty(), "{:?}", receiver.received());
    again.disconnect().await;
    assert_eq!(
        names(&receiver.wait_events("/h", 1).await),
        ["channel_vacated half"]
    );
}
