//! Client events: private and presence only, never echoed, user_id on presence, rate limited.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

fn rejected(frame: &Value) -> bool {
    frame["event"] == "pusher:error" && frame["data"]["code"].is_null()
}

#[tokio::test]
async fn private_client_event_reaches_others_and_is_not_echoed() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_private("private-chat").await;
    b.subscribe_private("private-chat").await;
    a.send(
        json!({"event": "client-typing", "channel": "private-chat", "data": {"b": 1, "a": [true]}}),
    )
    .await;
    let got = b.recv().await;
    assert_eq!(
        got,
        json!({"event": "client-typing", "channel": "private-chat", "data": {"b": 1, "a": [true]}})
    );
    a.expect_silence(Duration::from_millis(300)).await;
    // String data is relayed as a string.
    a.send(json!({"event": "client-raw", "channel": "private-chat", "data": "plain"}))
        .await;
    assert_eq!(b.recv().await["data"], "plain");
}

#[tokio::test]
async fn presence_client_event_carries_the_sender_user_id() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join_presence("presence-chat", "alice").await;
    b.join_presence("presence-chat", "bob").await;
    a.recv_event("pusher_internal:member_added").await;
    b.send(json!({"event": "client-wave", "channel": "presence-chat", "data": {}}))
        .await;
    let got = a.recv().await;
    assert_eq!(got["event"], "client-wave");
    assert_eq!(got["user_id"], "bob");
}

#[tokio::test]
async fn client_events_are_refused_on_public_and_encrypted_channels() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    for client in [&mut a, &mut b] {
        client.subscribe("public-chat").await;
        client.subscribe_private("private-encrypted-chat").await;
    }
    for channel in ["public-chat", "private-encrypted-chat"] {
        a.send(json!({"event": "client-x", "channel": channel, "data": {}}))
            .await;
        assert!(rejected(&a.recv().await));
    }
    b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn client_events_need_a_subscription() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    b.subscribe_private("private-chat").await;
    a.send(json!({"event": "client-x", "channel": "private-chat", "data": {}}))
        .await;
    assert!(rejected(&a.recv().await));
    b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn client_events_are_refused_when_the_app_disables_them() {
    let server =
        TestServer::start_with(|c| TestServer::app(c)["enable_client_messages"] = json!(false))
            .await;
    let mut a = server.client().await;
    a.subscribe_private("private-chat").await;
    a.send(json!({"event": "client-x", "channel": "private-chat", "data": {}}))
        .await;
    let error = a.recv().await;
    assert!(rejected(&error));
    assert!(error["data"]["message"]
        .as_str()
        .unwrap()
        .contains("not enabled"));
}

#[tokio::test]
async fn oversized_client_event_is_refused() {
    let server =
        TestServer::start_with(|c| TestServer::app(c)["max_event_payload_in_kb"] = json!(1)).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_private("private-chat").await;
    b.subscribe_private("private-chat").await;
    a.send(json!({"event": "client-big", "channel": "private-chat", "data": "x".repeat(1100)}))
        .await;
    assert!(rejected(&a.recv().await));
    b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn client_events_over_the_rate_get_4301_and_the_socket_stays_open() {
    let server =
        TestServer::start_with(|c| TestServer::app(c)["max_client_events_per_second"] = json!(3))
            .await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_private("private-chat").await;
    b.subscribe_private("private-chat").await;
    for i in 0..4 {
        a.send(json!({"event": "client-n", "channel": "private-chat", "data": {"i": i}}))
            .await;
    }
    let error = a.recv().await;
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4301);
    for i in 0..3 {
        assert_eq!(b.recv().await["data"]["i"], i);
    }
    b.expect_silence(Duration::from_millis(200)).await;
    a.send(json!({"event": "pusher:ping"})).await;
    assert_eq!(a.recv().await["event"], "pusher:pong");
}
