//! The cluster's node registry against a real Redis: a live node's id is refused, a dead one's
//! is taken over, dead incarnations are found by Redis time, a node that lost its id knows it
//! is fenced, and one whose beat merely lapsed knows that too.

use std::time::Duration;

use herald::cluster::redis::{connect, node, Beat, JoinError, NodeMembership};
use herald::config::{ClusterConfig, Config, RedisConfig};
use serde_json::json;

use crate::redis_server::RedisServer;

/// A cluster config on `redis` with fast timings: heartbeat 100 ms, node timeout 400 ms.
fn config(redis: &RedisServer, node_id: Option<&str>) -> RedisConfig {
    let adapter = json!({"driver": "redis", "node_id": node_id,
        "redis": {"url": redis.url(), "prefix": "t", "heartbeat_interval_ms": 100, "node_timeout_ms": 400}});
    let config = Config::from_json(&json!({ "adapter": adapter }).to_string()).unwrap();
    match config.cluster {
        ClusterConfig::Redis(redis) => redis,
        ClusterConfig::Local => unreachable!("the driver is redis"),
    }
}

/// Beats every heartbeat interval until dropped.
fn keep_beating(
    membership: std::sync::Arc<NodeMembership>,
    mut con: herald::cluster::redis::RedisConnection,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            assert_eq!(membership.beat(&mut con).await.unwrap(), Beat::Alive);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test]
async fn a_live_nodes_id_is_refused_and_a_dead_ones_is_taken_over() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    let config = config(&redis, Some("n1"));
    let first = std::sync::Arc::new(NodeMembership::join(&mut con, &config).await.unwrap());
    assert_eq!(first.id(), "n1");
    let beating = keep_beating(first.clone(), con.clone());

    let refused = tokio::time::timeout(
        Duration::from_secs(3),
        NodeMembership::join(&mut con, &config),
    )
    .await
    .expect("a live holder is recognised within a few heartbeats");
    match refused {
        Err(JoinError::IdInUse { id, holder }) => {
            assert_eq!((id.as_str(), holder.as_str()), ("n1", first.incarnation()));
        }
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(_) => panic!("a second node took the id of a live one"),
    }

    // The holder dies (stops beating): its id is free once its key expires.
    beating.abort();
    let second = tokio::time::timeout(
        Duration::from_secs(3),
        NodeMembership::join(&mut con, &config),
    )
    .await
    .expect("a dead holder's id is taken over after its timeout")
    .unwrap();
    assert_eq!(second.id(), "n1");
    assert_ne!(
        second.incarnation(),
        first.incarnation(),
        "a restart is a new incarnation"
    );
    assert_eq!(
        first.beat(&mut con).await.unwrap(),
        Beat::Fenced,
        "the old incarnation is fenced"
    );
    assert_eq!(second.beat(&mut con).await.unwrap(), Beat::Alive);
}

#[tokio::test]
async fn dead_incarnations_are_found_by_redis_time() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    let quiet = NodeMembership::join(&mut con, &config(&redis, None))
        .await
        .unwrap();
    assert!(
        quiet.id().starts_with("node-"),
        "a generated id: {}",
        quiet.id()
    );
    let alive = std::sync::Arc::new(
        NodeMembership::join(&mut con, &config(&redis, None))
            .await
            .unwrap(),
    );
    assert_ne!(quiet.id(), alive.id());
    let beating = keep_beating(alive.clone(), con.clone());
    assert!(alive.dead_incarnations(&mut con).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        alive.dead_incarnations(&mut con).await.unwrap(),
        [quiet.incarnation().to_owned()]
    );
    let seen_by_the_quiet_one = quiet.dead_incarnations(&mut con).await.unwrap();
    assert!(
        !seen_by_the_quiet_one.contains(&alive.incarnation().to_owned()),
        "a beating node is alive"
    );
    beating.abort();
}

#[tokio::test]
async fn a_beat_that_lapsed_without_a_reap_is_not_fenced_and_the_node_revives() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    let stalled = NodeMembership::join(&mut con, &config(&redis, None))
        .await
        .unwrap();
    assert_eq!(stalled.beat(&mut con).await.unwrap(), Beat::Alive);
    // No beat for longer than the timeout (Redis stalled), and nobody reaped it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        stalled.beat(&mut con).await.unwrap(),
        Beat::Lapsed,
        "a lapse, not a fence"
    );
    assert!(stalled.revive(&mut con).await.unwrap());
    assert_eq!(stalled.beat(&mut con).await.unwrap(), Beat::Alive);

    // Once a survivor forgot it (the end of a reap), the same wait is a fence.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let survivor = NodeMembership::join(&mut con, &config(&redis, None))
        .await
        .unwrap();
    let dead = survivor.dead_incarnations(&mut con).await.unwrap();
    assert_eq!(dead, [stalled.incarnation().to_owned()]);
    survivor.forget(&mut con, &dead[0]).await.unwrap();
    assert_eq!(stalled.beat(&mut con).await.unwrap(), Beat::Fenced);
    assert!(!stalled.revive(&mut con).await.unwrap());
}

#[tokio::test]
async fn the_eviction_policy_is_read_from_redis() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    assert_eq!(
        node::maxmemory_policy(&mut con).await.as_deref(),
        Some("noeviction")
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        node::maxmemory_policy(&mut con).await.as_deref(),
        Some("allkeys-lru")
    );
}

#[tokio::test]
async fn a_node_that_cannot_reach_redis_does_not_start() {
    let mut config = crate::support::base_config();
    // Port 1 on loopback: nothing listens there.
    config["adapter"] = json!({"driver": "redis", "redis": {"url": "redis://127.0.0.1:1/0"}});
    let config = Config::from_json(&config.to_string()).unwrap();
    let error = herald::server::Server::bind(config)
        .await
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(message.contains("adapter.driver"), "{message}");
    assert!(message.contains("cannot connect to Redis"), "{message}");
}

/// Waits until `done` holds, polling every 20 ms, for at most `bound`; returns how long it took.
async fn within(bound: Duration, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let started = tokio::time::Instant::now();
    while !done().await {
        assert!(started.elapsed() < bound, "not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_surviving_node_reaps_a_dead_one_and_the_dead_one_finds_itself_fenced() {
    use herald::cluster::redis::availability::Availability;
    use herald::cluster::redis::channel_state::{partition_of, ChannelState, Joining};
    use herald::cluster::redis::liveness::{Liveness, NodeHealth};
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    let config = config(&redis, None);
    let dead = Arc::new(NodeMembership::join(&mut con, &config).await.unwrap());
    let alive = Arc::new(NodeMembership::join(&mut con, &config).await.unwrap());
    let dead_state = ChannelState::new("t", dead.incarnation(), 0);
    let alive_state = Arc::new(ChannelState::new("t", alive.incarnation(), 0));
    let join = |channel, socket| Joining {
        app: "a",
        channel,
        socket,
        member: None,
        max_members: 0,
        cached: false,
    };
    dead_state
        .join(&mut con, &join("alone", "1.1"))
        .await
        .unwrap();
    dead_state
        .join(&mut con, &join("shared", "1.2"))
        .await
        .unwrap();
    alive_state
        .join(&mut con, &join("shared", "2.1"))
        .await
        .unwrap();

    // The first node dies without a word; the second goes about its duties.
    let close = CancellationToken::new();
    let duties = Liveness::start(
        con.clone(),
        alive.clone(),
        (alive_state.clone(), Arc::new(Availability::new(false))),
        Duration::from_millis(100),
        close.clone(),
    );
    let stream = alive_state.stream(partition_of("a", "alone"));
    // Within a few heartbeats of the node timeout (400 ms here), not an exact figure.
    within(Duration::from_secs(3), async || {
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .query_async(&mut con)
            .await
            .unwrap();
        // The vacate is appended by the reap; the dead incarnation is forgotten after it.
        let vacated = entries
            .iter()
            .any(|(_, f)| f.contains(&"channel_vacated".to_owned()));
        vacated && alive.dead_incarnations(&mut con).await.unwrap().is_empty()
    })
    .await;
    assert_eq!(
        alive_state
            .subscription_count(&mut con, "a", "alone")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        alive_state
            .subscription_count(&mut con, "a", "shared")
            .await
            .unwrap(),
        1,
        "occupied elsewhere"
    );
    assert_eq!(*duties.health.borrow(), NodeHealth::Alive);

    // The dead node was only paused: when it wakes, its first heartbeat finds it fenced.
    let woken = Liveness::start(
        con.clone(),
        dead.clone(),
        (Arc::new(dead_state), Arc::new(Availability::new(false))),
        Duration::from_millis(100),
        close.clone(),
    );
    let mut health = woken.health.clone();
    tokio::time::timeout(
        Duration::from_secs(2),
        health.wait_for(|h| *h == NodeHealth::Fenced),
    )
    .await
    .expect("fenced within a heartbeat")
    .unwrap();
    woken.task.await.unwrap();
    close.cancel();
    duties.task.await.unwrap();
}

#[tokio::test]
async fn a_node_on_another_wire_is_refused_while_the_others_live() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    let classic = std::sync::Arc::new(
        NodeMembership::join(&mut con, &config(&redis, None))
            .await
            .unwrap(),
    );
    let beating = keep_beating(classic.clone(), con.clone());
    // The same Redis taken for a Redis Cluster on sharded pub/sub: another wire.
    let mut sharded = config(&redis, None);
    let cluster = json!({"driver": "redis-cluster", "cluster": {"nodes": [redis.url()]}});
    let cluster = Config::from_json(&json!({ "adapter": cluster }).to_string()).unwrap();
    let ClusterConfig::Redis(cluster) = cluster.cluster else {
        unreachable!("the driver is redis-cluster")
    };
    sharded.cluster = cluster.cluster;
    match NodeMembership::join(&mut con, &sharded).await {
        Err(JoinError::OtherWire { ours, theirs }) => {
            assert_eq!(
                (ours.as_str(), theirs.as_str()),
                ("h1 spublish", "h1 publish")
            );
        }
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(_) => panic!("a node on another wire joined live nodes"),
    }
    // Once every node of the old wire is gone a timeout (400 ms), the cluster may change it.
    beating.abort();
    tokio::time::sleep(Duration::from_millis(600)).await;
    NodeMembership::join(&mut con, &sharded)
        .await
        .expect("the wire is free once its nodes are gone");
}
