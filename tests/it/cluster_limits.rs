//! Rate limits and quotas in a cluster: counted in Redis, so two nodes never allow twice a
//! limit.

use serde_json::json;

use crate::cluster_node::ClusterNode;
use crate::redis_server::RedisServer;
use crate::support::*;

async fn read_status(node: &ClusterNode) -> u16 {
    let url = Rest::new(node).signed_url("GET", &format!("/apps/{APP_ID}/channels"), "", &[]);
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_share_one_rate_limit_and_one_quota() {
    let redis = RedisServer::start();
    let edit = |c: &mut serde_json::Value| {
        c["rate_limiter"] =
            json!({"enabled": true, "api_rate_limit": {"max_requests": 4, "window_seconds": 60}});
        TestServer::app(c)["max_backend_events_per_second"] = json!(2);
    };
    let a = ClusterNode::start(&redis, edit);
    let b = ClusterNode::start(&redis, edit);
    let event = json!({"name": "e", "channel": "c", "data": "x"});
    let path = format!("/apps/{APP_ID}/events");
    assert_eq!(Rest::new(&a).post(&path, event.clone()).await.0, 200);
    assert_eq!(Rest::new(&b).post(&path, event.clone()).await.0, 200);
    let (status, body) = Rest::new(&a).post(&path, event).await;
    assert_eq!(
        status, 429,
        "the app's third event of the second, cluster-wide: {body}"
    );
    assert_eq!(read_status(&b).await, 200, "the cluster's fourth request");
    assert_eq!(
        read_status(&a).await,
        429,
        "the fifth: over the address's limit"
    );
    assert_eq!(read_status(&b).await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_node_that_cannot_reach_redis_counts_on_its_own() {
    let mut redis = RedisServer::start();
    let a = ClusterNode::start(&redis, |c| {
        c["rate_limiter"] =
            json!({"enabled": true, "api_rate_limit": {"max_requests": 1, "window_seconds": 60}});
        c["metrics"] = json!({"enabled": false});
    });
    redis.kill();
    let event = json!({"name": "e", "channel": "c", "data": "x"});
    let path = format!("/apps/{APP_ID}/events");
    assert_eq!(
        Rest::new(&a).post(&path, event.clone()).await.0,
        200,
        "counted locally"
    );
    assert_eq!(
        Rest::new(&a).post(&path, event).await.0,
        429,
        "and limited locally"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_an_apps_max_connections_counts_every_node_and_a_dead_node_releases_its_own() {
    let redis = RedisServer::start();
    let edit = |c: &mut serde_json::Value| TestServer::app(c)["max_connections"] = json!(1);
    let mut a = ClusterNode::start(&redis, edit);
    let b = ClusterNode::start(&redis, edit);
    let _held = a.client().await;
    let refused = Client::unestablished(&b.ws_url()).await.closed().await;
    assert_eq!(
        refused.code,
        Some(4004),
        "the app's one connection is on the other node: {refused:?}"
    );
    a.kill();
    // Once the dead node is reaped, its connection no longer counts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (ws, _) = tokio_tungstenite::connect_async(b.ws_url()).await.unwrap();
        if Client::from_socket_or_close(ws).await.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dead node's connection still counts"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
