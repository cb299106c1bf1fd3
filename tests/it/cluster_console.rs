//! The console's overview on a cluster counts every node from what the nodes write to Redis:
//! a node's figures appear within a heartbeat, go within the node timeout of its death, and
//! with Redis down the overview still answers with the node's own figures and says so. A
//! node's event log names the members its sockets add and remove, as a single node's does.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster_node::{ClusterNode, NODE_TIMEOUT_MS};
use crate::console::{client, console_get, console_session, has, read_stream};
use crate::redis_server::RedisServer;
use crate::support::{Served, APP_ID, WAIT};

const TOKEN: &str = "cluster-console-token-0123456789";

pub fn with_console(config: &mut Value) {
    config["console"] = json!({"token": TOKEN});
}

pub async fn session(node: &ClusterNode) -> String {
    console_session(node, TOKEN).await
}

async fn overview(node: &ClusterNode, cookie: &str) -> Value {
    console_get(node, cookie, "/console/api/overview").await
}

/// Polls the overview until `done` holds for it (bounded by `within`); returns it.
pub async fn overview_until(
    node: &ClusterNode,
    cookie: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let seen = overview(node, cookie).await;
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "overview never as expected: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn nodes(overview: &Value) -> Vec<&str> {
    let listed = overview["nodes"].as_array().unwrap();
    listed.iter().map(|n| n["node"].as_str().unwrap()).collect()
}

fn connections(overview: &Value) -> i64 {
    overview["apps"][0]["figures"]["connections"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn cluster_overview_counts_every_node_and_forgets_a_dead_one() {
    let mut redis = RedisServer::start();
    let a = ClusterNode::start(&redis, with_console);
    let mut b = ClusterNode::start(&redis, with_console);
    let (_on_a, _on_b) = (a.client().await, b.client().await);
    let cookie = session(&a).await;

    let both = overview_until(&a, &cookie, WAIT, |o| {
        nodes(o).len() == 2 && connections(o) == 2
    })
    .await;
    assert_eq!(both["cluster_unavailable"], false);
    // Which Redis this node uses, without credentials.
    let primary = format!("127.0.0.1:{}", redis.port);
    let with_redis = overview_until(&a, &cookie, WAIT, |o| {
        o["redis"]["primaries"] == json!([primary])
    })
    .await;
    assert_eq!(with_redis["redis"]["failovers"], 0, "{with_redis}");
    assert!(
        with_redis["redis"]["pubsub_reconnects"].is_u64(),
        "{with_redis}"
    );
    assert_eq!(both["apps"][0]["id"], APP_ID);
    assert_eq!(both["apps"][0]["channels"], 0);
    let own = both["node"].as_str().unwrap();
    assert!(nodes(&both).contains(&own), "{both}");
    for node in both["nodes"].as_array().unwrap() {
        assert_eq!(node["apps"][APP_ID]["connections"], 1, "{node}");
        assert!(node["apps"][APP_ID]["webhook_queue"].is_null(), "{node}");
    }
    let other = nodes(&both).into_iter().find(|n| *n != own).unwrap();

    // A SIGKILLed node says goodbye to nobody: its figures expire with the node timeout.
    b.kill();
    let killed = Instant::now();
    let alone = overview_until(&a, &cookie, WAIT, |o| nodes(o).len() == 1).await;
    let gone_after = killed.elapsed();
    assert!(
        gone_after < Duration::from_millis(NODE_TIMEOUT_MS + 400),
        "B's figures outlived the node timeout: {gone_after:?}"
    );
    assert_eq!(nodes(&alone), [own]);
    assert!(!alone.to_string().contains(other), "{alone}");
    assert_eq!(connections(&alone), 1);

    // Redis down: the node's own figures still, flagged as not the cluster's.
    redis.kill();
    let cut_off = overview(&a, &cookie).await;
    assert_eq!(cut_off["cluster_unavailable"], true, "{cut_off}");
    assert_eq!(nodes(&cut_off), [own]);
    assert_eq!(connections(&cut_off), 1);
    assert!(cut_off["apps"][0]["channels"].is_null(), "{cut_off}");
}

/// Redis decides that a member left (the user's last socket anywhere); its reply names the user,
/// so the node's entry does too.
#[tokio::test]
async fn a_nodes_event_log_names_the_members_added_and_removed() {
    let redis = RedisServer::start();
    let a = ClusterNode::start(&redis, with_console);
    let cookie = session(&a).await;
    let stream_path = format!("/console/api/apps/{APP_ID}/stream");
    let mut stream = client()
        .get(a.http_url(&stream_path))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut member = a.client().await;
    member.join_presence("presence-log", "ada").await;
    member.disconnect().await;
    let entries = read_stream(&mut stream, |e| has(e, "member_removed", |_| true)).await;
    for kind in ["member_added", "member_removed"] {
        let entry = entries.iter().find(|e| e["kind"] == kind).unwrap();
        assert_eq!(entry["channel"], "presence-log", "{entry}");
        assert_eq!(entry["detail"]["user_id"], "ada", "{entry}");
    }
}
