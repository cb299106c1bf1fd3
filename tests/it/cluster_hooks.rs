//! Decision hooks on a cluster: every node asks the app's hook itself, and what a hook refuses
//! on one node leaves no trace anywhere (no webhook, nothing in the shared state, nothing
//! relayed to the other node).

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster_mode::{events, hooked};
use crate::cluster_node::ClusterNode;
use crate::hook_server::{HookAnswer, HookServer};
use crate::receiver::Receiver;
use crate::redis_server::RedisServer;
use crate::support::{Rest, APP_ID};

#[tokio::test]
async fn every_node_asks_the_hook_and_a_refusal_leaves_no_trace_in_the_cluster() {
    let decide = HookServer::start(|body: &Value| {
        let data = &body["data"];
        let refused = data["channel"]
            .as_str()
            .is_some_and(|c| c.contains("secret"))
            || data["event"] == "client-bad";
        if refused {
            HookAnswer::json(json!({"allow": false, "reason": "no"}))
        } else {
            HookAnswer::allow()
        }
    })
    .await;
    let redis = RedisServer::start();
    let webhooks = Receiver::start().await;
    let config = |c: &mut Value| {
        hooked(&webhooks, 0)(c);
        c["app_manager"]["array"]["apps"][0]["decision_hooks"] = json!({"url": decide.url(),
            "events": ["connection_starting", "subscription_starting", "client_event_sending"]});
    };
    let (a, b) = (
        ClusterNode::start(&redis, config),
        ClusterNode::start(&redis, config),
    );
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    let calls = decide.of_type("connection_starting");
    let asked: Vec<&str> = calls
        .iter()
        .map(|c| c["data"]["socket_id"].as_str().unwrap())
        .collect();
    assert!(asked.contains(&on_a.socket_id.as_str()) && asked.contains(&on_b.socket_id.as_str()));

    let reply = on_a
        .subscribe_with(json!({"channel": "public-secret"}))
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
    let channel = "private-chat";
    on_a.subscribe_private(channel).await;
    on_b.subscribe_private(channel).await;
    on_a.send(json!({"event": "client-bad", "channel": channel, "data": {}}))
        .await;
    on_a.recv_event("pusher:error").await;
    on_a.send(json!({"event": "client-good", "channel": channel, "data": {}}))
        .await;
    assert_eq!(
        on_b.recv().await["event"],
        "client-good",
        "the refused event crossed nodes"
    );

    let (_, channels) = Rest::new(&b)
        .get(&format!("/apps/{APP_ID}/channels"), &[])
        .await;
    assert_eq!(channels, json!({"channels": {channel: {}}}));
    webhooks.wait_until(|_| events(&webhooks).len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let names: Vec<String> = events(&webhooks)
        .iter()
        .map(|(n, c, _)| format!("{n} {c}"))
        .collect();
    assert_eq!(
        names,
        ["channel_occupied private-chat", "client_event private-chat"]
    );
}
