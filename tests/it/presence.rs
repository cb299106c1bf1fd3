//! Presence channels: member lists, member_added/removed once per user, limits.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn subscription_succeeded_lists_members_including_self() {
    let server = TestServer::start().await;
    let mut alice = server.client().await;
    let presence = alice.join_presence("presence-room", "alice").await;
    assert_eq!(
        presence,
        json!({"presence": {"ids": ["alice"], "hash": {"alice": {"name": "alice"}}, "count": 1}})
    );
    let mut bob = server.client().await;
    let presence = bob.join_presence("presence-room", "bob").await;
    assert_eq!(presence["presence"]["count"], 2);
    assert_eq!(
        presence["presence"]["hash"]["alice"],
        json!({"name": "alice"})
    );
}

#[tokio::test]
async fn member_events_fire_once_per_user_not_per_socket() {
    let server = TestServer::start().await;
    let mut watcher = server.client().await;
    watcher.join_presence("presence-room", "watcher").await;

    let mut bob1 = server.client().await;
    bob1.join_presence("presence-room", "bob").await;
    let added = watcher.recv().await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(
        data_of(&added),
        json!({"user_id": "bob", "user_info": {"name": "bob"}})
    );

    let mut bob2 = server.client().await;
    let presence = bob2.join_presence("presence-room", "bob").await;
    assert_eq!(presence["presence"]["count"], 2);
    watcher.expect_silence(Duration::from_millis(300)).await;

    bob1.disconnect().await;
    watcher.expect_silence(Duration::from_millis(300)).await;
    bob2.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-room"}}))
        .await;
    let removed = watcher.recv().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(data_of(&removed), json!({"user_id": "bob"}));
}

#[tokio::test]
async fn numeric_and_string_user_ids_are_one_member() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let data = a.presence_data("presence-n", &json!({"user_id": 7}));
    assert_eq!(
        a.subscribe_with(data).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let mut b = server.client().await;
    let presence = b.join_presence("presence-n", "7").await;
    assert_eq!(presence["presence"]["count"], 1);
}

#[tokio::test]
async fn presence_signature_covers_channel_data() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut data = client.presence_data("presence-room", &json!({"user_id": "a"}));
    data["channel_data"] = json!(json!({"user_id": "admin"}).to_string());
    let reply = client.subscribe_with(data).await;
    assert_eq!(reply["event"], "pusher:subscription_error");
    assert_eq!(reply["data"]["type"], "AuthError");
}

#[tokio::test]
async fn members_over_the_limit_are_refused() {
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["max_presence_members_per_channel"] = json!(2)
    })
    .await;
    let mut a = server.client().await;
    a.join_presence("presence-full", "a").await;
    let mut b = server.client().await;
    b.join_presence("presence-full", "b").await;
    let mut c = server.client().await;
    let reply = c
        .subscribe_with(c.presence_data("presence-full", &json!({"user_id": "c"})))
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error");
    assert_eq!(reply["data"]["type"], "LimitReached");
    assert_eq!(reply["data"]["status"], 4100);
    // A second socket of a present user still fits, and the refused socket stays open.
    let mut a2 = server.client().await;
    a2.join_presence("presence-full", "a").await;
    c.send(json!({"event": "pusher:ping"})).await;
    assert_eq!(c.recv().await["event"], "pusher:pong");
}

#[tokio::test]
async fn oversized_member_data_is_refused() {
    let server =
        TestServer::start_with(|c| TestServer::app(c)["max_presence_member_size_in_kb"] = json!(1))
            .await;
    let mut client = server.client().await;
    let info = json!({"bio": "x".repeat(1100)});
    let reply = client
        .subscribe_with(
            client.presence_data("presence-big", &json!({"user_id": "u", "user_info": info})),
        )
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error");
    assert_eq!(reply["data"]["type"], "LimitReached");
    assert_eq!(reply["data"]["status"], 4301);
}

#[tokio::test]
async fn channel_data_must_have_a_user_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let reply = client
        .subscribe_with(client.presence_data("presence-x", &json!({"user_info": {}})))
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error");
    assert_eq!(reply["data"]["type"], "InvalidChannel");
}
