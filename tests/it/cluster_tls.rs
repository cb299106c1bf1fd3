//! Two cluster nodes serving TLS: an event triggered over HTTPS on one reaches a `wss://`
//! subscriber of the other.

use serde_json::json;

use crate::cluster_node::ClusterNode;
use crate::redis_server::RedisServer;
use crate::tls_support::Certs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_carry_an_event_across_over_tls() {
    let certs = Certs::make("cluster");
    let redis = RedisServer::start();
    let ssl = certs.ssl("server", json!({}));
    let a = ClusterNode::start(&redis, |c| c["ssl"] = ssl.clone());
    let b = ClusterNode::start(&redis, |c| c["ssl"] = ssl.clone());
    let mut subscriber = certs.websocket(a.port, crate::support::KEY).await;
    crate::tls::subscribe(&mut subscriber, "news").await;
    crate::tls::trigger_at(
        &certs,
        &format!("https://127.0.0.1:{}", b.port),
        "news",
        "across",
    )
    .await;
    let event = crate::tls::recv(&mut subscriber).await;
    assert_eq!(
        (event["event"].as_str(), event["data"].as_str()),
        (Some("news"), Some("across"))
    );
}
