//! One Redis Cluster shard out (its primary paused, its replica forbidden to take over, and the
//! cluster told to serve the slots it still covers): each node serves that shard's channels
//! locally and answers 503 for their REST reads, and `GET /channels` with 503; every other
//! channel crosses nodes as before; `herald_cluster_online{shard}` names the shard out. When
//! the shard answers again its channels cross nodes again, and what changed meanwhile on one
//! node reaches the other once.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster_mode::{count, events, hooked, trigger};
use crate::cluster_node::ClusterNode;
use crate::cluster_shards::until_delivered;
use crate::receiver::Receiver;
use crate::redis_cluster::{free_port, RedisCluster};
use crate::support::{Rest, APP_ID};
use herald::cluster::redis::fanout::topic;

/// Reads node's metrics until `wanted` holds of them, for at most `bound`; how long it took.
async fn metrics_until(port: u16, bound: Duration, wanted: impl Fn(&str) -> bool) -> Duration {
    let (url, started) = (format!("http://127.0.0.1:{port}/metrics"), Instant::now());
    loop {
        let metrics = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if wanted(&metrics) {
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn online(metrics: &str, port: u16, value: u8) -> bool {
    let series = format!("herald_cluster_online{{shard=\"127.0.0.1:{port}\"}} {value}");
    metrics.lines().any(|line| line == series)
}

/// The REST status of a GET on node.
async fn status(node: &ClusterNode, path: &str) -> u16 {
    Rest::new(node)
        .get(&format!("/apps/{APP_ID}{path}"), &[])
        .await
        .0
}

#[tokio::test]
async fn a_shard_out_costs_only_the_channels_of_its_partitions() {
    let whole = tokio::time::timeout(Duration::from_secs(120), shard_out());
    whole.await.expect("the test ends within 120 s");
}

async fn shard_out() {
    let redis = RedisCluster::start_with(&["--cluster-require-full-coverage", "no"]);
    let metrics_port = free_port();
    let hook = Receiver::start().await;
    let config = |port: u16| {
        let hook = &hook;
        move |config: &mut Value| {
            hooked(hook, 0)(config);
            config["adapter"]["redis"]["heartbeat_interval_ms"] = json!(500);
            config["adapter"]["redis"]["node_timeout_ms"] = json!(30_000);
            config["metrics"] = json!({"enabled": true, "host": "127.0.0.1", "port": port});
        }
    };
    let a = ClusterNode::start(&redis, config(metrics_port));
    let b = ClusterNode::start(&redis, config(free_port()));

    // The shard taken out is not the one of the node registry (without it no node is in the
    // cluster at all).
    let registry = redis.owner_of("it:{nodes}:epoch");
    let victim = *redis.primaries().iter().find(|p| **p != registry).unwrap();
    let on_victim = |stem: &str, wanted: bool| -> String {
        (0..1000)
            .map(|i| format!("{stem}-{i}"))
            .find(|c| (redis.owner_of(&topic("it", APP_ID, c)) == victim) == wanted)
            .unwrap()
    };
    let (out, kept, team, fresh) = (
        on_victim("room", true),
        on_victim("room", false),
        on_victim("presence-team", true),
        on_victim("fresh", false),
    );
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    for channel in [&out, &kept] {
        on_a.subscribe(channel).await;
        on_b.subscribe(channel).await;
    }
    let mut a_member = a.client().await;
    a_member.join_presence(&team, "u1").await;
    let mut b_member = b.client().await;
    b_member.join_presence(&team, "u2").await;
    a_member.recv_event("pusher_internal:member_added").await;
    let bound = Duration::from_secs(15);
    until_delivered(&a, &mut on_b, &out, "before", bound).await;

    // Out: no replica takes over, and the other shards go on serving their slots.
    let replica = redis.replica_of(victim);
    redis.cli(
        replica,
        &["CONFIG", "SET", "cluster-replica-no-failover", "yes"],
    );
    // Asked before the pause: redis-cli would wait for ever on the paused server.
    let primaries = redis.primaries();
    redis.pause(victim);
    let took = metrics_until(metrics_port, bound, |m| {
        online(m, victim, 0) && primaries.iter().all(|p| *p == victim || online(m, *p, 1))
    })
    .await;
    eprintln!("the shard out shows in herald_cluster_online after {took:?}");

    // The other shards' channels cross nodes and answer REST; the shard's own answer 503.
    until_delivered(&a, &mut on_b, &kept, "kept", bound).await;
    for node in [&a, &b] {
        assert_eq!(status(node, &format!("/channels/{kept}")).await, 200);
        assert_eq!(status(node, &format!("/channels/{out}")).await, 503);
        assert_eq!(status(node, &format!("/channels/{team}/users")).await, 503);
        assert_eq!(status(node, "/channels").await, 503);
    }
    // The other shards' webhooks are delivered meanwhile.
    let mut first = a.client().await;
    first.subscribe(&fresh).await;
    // (A round already waiting on the shard when it went out waits for its 5 s timeout.)
    let started = Instant::now();
    while count(&events(&hook), "channel_occupied", &fresh) != 1 {
        assert!(started.elapsed() < bound, "{:?}", events(&hook));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The shard's channels are served locally, at once (no timeout per request).
    let started = Instant::now();
    trigger(&a, &out, "local", None).await;
    // Skipping what the earlier rounds left queued.
    while on_a.recv_event("e").await["data"] != "local" {}
    let mut late = a.client().await;
    late.subscribe(&out).await;
    late.disconnect().await;
    let mut newcomer = a.client().await;
    newcomer.join_presence(&team, "u3").await;
    let added = a_member.recv_event("pusher_internal:member_added").await;
    assert!(added["data"].as_str().unwrap().contains("u3"), "{added}");
    // Well under one Redis response timeout (5 s) for all of it.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    on_b.expect_silence(Duration::from_millis(300)).await;

    // Back: the shard's channels cross nodes again, B hears of the member who joined on A
    // meanwhile (once), and both nodes list the same members.
    let paused_at = Instant::now();
    redis.resume(victim);
    let took = until_delivered(&a, &mut on_b, &out, "after", bound).await;
    eprintln!("the shard's channels cross nodes {took:?} after it answers again");
    let added = b_member.recv_event("pusher_internal:member_added").await;
    assert!(added["data"].as_str().unwrap().contains("u3"), "{added}");
    for node in [&a, &b] {
        let path = format!("/apps/{APP_ID}/channels/{team}/users");
        let started = Instant::now();
        loop {
            let (status, reply) = Rest::new(node).get(&path, &[]).await;
            let ids: Vec<&str> = (reply["users"].as_array().into_iter().flatten())
                .filter_map(|u| u["id"].as_str())
                .collect();
            let mut ids = ids;
            ids.sort();
            if status == 200 && ids == ["u1", "u2", "u3"] {
                break;
            }
            assert!(started.elapsed() < bound, "{status} {reply}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(status(&b, "/channels").await, 200);
    metrics_until(metrics_port, bound, |m| online(m, victim, 1)).await;
    b_member.expect_silence(Duration::from_millis(500)).await;
    eprintln!("back in {:?}", paused_at.elapsed());

    // What stayed is not announced again; what changed during the outage is, once.
    hook.wait_until(|_| count(&events(&hook), "member_added", &team) == 3)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = events(&hook);
    assert_eq!(count(&events, "member_added", &team), 3, "{events:?}");
    for channel in [&out, &kept, &team, &fresh] {
        assert_eq!(count(&events, "channel_occupied", channel), 1, "{channel}");
        assert_eq!(count(&events, "channel_vacated", channel), 0, "{channel}");
    }
}
