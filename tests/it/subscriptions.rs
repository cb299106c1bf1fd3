//! Subscribing to public, private, encrypted and cache channels; refusals stay channel-scoped.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn assert_subscription_error(frame: &serde_json::Value, channel: &str, kind: &str, status: u64) {
    assert_eq!(frame["event"], "pusher:subscription_error", "{frame}");
    assert_eq!(frame["channel"], channel);
    assert_eq!(frame["data"]["type"], kind, "{frame}");
    assert_eq!(frame["data"]["status"], status, "{frame}");
    assert!(frame["data"]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn public_subscribe_succeeds_with_string_data() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let reply = client.subscribe("my-channel").await;
    assert_eq!(
        reply,
        json!({"event": "pusher_internal:subscription_succeeded", "channel": "my-channel", "data": "{}"})
    );
    // pusher-websocket-java omits auth on public channels.
    let reply = client.subscribe_with(json!({"channel": "other"})).await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
}

#[tokio::test]
async fn private_subscribe_checks_the_signature() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let bad = client
        .subscribe_with(
            json!({"auth": format!("{KEY}:{}", "0".repeat(64)), "channel": "private-a"}),
        )
        .await;
    assert_subscription_error(&bad, "private-a", "AuthError", 401);
    let missing = client.subscribe_with(json!({"channel": "private-a"})).await;
    assert_subscription_error(&missing, "private-a", "AuthError", 401);
    let other_key = client
        .subscribe_with(json!({"auth": "other:abc", "channel": "private-a"}))
        .await;
    assert_subscription_error(&other_key, "private-a", "AuthError", 401);
    // The socket stays usable after refusals.
    client.subscribe_private("private-a").await;
}

#[tokio::test]
async fn encrypted_channels_authorize_like_private_ones() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let reply = client.subscribe_private("private-encrypted-a").await;
    assert_eq!(reply["data"], "{}");
    let bad = client
        .subscribe_with(json!({"auth": "", "channel": "private-encrypted-b"}))
        .await;
    assert_subscription_error(&bad, "private-encrypted-b", "AuthError", 401);
}

#[tokio::test]
async fn invalid_channel_names_are_refused() {
    let server =
        TestServer::start_with(|c| TestServer::app(c)["max_channel_name_length"] = json!(20)).await;
    let mut client = server.client().await;
    for name in ["has space", "bad*char", "#reserved", &"a".repeat(21)] {
        let reply = client
            .subscribe_with(json!({"auth": "", "channel": name}))
            .await;
        assert_subscription_error(&reply, name, "InvalidChannel", 4009);
    }
    client.subscribe(&"a".repeat(20)).await;
}

#[tokio::test]
async fn events_stop_after_unsubscribe() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("news").await;
    let rest = Rest::new(&server);
    let (status, _) = rest
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "e", "channel": "news", "data": "1"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(client.recv().await["data"], "1");
    client
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}))
        .await;
    // The unsubscribe is processed before the ping is answered.
    client.send(json!({"event": "pusher:ping"})).await;
    assert_eq!(client.recv().await["event"], "pusher:pong");
    rest.post(
        &format!("/apps/{APP_ID}/events"),
        json!({"name": "e", "channel": "news", "data": "2"}),
    )
    .await;
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn subscribing_twice_changes_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("twice").await;
    client.subscribe("twice").await;
    let (_, body) = Rest::new(&server)
        .get(
            &format!("/apps/{APP_ID}/channels/twice"),
            &[("info", "subscription_count")],
        )
        .await;
    assert_eq!(body["subscription_count"], 1);
}

#[tokio::test]
async fn cache_channel_replays_the_last_event_or_reports_a_miss() {
    let server = TestServer::start().await;
    let mut first = server.client().await;
    first.subscribe("cache-prices").await;
    let miss = first.recv().await;
    assert_eq!(
        miss,
        json!({"event": "pusher:cache_miss", "channel": "cache-prices", "data": "{}"})
    );
    let rest = Rest::new(&server);
    for price in ["1", "2"] {
        rest.post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "price", "channel": "cache-prices", "data": price}),
        )
        .await;
    }
    let mut late = server.client().await;
    late.subscribe("cache-prices").await;
    assert_eq!(
        late.recv().await,
        json!({"event": "price", "channel": "cache-prices", "data": "2"})
    );
    // Private cache channels cache too.
    rest.post(
        &format!("/apps/{APP_ID}/events"),
        json!({"name": "p", "channel": "private-cache-x", "data": "v"}),
    )
    .await;
    late.subscribe_private("private-cache-x").await;
    assert_eq!(late.recv().await["data"], "v");
}

#[tokio::test]
async fn subscription_count_is_announced_when_enabled() {
    let server =
        TestServer::start_with(|c| TestServer::app(c)["enable_subscription_count"] = json!(true))
            .await;
    let mut a = server.client().await;
    a.subscribe("counted").await;
    assert_eq!(
        data_of(&a.recv_event("pusher_internal:subscription_count").await)["subscription_count"],
        1
    );
    let mut b = server.client().await;
    b.subscribe("counted").await;
    assert_eq!(
        data_of(&a.recv_event("pusher_internal:subscription_count").await)["subscription_count"],
        2
    );
    b.disconnect().await;
    assert_eq!(
        data_of(&a.recv_event("pusher_internal:subscription_count").await)["subscription_count"],
        1
    );
}

#[tokio::test]
async fn subscription_count_is_off_by_default() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.subscribe("quiet").await;
    let mut b = server.client().await;
    b.subscribe("quiet").await;
    a.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn subscriptions_per_connection_are_bounded() {
    let server =
        TestServer::start_with(|c| c["channel_limits"] = json!({"max_channels_per_connection": 2}))
            .await;
    let mut client = server.client().await;
    client.subscribe("one").await;
    client.subscribe("two").await;
    let reply = client.subscribe_with(json!({"channel": "three"})).await;
    assert_subscription_error(&reply, "three", "LimitReached", 4100);
    // Re-subscribing to a channel it is in is not a new channel; leaving frees a place.
    client.subscribe("two").await;
    client
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "one"}}))
        .await;
    client.subscribe("three").await;
}
