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
