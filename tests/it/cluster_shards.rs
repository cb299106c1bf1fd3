//! On a Redis Cluster Herald's pub/sub is sharded: a channel's events travel on the shard that
//! owns its topic's slot only, no classic subscription is left (nothing is copied to every
//! shard), and a batch trigger's order across channels of different shards is kept.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster_console::{overview_until, session, with_console};
use crate::cluster_mode::{count, events, hooked, trigger};
use crate::cluster_node::ClusterNode;
use crate::receiver::Receiver;
use crate::redis_cluster::{migrate_slot_of, RedisCluster};
use crate::support::{Client, Rest, APP_ID};
use herald::cluster::redis::fanout::topic;

/// The number on the last line of a redis-cli reply.
fn last_number(reply: &str) -> i64 {
    let line = reply.lines().last().unwrap_or("");
    line.trim()
        .parse()
        .unwrap_or_else(|_| panic!("a number: {reply:?}"))
}

#[tokio::test]
async fn events_travel_on_their_shard_only_and_a_batch_keeps_its_order_across_shards() {
    let redis = RedisCluster::start();
    let a = ClusterNode::start(&redis, |_| {});
    let b = ClusterNode::start(&redis, |_| {});
    let channels: Vec<String> = (0..8).map(|i| format!("room-{i}")).collect();
    let mut on_b = b.client().await;
    for channel in &channels {
        on_b.subscribe(channel).await;
    }
    let mut on_a = a.client().await;
    on_a.subscribe(&channels[0]).await;

    let primaries = redis.primaries();
    assert_eq!(primaries.len(), 3);
    for port in &primaries {
        let classic = redis.cli(*port, &["PUBSUB", "CHANNELS"]);
        assert_eq!(classic.trim(), "", "no classic subscription on {port}");
    }
    // Each topic is subscribed on the one shard that owns its slot, by both nodes.
    let mut shards_used = std::collections::HashSet::new();
    for channel in &channels {
        let topic = topic("it", APP_ID, channel);
        let owners: Vec<(u16, i64)> = primaries
            .iter()
            .map(|port| {
                let reply = redis.cli(*port, &["PUBSUB", "SHARDNUMSUB", &topic]);
                (*port, last_number(&reply))
            })
            .filter(|(_, subscribers)| *subscribers > 0)
            .collect();
        assert_eq!(owners.len(), 1, "{topic} on one shard: {owners:?}");
        let wanted = if *channel == channels[0] { 2 } else { 1 };
        assert_eq!(owners[0].1, wanted, "{topic}'s subscribers");
        shards_used.insert(owners[0].0);
    }
    assert!(shards_used.len() > 1, "the channels span shards");

    // Batch triggers through A reach B's socket in each batch's order, across shards, round
    // after round (B reads each shard on a connection of its own: the items' stamps order them).
    for round in 0..5 {
        let batch: Vec<Value> = channels
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": "e", "channel": c, "data": format!("{round}.{i}")}))
            .collect();
        let (status, reply) = Rest::new(&a)
            .post(
                &format!("/apps/{APP_ID}/batch_events"),
                json!({ "batch": batch }),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        for (i, channel) in channels.iter().enumerate() {
            let event = on_b.recv_event("e").await;
            assert_eq!(event["channel"], channel.as_str(), "round {round}");
            assert_eq!(event["data"], format!("{round}.{i}"));
        }
        // A listens to the first channel only: it waits for nothing else.
        let event = on_a.recv_event("e").await;
        assert_eq!(event["data"], format!("{round}.0"));
    }
}

/// Triggers `data` on `channel` through `from` until `to` receives it (each try waits 1 s), for
/// at most `bound`; the time it took.
pub async fn until_delivered(
    from: &ClusterNode,
    to: &mut Client,
    channel: &str,
    data: &str,
    bound: Duration,
) -> Duration {
    let started = Instant::now();
    while started.elapsed() < bound {
        trigger(from, channel, data, None).await;
        let heard = tokio::time::timeout(Duration::from_secs(1), to.recv_event("e")).await;
        if heard.is_ok_and(|event| event["data"] == data) {
            return started.elapsed();
        }
    }
    panic!("{data} on {channel} did not cross nodes within {bound:?}");
}

#[tokio::test]
async fn a_shard_primary_killed_fails_over_and_nothing_is_announced_twice() {
    let mut redis = RedisCluster::start();
    let hook = Receiver::start().await;
    // A node timeout above the failover's length (about 2 s with cluster-node-timeout 1000),
    // as the README asks: else the first node back takes the other for dead.
    let config = |config: &mut Value| {
        hooked(&hook, 0)(config);
        with_console(config);
        config["adapter"]["redis"]["heartbeat_interval_ms"] = json!(500);
        config["adapter"]["redis"]["node_timeout_ms"] = json!(8000);
    };
    let a = ClusterNode::start(&redis, config);
    let b = ClusterNode::start(&redis, config);
    let channels: Vec<String> = (0..6).map(|i| format!("room-{i}")).collect();
    let mut on_b = b.client().await;
    for channel in &channels {
        on_b.subscribe(channel).await;
    }
    let mut a_member = a.client().await;
    a_member.join_presence("presence-team", "u1").await;
    let mut b_member = b.client().await;
    b_member.join_presence("presence-team", "u2").await;
    hook.wait_until(|_| count(&events(&hook), "member_added", "presence-team") == 2)
        .await;

    // The console names the shards' primaries.
    let addresses = |ports: Vec<u16>| {
        let mut listed: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        listed.sort();
        json!(listed)
    };
    let cookie = session(&a).await;
    let before = addresses(redis.primaries());
    overview_until(&a, &cookie, Duration::from_secs(10), |o| {
        o["redis"]["primaries"] == before
    })
    .await;

    // The shard of the first channel's partition loses its primary mid-traffic.
    let victim = redis.owner_of(&topic("it", APP_ID, &channels[0]));
    trigger(&a, &channels[0], "before", None).await;
    let killed = Instant::now();
    redis.kill(victim);
    redis.wait_until_healed(victim);
    eprintln!("a replica took over {:?} after the kill", killed.elapsed());
    let bound = Duration::from_secs(15);
    let mut slowest = Duration::ZERO;
    for channel in &channels {
        let took =
            until_delivered(&a, &mut on_b, channel, &format!("after-{channel}"), bound).await;
        slowest = slowest.max(took);
    }
    eprintln!(
        "events cross nodes on every shard {slowest:?} after that ({:?} after the kill)",
        killed.elapsed()
    );

    // The console names the promoted replica instead.
    let after = addresses(redis.primaries());
    assert_ne!(before, after);
    overview_until(&a, &cookie, Duration::from_secs(10), |o| {
        o["redis"]["primaries"] == after
    })
    .await;

    // Presence agrees on both nodes; REST answers from either.
    let path = format!("/apps/{APP_ID}/channels/presence-team/users");
    let users = |reply: &Value| {
        let mut ids: Vec<String> = reply["users"]
            .as_array()
            .map(|u| {
                u.iter()
                    .map(|u| u["id"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    for node in [&a, &b] {
        let started = Instant::now();
        loop {
            let (status, reply) = Rest::new(node).get(&path, &[]).await;
            if status == 200 && users(&reply) == ["u1", "u2"] {
                break;
            }
            assert!(started.elapsed() < bound, "{status} {reply}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A churn after the failover is announced once each, and nothing before it twice.
    let mut churn = b.client().await;
    churn.subscribe("after-failover").await;
    churn.disconnect().await;
    a_member.disconnect().await;
    hook.wait_until(|_| {
        let events = events(&hook);
        count(&events, "channel_vacated", "after-failover") == 1
            && count(&events, "member_removed", "presence-team") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = events(&hook);
    for channel in &channels {
        assert_eq!(count(&events, "channel_occupied", channel), 1, "{channel}");
    }
    assert_eq!(count(&events, "member_added", "presence-team"), 2);
    assert_eq!(count(&events, "channel_occupied", "after-failover"), 1);
}

#[tokio::test]
async fn a_busy_channels_slot_migrated_mid_traffic_keeps_its_subscribers_and_order() {
    let redis = RedisCluster::start();
    // Production's node timeout: a node that needs a few seconds to resync after the move is
    // not taken for dead meanwhile.
    let timings = |config: &mut Value| {
        config["adapter"]["redis"]["heartbeat_interval_ms"] = json!(500);
        config["adapter"]["redis"]["node_timeout_ms"] = json!(8000);
    };
    let a = ClusterNode::start(&redis, timings);
    let b = ClusterNode::start(&redis, timings);
    let mut on_b = b.client().await;
    on_b.subscribe("busy").await;
    let mut member = b.client().await;
    member.join_presence("presence-busy", "u1").await;

    // Events on `busy` through A, numbered, while its slot moves to another shard.
    let publishing = {
        let rest = Rest::new(&a);
        async move {
            for n in 0..60 {
                let body = json!({"name": "e", "channels": ["busy"], "data": n.to_string()});
                let (status, reply) = rest.post(&format!("/apps/{APP_ID}/events"), body).await;
                assert_eq!(status, 200, "{reply}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let migrating = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let from = redis.owner_of(&topic("it", APP_ID, "busy"));
        let (ports, key) = (redis.ports(), topic("it", APP_ID, "busy"));
        let moving = tokio::task::spawn_blocking(move || migrate_slot_of(&ports, &key));
        let to = moving.await.expect("the migration ran");
        assert_ne!(from, to);
        assert_eq!(redis.owner_of(&topic("it", APP_ID, "busy")), to);
    };
    tokio::join!(publishing, migrating);

    // What B got is in order without a repeat, and the last events (after the move) all came.
    let mut got: Vec<u32> = Vec::new();
    while let Ok(event) = tokio::time::timeout(Duration::from_secs(2), on_b.recv_event("e")).await {
        got.push(event["data"].as_str().unwrap().parse().unwrap());
        if got.last() == Some(&59) {
            break;
        }
    }
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order, once each: {got:?}"
    );
    assert_eq!(got.last(), Some(&59), "{got:?}");
    assert!(got.len() >= 40, "at most a short gap at the move: {got:?}");
    eprintln!(
        "{} of 60 events crossed nodes across the slot's move",
        got.len()
    );

    // The channel's state moved with its slot: both nodes count it, presence included.
    for (node, channel, field, value) in [
        (&a, "busy", "subscription_count", 1),
        (&b, "busy", "subscription_count", 1),
        (&a, "presence-busy", "user_count", 1),
    ] {
        let path = format!("/apps/{APP_ID}/channels/{channel}");
        let started = Instant::now();
        loop {
            let (status, reply) = Rest::new(node).get(&path, &[("info", field)]).await;
            if status == 200 && reply[field] == value {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{status} {reply}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    trigger(&a, "busy", "after", None).await;
    let event = on_b.recv_event("e").await;
    assert_eq!(event["data"], "after");
}

#[tokio::test]
async fn a_channels_quick_leave_and_return_is_not_taken_for_a_moved_slot() {
    let redis = RedisCluster::start();
    let b = ClusterNode::start(&redis, with_console);
    let cookie = session(&b).await;
    let mut client = b.client().await;
    // Each unsubscribe of the node's last socket on the channel sends SUNSUBSCRIBE; its
    // confirmation comes as the push a slot's move would send, often after the next subscribe.
    client.subscribe("flicker").await;
    for _ in 0..100 {
        let leave = json!({"event": "pusher:unsubscribe", "data": {"channel": "flicker"}});
        client.send(leave).await;
        let join = json!({"event": "pusher:subscribe", "data": {"channel": "flicker"}});
        client.send(join).await;
    }
    // The last join's reply: every leave and join before it was carried out.
    for _ in 0..100 {
        client
            .recv_event("pusher_internal:subscription_succeeded")
            .await;
    }
    let seen = overview_until(&b, &cookie, Duration::from_secs(5), |o| {
        o["redis"]["pubsub_reconnects"].is_u64()
    })
    .await;
    assert_eq!(seen["redis"]["pubsub_reconnects"], 0, "{seen}");
    // Still listening: an event through REST reaches the socket.
    trigger(&b, "flicker", "still-here", None).await;
    assert_eq!(client.recv_event("e").await["data"], "still-here");
}
