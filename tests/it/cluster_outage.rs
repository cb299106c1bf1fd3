//! Redis goes away and comes back: the nodes keep serving their own sockets meanwhile, then
//! resync; a Redis that lost its data (restarted empty, flushed) is rebuilt from the nodes
//! without a second webhook for what stayed occupied, and one that stops answering is noticed.

use std::time::Duration;

use serde_json::Value;

use crate::cluster_mode::{count, events, hooked, trigger, trigger_named};
use crate::cluster_node::ClusterNode;
use crate::receiver::Receiver;
use crate::redis_server::RedisServer;
use crate::support::{Client, Rest, APP_ID};

/// Polls `channel` on `node` until `done` holds for its info (bounded: 15 s).
async fn wait_for_channel(node: &ClusterNode, channel: &str, done: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let path = format!("/apps/{APP_ID}/channels/{channel}");
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        let info = match channel.starts_with("presence-") {
            true => "subscription_count,user_count",
            false => "subscription_count",
        };
        let query = [("info", info)];
        let (status, info) = Rest::new(node).get(&path, &query).await;
        if status == 200 && done(&info) {
            return;
        }
        last = info;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{channel} did not converge in 15 s; last answer: {last}");
}

/// Triggers `probe` events on `node` until `client`, on another node, gets one: `node` is back
/// in the cluster (its publishes go through Redis again) rather than serving its own sockets
/// only (bounded: 15 s). Later probes are skipped by [`Client::recv_event`] of other names.
async fn wait_until_relayed(node: &ClusterNode, channel: &str, client: &mut Client) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        trigger_named(node, "probe", channel, "{}", None).await;
        let heard = client.recv_event("probe");
        if tokio::time::timeout(Duration::from_millis(200), heard)
            .await
            .is_ok()
        {
            return;
        }
    }
    panic!("{channel}: events triggered on the node did not reach the other node in 15 s");
}

async fn expect_data(client: &mut Client, data: &str) {
    assert_eq!(client.recv_event("e").await["data"], data);
}

/// Every webhook of `channel` by name, in arrival order.
fn names(hook: &Receiver, channel: &str) -> Vec<String> {
    events(hook)
        .into_iter()
        .filter(|(_, c, _)| c == channel)
        .map(|(name, ..)| name)
        .collect()
}

#[tokio::test]
async fn a_redis_restarted_empty_is_rebuilt_from_the_nodes_without_webhooks() {
    let mut redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, hooked(&hook, 0));
    let b = ClusterNode::start(&redis, hooked(&hook, 0));
    let mut a1 = a.client().await;
    a1.subscribe("stay").await;
    a1.join_presence("presence-stay", "u1").await;
    let mut b1 = b.client().await;
    b1.subscribe("stay").await;
    b1.join_presence("presence-stay", "u2").await;
    hook.wait_until(|_| count(&events(&hook), "member_added", "presence-stay") == 2)
        .await;

    redis.kill();
    // Offline, each node serves its own sockets: subscriptions and events among them work.
    let mut a2 = a.client().await;
    a2.subscribe("stay").await;
    let mut a3 = a.client().await;
    a3.subscribe("outage-room").await;
    trigger(&a, "stay", "local", None).await;
    expect_data(&mut a1, "local").await;
    expect_data(&mut a2, "local").await;

    redis.start_again();
    wait_for_channel(&b, "stay", |c| c["subscription_count"] == 3).await;
    wait_for_channel(&b, "presence-stay", |c| c["user_count"] == 2).await;
    wait_for_channel(&b, "outage-room", |c| c["subscription_count"] == 1).await;
    trigger(&b, "stay", "after", None).await;
    expect_data(&mut b1, "after").await;
    expect_data(&mut a1, "after").await;
    expect_data(&mut a2, "after").await;

    // The socket that joined during the outage is new to the cluster: announced once, and
    // its channel's vacate follows.
    a3.disconnect().await;
    hook.wait_until(|_| names(&hook, "outage-room").len() == 2)
        .await;
    assert_eq!(
        names(&hook, "outage-room"),
        ["channel_occupied", "channel_vacated"]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        names(&hook, "stay"),
        ["channel_occupied"],
        "no second occupied"
    );
    let presence = names(&hook, "presence-stay");
    assert_eq!(
        presence,
        ["channel_occupied", "member_added", "member_added"],
        "restored without events"
    );
}

#[tokio::test]
async fn a_flushed_redis_is_rebuilt_and_new_transitions_are_announced_once() {
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, hooked(&hook, 0));
    let b = ClusterNode::start(&redis, hooked(&hook, 0));
    let mut a1 = a.client().await;
    a1.join_presence("presence-kept", "u1").await;
    let mut b1 = b.client().await;
    b1.join_presence("presence-kept", "u2").await;
    hook.wait_until(|_| count(&events(&hook), "member_added", "presence-kept") == 2)
        .await;

    assert!(redis.command("FLUSHALL"), "FLUSHALL ran");
    wait_for_channel(&b, "presence-kept", |c| {
        c["subscription_count"] == 2 && c["user_count"] == 2
    })
    .await;
    trigger(&b, "presence-kept", "after the flush", None).await;
    expect_data(&mut a1, "after the flush").await;

    // Transitions after the rebuild are announced as usual, once each.
    let mut b2 = b.client().await;
    b2.join_presence("presence-kept", "u3").await;
    a1.disconnect().await;
    hook.wait_until(|_| names(&hook, "presence-kept").len() == 5)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen: Vec<_> = events(&hook)
        .into_iter()
        .filter(|(_, c, _)| c == "presence-kept")
        .map(|(name, _, user)| format!("{name} {user}"))
        .collect();
    assert_eq!(
        seen,
        [
            "channel_occupied ",
            "member_added u1",
            "member_added u2",
            "member_added u3",
            "member_removed u1"
        ]
    );
}

#[tokio::test]
async fn a_redis_that_stops_answering_is_noticed_and_the_nodes_resync_when_it_answers() {
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, hooked(&hook, 0));
    let b = ClusterNode::start(&redis, hooked(&hook, 0));
    let mut a1 = a.client().await;
    a1.subscribe("quiet").await;
    let mut b1 = b.client().await;
    b1.subscribe("quiet").await;
    hook.wait_until(|_| count(&events(&hook), "channel_occupied", "quiet") == 1)
        .await;

    // Connections stay open and nothing answers: the pub/sub check notices within its bound.
    redis.pause();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut a2 = a.client().await;
    a2.subscribe("quiet").await;
    trigger(&a, "quiet", "local", None).await;
    expect_data(&mut a1, "local").await;
    expect_data(&mut a2, "local").await;

    redis.resume();
    wait_for_channel(&b, "quiet", |c| c["subscription_count"] == 3).await;
    // Redis counting a's socket proves a resynced, not that b is back yet.
    wait_until_relayed(&b, "quiet", &mut a1).await;
    trigger(&b, "quiet", "after", None).await;
    expect_data(&mut a1, "after").await;
    expect_data(&mut a2, "after").await;
    expect_data(&mut b1, "after").await;
    // Everyone's heartbeat looked old when Redis answered again: nobody was reaped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(names(&hook, "quiet"), ["channel_occupied"]);
}
