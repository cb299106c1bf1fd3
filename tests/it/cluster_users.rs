//! Who is online, across a cluster: watchers on one node follow users on others, a user on
//! several nodes is online once, a killed node's users go offline once, and `user_online` /
//! `user_offline` are sent exactly once per transition, strictly alternating per user, under
//! concurrent sign-ins, the grace period, a SIGKILL and a flushed Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Barrier;

use crate::cluster_mode::events;
use crate::cluster_node::ClusterNode;
use crate::receiver::Receiver;
use crate::redis_server::RedisServer;
use crate::support::{Client, Rest, APP_ID, WAIT};

/// Watchlist events on, and the user webhooks (only them) to `/hook` with `grace_ms`.
fn user_hooked(hook: &Receiver, grace_ms: u64) -> impl Fn(&mut Value) + '_ {
    move |config: &mut Value| {
        config["webhooks"] = json!({"grace_period_ms": grace_ms});
        let app = &mut config["app_manager"]["array"]["apps"][0];
        app["enable_watchlist_events"] = json!(true);
        app["webhooks"] = json!([{
            "url": hook.url("/hook"),
            "event_types": ["user_online", "user_offline"]
        }]);
    }
}

async fn signed_in(node: &ClusterNode, id: &str, watchlist: &[&str]) -> Client {
    let mut client = node.client().await;
    client
        .send_signin(json!({"id": id, "watchlist": watchlist}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["event"], "pusher:signin_success", "{reply}");
    client
}

/// The single change of the next watchlist frame: (`online` / `offline`, user id).
async fn next_change(client: &mut Client) -> (String, String) {
    let frame = client.recv().await;
    assert_eq!(
        frame["event"], "pusher_internal:watchlist_events",
        "{frame}"
    );
    let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    let events = data["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{frame}");
    let ids = events[0]["user_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "{frame}");
    let name = events[0]["name"].as_str().unwrap().to_owned();
    (name, ids[0].as_str().unwrap().to_owned())
}

fn change(name: &str, user: &str) -> (String, String) {
    (name.to_owned(), user.to_owned())
}

async fn user_status(node: &ClusterNode, user: &str) -> Value {
    let path = format!("/apps/{APP_ID}/users/{user}");
    let (status, body) = Rest::new(node).get(&path, &[]).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (bounded) until `user` has `connections` across the cluster, as `node` reads it.
async fn wait_connections(node: &ClusterNode, user: &str, connections: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = user_status(node, user).await;
        if status["connections"] == connections {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}: {status}, not {connections}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The user events received (deduplicated by `webhook-id`) as "name user" lines.
fn user_events(hook: &Receiver) -> Vec<String> {
    events(hook)
        .into_iter()
        .map(|(name, _, user)| format!("{name} {user}"))
        .collect()
}

#[tokio::test]
async fn watchers_on_one_node_follow_users_on_the_others() {
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let b = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let mut c = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let _bob = signed_in(&b, "bob", &[]).await;
    wait_connections(&a, "bob", 1).await;

    let mut watcher = signed_in(&a, "alice", &["bob", "carol", "dave"]).await;
    let initial = watcher.recv().await;
    let data: Value = serde_json::from_str(initial["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data,
        json!({"events": [{"name": "online", "user_ids": ["bob"]}]})
    );

    let carol_b = signed_in(&b, "carol", &[]).await;
    assert_eq!(next_change(&mut watcher).await, change("online", "carol"));
    let carol_a = signed_in(&a, "carol", &[]).await;
    wait_connections(&b, "carol", 2).await;
    assert_eq!(
        user_status(&a, "carol").await,
        json!({"online": true, "connections": 2}),
        "either node reads the whole cluster"
    );
    carol_b.disconnect().await;
    wait_connections(&a, "carol", 1).await;
    watcher.expect_silence(Duration::from_millis(300)).await;
    carol_a.disconnect().await;
    assert_eq!(
        next_change(&mut watcher).await,
        change("offline", "carol"),
        "offline once the last connection, on either node, closed"
    );

    let _dave = signed_in(&c, "dave", &[]).await;
    assert_eq!(next_change(&mut watcher).await, change("online", "dave"));
    c.kill();
    let offline = tokio::time::timeout(Duration::from_secs(10), next_change(&mut watcher));
    assert_eq!(offline.await.expect("in time"), change("offline", "dave"));
    assert_eq!(
        user_status(&b, "bob").await,
        json!({"online": true, "connections": 1})
    );
}

/// One round: every node signs in every user at once (a barrier), then, once the cluster counts
/// every connection (a sign-in's reply goes out before Redis counted it), every connection
/// closes at once; waits until the cluster counts each step.
async fn concurrent_round(nodes: &[ClusterNode], users: &[&str]) {
    let mut clients = Vec::new();
    for node in nodes {
        for _ in users {
            clients.push(node.client().await);
        }
    }
    let signed_in = Arc::new(Barrier::new(clients.len()));
    // The clients and this test: the closes wait for the cluster's count.
    let counted = Arc::new(Barrier::new(clients.len() + 1));
    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let (signed_in, counted) = (signed_in.clone(), counted.clone());
        let user = users[i % users.len()].to_owned();
        tasks.push(tokio::spawn(async move {
            signed_in.wait().await;
            client.send_signin(json!({"id": user})).await;
            let reply = client.recv().await;
            assert_eq!(reply["event"], "pusher:signin_success", "{reply}");
            counted.wait().await;
            client.disconnect().await;
        }));
    }
    for user in users {
        wait_connections(&nodes[0], user, nodes.len() as u64).await;
    }
    counted.wait().await;
    for task in tasks {
        tokio::time::timeout(WAIT * 2, task)
            .await
            .expect("a round in time")
            .unwrap();
    }
    for user in users {
        wait_connections(&nodes[0], user, 0).await;
    }
}

#[tokio::test]
async fn user_webhooks_are_exactly_once_under_concurrent_sign_ins_on_three_nodes() {
    const ROUNDS: usize = 20;
    let users = ["u0", "u1", "u2"];
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let nodes: Vec<ClusterNode> = (0..3)
        .map(|_| ClusterNode::start(&redis, user_hooked(&hook, 0)))
        .collect();
    for _ in 0..ROUNDS {
        concurrent_round(&nodes, &users).await;
    }
    let expected = ROUNDS * 2 * users.len();
    hook.wait_until(|_| events(&hook).len() >= expected).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = user_events(&hook);
    assert_eq!(seen.len(), expected, "none lost, none duplicated");
    for user in users {
        let own: Vec<&str> = seen
            .iter()
            .filter(|e| e.ends_with(&format!(" {user}")))
            .map(|e| e.split(' ').next().unwrap())
            .collect();
        let alternating: Vec<&str> = (0..ROUNDS * 2)
            .map(|i| ["user_online", "user_offline"][i % 2])
            .collect();
        assert_eq!(own, alternating, "{user}: strictly alternating");
    }
}

#[tokio::test]
async fn a_sign_in_on_another_node_within_the_grace_period_cancels_both() {
    const GRACE_MS: u64 = 1500;
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, user_hooked(&hook, GRACE_MS));
    let b = ClusterNode::start(&redis, user_hooked(&hook, GRACE_MS));
    let first = signed_in(&a, "u", &[]).await;
    hook.wait_until(|_| events(&hook).len() == 1).await;
    first.disconnect().await;
    wait_connections(&b, "u", 0).await;
    let again = signed_in(&b, "u", &[]).await;
    tokio::time::sleep(Duration::from_millis(GRACE_MS + 700)).await;
    assert_eq!(
        user_events(&hook),
        ["user_online u"],
        "a reload sends nothing"
    );
    again.disconnect().await;
    hook.wait_until(|_| events(&hook).len() == 2).await;
    assert_eq!(user_events(&hook), ["user_online u", "user_offline u"]);
}

#[tokio::test]
async fn a_killed_nodes_users_go_offline_once_unless_signed_in_elsewhere() {
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let mut b = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let _only_on_b = signed_in(&b, "gone", &[]).await;
    let _on_b = signed_in(&b, "kept", &[]).await;
    let _on_a = signed_in(&a, "kept", &[]).await;
    hook.wait_until(|_| events(&hook).len() == 2).await;

    let killed = Instant::now();
    b.kill();
    hook.wait_until(|_| events(&hook).len() == 3).await;
    let took = killed.elapsed();
    eprintln!("SIGKILL to user_offline: {} ms", took.as_millis());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut seen = user_events(&hook);
    seen[..2].sort();
    assert_eq!(
        seen,
        ["user_online gone", "user_online kept", "user_offline gone"]
    );
    assert_eq!(
        user_status(&a, "kept").await,
        json!({"online": true, "connections": 1})
    );
}

#[tokio::test]
async fn a_flushed_redis_is_rebuilt_without_a_duplicate_user_event() {
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let b = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let on_a = signed_in(&a, "x", &[]).await;
    let on_b = signed_in(&b, "y", &[]).await;
    hook.wait_until(|_| events(&hook).len() == 2).await;

    assert!(redis.command("FLUSHALL"), "FLUSHALL ran");
    wait_connections(&a, "x", 1).await;
    wait_connections(&a, "y", 1).await;
    on_a.disconnect().await;
    on_b.disconnect().await;
    hook.wait_until(|_| events(&hook).len() == 4).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut seen = user_events(&hook);
    seen[..2].sort();
    seen[2..].sort();
    assert_eq!(
        seen,
        [
            "user_online x",
            "user_online y",
            "user_offline x",
            "user_offline y"
        ]
    );
}

#[tokio::test]
async fn watchers_learn_what_changed_while_redis_was_down() {
    let mut redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let b = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let bob = signed_in(&b, "bob", &[]).await;
    wait_connections(&a, "bob", 1).await;
    let mut alice = signed_in(&a, "alice", &["bob", "carol"]).await;
    assert_eq!(next_change(&mut alice).await, change("online", "bob"));

    // Down, and back empty: nothing published meanwhile reached node A.
    redis.kill();
    bob.disconnect().await;
    let _carol = signed_in(&b, "carol", &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.start_again();

    // Told once it is back: what it missed, and nothing that contradicts it (a change it heard
    // as well as read may come twice; the watcher's state is the same).
    let first = tokio::time::timeout(Duration::from_secs(10), next_change(&mut alice));
    let mut told = vec![first.await.expect("told in time")];
    while let Ok(change) =
        tokio::time::timeout(Duration::from_millis(700), next_change(&mut alice)).await
    {
        told.push(change);
    }
    let expected = [change("offline", "bob"), change("online", "carol")];
    for change in &expected {
        assert!(told.contains(change), "{change:?} not told: {told:?}");
    }
    assert!(
        told.iter().all(|c| expected.contains(c)),
        "nothing else: {told:?}"
    );
}

#[tokio::test]
async fn a_paused_nodes_users_go_offline_once_and_its_sockets_are_told_to_reconnect() {
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let b = ClusterNode::start(&redis, user_hooked(&hook, 0));
    let mut watcher = signed_in(&b, "watcher", &["paused"]).await;
    let paused = signed_in(&a, "paused", &[]).await;
    assert_eq!(next_change(&mut watcher).await, change("online", "paused"));
    hook.wait_until(|_| events(&hook).len() == 2).await;

    a.pause();
    // The survivor takes the silent node for dead and removes its user's connection.
    hook.wait_until(|_| events(&hook).len() == 3).await;
    assert_eq!(next_change(&mut watcher).await, change("offline", "paused"));
    a.resume();
    assert_eq!(paused.closed().await.code, Some(4200), "told to reconnect");

    // The client reconnects: online again, once.
    let _again = signed_in(&a, "paused", &[]).await;
    assert_eq!(next_change(&mut watcher).await, change("online", "paused"));
    hook.wait_until(|_| events(&hook).len() == 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen = user_events(&hook);
    seen[..2].sort();
    assert_eq!(
        seen,
        [
            "user_online paused",
            "user_online watcher",
            "user_offline paused",
            "user_online paused"
        ]
    );
}
