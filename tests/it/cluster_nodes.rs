//! The cluster's node registry against a real Redis: a live node's id is refused, a dead one's
//! is taken over, dead incarnations are found by Redis time, and a node that lost its id knows
//! it is fenced.

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
    mut con: redis::aio::ConnectionManager,
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
async fn a_redis_cluster_config_is_refused_at_start_until_cluster_mode_is_complete() {
    let mut config = crate::support::base_config();
    config["adapter"] = json!({"driver": "redis"});
    let config = Config::from_json(&config.to_string()).unwrap();
    let error = herald::server::Server::bind(config)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("adapter.driver"), "{error}");
}
