//! `subscription_count` across nodes: every subscriber on every node hears the cluster-wide
//! count, throttled per channel for the whole cluster (changes within the window coalesce into
//! one announcement at its end), and each announcement is one webhook, not one per node.

use serde_json::{json, Value};

use crate::cluster_mode::hooked;
use crate::cluster_node::ClusterNode;
use crate::receiver::Receiver;
use crate::redis_server::RedisServer;
use crate::support::{data_of, Client};

/// Counts on, with a window wide enough that a burst of subscribes lands inside one.
fn counted(hook: &Receiver) -> impl Fn(&mut Value) + '_ {
    move |config: &mut Value| {
        hooked(hook, 0)(config);
        let app = &mut config["app_manager"]["array"]["apps"][0];
        app["enable_subscription_count"] = json!(true);
        app["webhooks"][0]["event_types"] = json!(["subscription_count"]);
        config["channel_limits"] = json!({"subscription_count_interval_ms": 1000});
    }
}

async fn next_count(client: &mut Client) -> u64 {
    let frame = client
        .recv_event("pusher_internal:subscription_count")
        .await;
    assert_eq!(frame["channel"], "room");
    data_of(&frame)["subscription_count"].as_u64().unwrap()
}

/// Reads a client's counts until `last`; returns all it heard.
async fn counts_until(client: &mut Client, last: u64) -> Vec<u64> {
    let mut heard = Vec::new();
    while heard.last() != Some(&last) {
        heard.push(next_count(client).await);
    }
    heard
}

fn hooked_counts(hook: &Receiver) -> Vec<u64> {
    hook.events_at("/hook")
        .iter()
        .filter(|e| e["name"] == "subscription_count" && e["channel"] == "room")
        .map(|e| e["subscription_count"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn subscription_counts_are_cluster_wide_throttled_once_and_hooked_once() {
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, counted(&hook));
    let b = ClusterNode::start(&redis, counted(&hook));

    // Connected up front (a connection alone changes no count), so the burst below takes no
    // longer than its subscribes.
    let mut burst = Vec::new();
    for node in [&a, &b, &a, &b] {
        burst.push(node.client().await);
    }
    let mut a1 = a.client().await;
    a1.subscribe("room").await;
    assert_eq!(
        next_count(&mut a1).await,
        1,
        "a quiet channel announces at once"
    );
    // Within the window: held until it ends, then announced on both nodes.
    let mut b1 = b.client().await;
    b1.subscribe("room").await;
    assert_eq!(next_count(&mut a1).await, 2);
    assert_eq!(next_count(&mut b1).await, 2);

    // A burst on both nodes right after an announcement: one announcement with the total.
    let subscribes = burst.iter_mut().map(|client| client.subscribe("room"));
    futures_util::future::join_all(subscribes).await;
    assert_eq!(counts_until(&mut a1, 6).await, [6], "coalesced into one");
    assert_eq!(counts_until(&mut b1, 6).await, [6]);
    for client in &mut burst {
        assert_eq!(counts_until(client, 6).await.last(), Some(&6));
    }

    for client in burst {
        client.disconnect().await;
    }
    let after_leaving = counts_until(&mut a1, 2).await;
    assert_eq!(
        counts_until(&mut b1, 2).await,
        after_leaving,
        "the same on both nodes"
    );

    // Every announcement is one webhook for the cluster, with the count its subscribers heard.
    let mut announced = vec![1, 2, 6];
    announced.extend(&after_leaving);
    hook.wait_until(|_| hooked_counts(&hook).len() >= announced.len())
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(hooked_counts(&hook), announced);
}
