//! A rolling deploy of a three-node cluster: each node in turn is stopped (SIGTERM) and started
//! again while its clients reconnect to another node; with the grace period held in Redis the
//! whole deploy sends no webhook, and afterwards the cluster's counts and fan-out are whole.

use std::time::Duration;

use serde_json::Value;

use crate::cluster_mode::{events, hooked, trigger};
use crate::cluster_node::ClusterNode;
use crate::receiver::Receiver;
use crate::redis_server::RedisServer;
use crate::support::{Client, Rest, APP_ID};

const GRACE_MS: u64 = 3000;
const CHANNELS: [&str; 3] = ["deploy-a", "deploy-b", "presence-deploy"];

/// A client and what it is subscribed to, so it can subscribe again after a reconnect.
struct Subscriber {
    client: Client,
    node: usize,
    channel: &'static str,
    user: String,
}

impl Subscriber {
    async fn connect(
        nodes: &[ClusterNode],
        node: usize,
        channel: &'static str,
        user: String,
    ) -> Subscriber {
        let mut client = nodes[node].client().await;
        match channel.starts_with("presence-") {
            true => client.join_presence(channel, &user).await,
            false => client.subscribe(channel).await,
        };
        Subscriber {
            client,
            node,
            channel,
            user,
        }
    }
}

async fn channel_info(node: &ClusterNode, channel: &str) -> Value {
    let path = format!("/apps/{APP_ID}/channels/{channel}");
    let info = match channel.starts_with("presence-") {
        true => "subscription_count,user_count",
        false => "subscription_count",
    };
    let query = [("info", info)];
    let (status, info) = Rest::new(node).get(&path, &query).await;
    assert_eq!(status, 200, "{info}");
    info
}

#[tokio::test]
async fn a_rolling_restart_of_every_node_sends_no_webhook() {
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let mut nodes: Vec<ClusterNode> = (0..3)
        .map(|_| ClusterNode::start(&redis, hooked(&hook, GRACE_MS)))
        .collect();
    let mut subscribers = Vec::new();
    for i in 0..12 {
        let channel = CHANNELS[(i / 3) % 3];
        // Users shared by several sockets, some of them on different nodes.
        let user = format!("u{}", i % 2);
        subscribers.push(Subscriber::connect(&nodes, i % 3, channel, user).await);
    }
    // 3 occupied, 2 members added; then quiet.
    hook.wait_until(|_| events(&hook).len() == 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = events(&hook);

    for stopped in 0..3 {
        nodes[stopped].stop();
        let (moving, staying): (Vec<_>, Vec<_>) =
            subscribers.into_iter().partition(|s| s.node == stopped);
        subscribers = staying;
        for moved in moving {
            assert_eq!(
                moved.client.closed().await.code,
                Some(4200),
                "told to reconnect"
            );
            let elsewhere = (stopped + 1) % 3;
            let again = Subscriber::connect(&nodes, elsewhere, moved.channel, moved.user).await;
            subscribers.push(again);
        }
        nodes[stopped].wait_exit();
        nodes[stopped] = ClusterNode::start(&redis, hooked(&hook, GRACE_MS));
    }

    // Past every hold: each was cancelled by a reconnect, so nothing was sent at all.
    tokio::time::sleep(Duration::from_millis(GRACE_MS + 700)).await;
    assert_eq!(events(&hook), before, "the deploy sent no webhook");

    for channel in CHANNELS {
        let here: Vec<_> = subscribers
            .iter()
            .filter(|s| s.channel == channel)
            .collect();
        let info = channel_info(&nodes[0], channel).await;
        assert_eq!(info["subscription_count"], here.len(), "{channel}: {info}");
        if channel.starts_with("presence-") {
            let mut users: Vec<_> = here.iter().map(|s| &s.user).collect();
            users.sort();
            users.dedup();
            assert_eq!(info["user_count"], users.len(), "{channel}: {info}");
        }
        trigger(&nodes[1], channel, "after the deploy", None).await;
    }
    for subscriber in &mut subscribers {
        let event = subscriber.client.recv_event("e").await;
        assert_eq!(event["channel"], subscriber.channel);
        assert_eq!(event["data"], "after the deploy");
    }
}
