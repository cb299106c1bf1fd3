//! A cluster on a Sentinel-managed Redis: a primary, one replica and three sentinels. The
//! primary is killed with SIGKILL mid-traffic; the nodes follow Sentinel to the promoted
//! replica without a restart, cross-node events flow again, REST answers from either node,
//! presence agrees, and webhooks are neither lost after recovery nor sent twice.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster_mode::{events, hooked, trigger};
use crate::cluster_node::ClusterNode;
use crate::receiver::Receiver;
use crate::redis_server::RedisServer;
use crate::sentinel_support::{Sentinels, MASTER};
use crate::support::{Client, Rest, APP_ID};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// A node of `hook`'s cluster that finds its Redis through `sentinels` (no URL), its metrics
/// on `metrics_port`.
fn on_sentinels<'a>(
    hook: &'a Receiver,
    sentinels: &'a Sentinels,
    metrics_port: u16,
) -> impl Fn(&mut Value) + 'a {
    move |config: &mut Value| {
        config["metrics"] = json!({"enabled": true, "host": "127.0.0.1", "port": metrics_port});
        hooked(hook, 0)(config);
        if let Some(redis) = config["adapter"]["redis"].as_object_mut() {
            redis.remove("url");
            // Above the failover's length, as the README asks: else the first node back takes
            // the others for dead before they revive.
            redis.insert("heartbeat_interval_ms".into(), json!(500));
            redis.insert("node_timeout_ms".into(), json!(8000));
        }
        config["database"] = json!({"redis": {"sentinels": sentinels.config(), "name": MASTER}});
    }
}

/// Triggers on `from` until `to` receives it; returns how long that took.
async fn until_relayed(from: &ClusterNode, to: &mut Client, channel: &str) -> Duration {
    let started = Instant::now();
    for attempt in 0.. {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no cross-node event 30 s after the failover"
        );
        let data = format!("probe {attempt}");
        let (status, _) = Rest::new(from)
            .post(
                &format!("/apps/{APP_ID}/events"),
                json!({"name": "e", "channels": [channel], "data": data}),
            )
            .await;
        if status == 200 {
            let heard = tokio::time::timeout(Duration::from_millis(400), async {
                loop {
                    let frame = to.recv().await;
                    if frame["data"] == data.as_str() {
                        return;
                    }
                }
            });
            if heard.await.is_ok() {
                return started.elapsed();
            }
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    unreachable!()
}

async fn presence_users(node: &ClusterNode, channel: &str) -> (u16, Value) {
    let path = format!("/apps/{APP_ID}/channels/{channel}/users");
    Rest::new(node).get(&path, &[]).await
}

/// Per channel, the names of its events (as a receiver that de-duplicates by id sees them).
fn channel_events(hook: &Receiver, channel: &str) -> Vec<String> {
    events(hook)
        .into_iter()
        .filter(|(_, c, _)| c == channel)
        .map(|(name, _, user)| format!("{name} {user}").trim().to_owned())
        .collect()
}

#[tokio::test]
async fn nodes_follow_sentinel_to_the_promoted_replica() {
    let mut primary = RedisServer::start();
    let replica = RedisServer::replica_of(&primary);
    let sentinels = Sentinels::start(&primary).await;
    let hook = Receiver::start().await;
    let metrics_port = free_port();
    let a = ClusterNode::start(&primary, on_sentinels(&hook, &sentinels, metrics_port));
    let b = ClusterNode::start(&primary, on_sentinels(&hook, &sentinels, free_port()));
    let mut a1 = a.client().await;
    a1.subscribe("failover").await;
    a1.join_presence("presence-failover", "u1").await;
    let mut b1 = b.client().await;
    b1.subscribe("failover").await;
    b1.join_presence("presence-failover", "u2").await;
    trigger(&b, "failover", "before", None).await;
    assert_eq!(a1.recv_event("e").await["data"], "before");
    hook.wait_until(|_| events(&hook).len() == 4).await;

    // A churn that spans the failover: one socket at a time joins and leaves, on A then B.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let urls = [a.ws_url(), b.ws_url()];
    let churning = stop.clone();
    let churn = tokio::spawn(async move {
        let mut round = 0;
        while !churning.load(std::sync::atomic::Ordering::Relaxed) {
            let mut client = Client::connect(&urls[round % 2]).await;
            client.subscribe("span").await;
            client.disconnect().await;
            round += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        round
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert!(
        primary.replicated(),
        "the replica has every write before the primary dies"
    );
    primary.kill();
    let took = until_relayed(&b, &mut a1, "failover").await;
    eprintln!(
        "SIGKILL of the primary to a cross-node event: {} ms",
        took.as_millis()
    );
    assert_eq!(
        sentinels.primary_port().await,
        Some(replica.port),
        "the replica was promoted"
    );
    // Node A's pub/sub may follow the new primary before its recovery has counted the move.
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if metrics.contains("herald_redis_failovers_total 1") || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        metrics.contains("herald_redis_failovers_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_redis_reconnects_total{connection=\"pubsub\"}"),
        "{metrics}"
    );
    // Each node puts its members back as its own recovery resyncs: both agree within a bound.
    for node in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, users) = presence_users(node, "presence-failover").await;
            let mut ids: Vec<_> = (users["users"].as_array().into_iter().flatten())
                .map(|u| u["id"].clone())
                .collect();
            ids.sort_by_key(|id| id.to_string());
            if status == 200 && ids == [json!("u1"), json!("u2")] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "presence agrees on both nodes: {status} {users}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = churn.await.unwrap();
    // Transitions after the recovery are announced once each, strictly alternating.
    for _ in 0..3 {
        let mut joiner = a.client().await;
        joiner.subscribe("after-failover").await;
        joiner.disconnect().await;
        let mut joiner = b.client().await;
        joiner.subscribe("after-failover").await;
        joiner.disconnect().await;
    }
    // Bounded by more than the receiver's usual wait: a webhook round holding a command sent to
    // the dead primary waits for that command's reconnection timeout first.
    let deadline = Instant::now() + Duration::from_secs(15);
    while channel_events(&hook, "after-failover").len() < 12 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            channel_events(&hook, "after-failover")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let churn = channel_events(&hook, "after-failover");
    let alternating: Vec<&str> = (0..12)
        .map(|i| ["channel_occupied", "channel_vacated"][i % 2])
        .collect();
    assert_eq!(churn, alternating);
    // Across the failover some transitions may be lost, never one sent twice or out of turn.
    let span = channel_events(&hook, "span");
    assert!(
        span.len() <= 2 * rounds,
        "{} events for {rounds} rounds",
        span.len()
    );
    for (i, name) in span.iter().enumerate() {
        let expected = ["channel_occupied", "channel_vacated"][i % 2];
        assert_eq!(
            name, expected,
            "strictly alternating across the failover: {span:?}"
        );
    }
    assert_eq!(span.last().map(String::as_str), Some("channel_vacated"));
    assert_eq!(
        channel_events(&hook, "failover"),
        ["channel_occupied"],
        "nothing resent for a channel that stayed"
    );
    let mut members = channel_events(&hook, "presence-failover");
    members.sort();
    assert_eq!(
        members,
        ["channel_occupied", "member_added u1", "member_added u2"]
    );
}
