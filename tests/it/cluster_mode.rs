//! Several Herald nodes on one real Redis behave as one server: events, client events and
//! presence cross nodes, REST queries and terminate answer for the whole cluster, and every
//! webhook fires once for the cluster, also when a node is killed or stopped for a deploy.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster_node::{ClusterNode, SharedRedis};
use crate::receiver::Receiver;
use crate::redis_server::RedisServer;
use crate::support::{data_of, Rest, APP_ID};

/// Runs a test twice: on one Redis (`::one_redis`) and on a Redis Cluster of three shards with
/// sharded pub/sub (`::redis_cluster`): the same behaviour is asked of both.
macro_rules! on_each_redis {
    ($test:ident) => {
        mod $test {
            #[tokio::test]
            async fn one_redis() {
                super::$test(&crate::redis_server::RedisServer::start()).await
            }

            #[tokio::test]
            async fn redis_cluster() {
                super::$test(&crate::redis_cluster::RedisCluster::start()).await
            }
        }
    };
}

/// Node config edits: webhooks of every kind to `hook`, with `grace_ms`.
pub fn hooked(hook: &Receiver, grace_ms: u64) -> impl Fn(&mut Value) + '_ {
    move |config: &mut Value| {
        config["webhooks"] = json!({"grace_period_ms": grace_ms});
        config["app_manager"]["array"]["apps"][0]["webhooks"] = json!([{
            "url": hook.url("/hook"),
            "event_types": ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event"]
        }]);
    }
}

/// The webhook events received so far, as (name, channel, user id) triples, as a receiver that
/// de-duplicates by `webhook-id` sees them: delivery is at least once, and a batch resent after
/// an outage or a takeover carries the id of its first attempt.
pub fn events(hook: &Receiver) -> Vec<(String, String, String)> {
    let mut seen = std::collections::HashSet::new();
    hook.at("/hook")
        .into_iter()
        .filter(|post| seen.insert(post.header("webhook-id").to_owned()))
        .flat_map(|post| post.events())
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (text("name"), text("channel"), text("user_id"))
        })
        .collect()
}

pub fn count(events: &[(String, String, String)], name: &str, channel: &str) -> usize {
    events
        .iter()
        .filter(|(n, c, _)| n == name && c == channel)
        .count()
}

/// Triggers event `e` with `data` on `channel` through `node`'s REST API, `except` excluded.
pub async fn trigger(node: &ClusterNode, channel: &str, data: &str, except: Option<&str>) {
    trigger_named(node, "e", channel, data, except).await
}

/// Triggers event `name` on `channel` through `node`'s REST API; asserts a 200.
pub async fn trigger_named(
    node: &ClusterNode,
    name: &str,
    channel: &str,
    data: &str,
    except: Option<&str>,
) {
    let mut body = json!({"name": name, "channels": [channel], "data": data});
    if let Some(socket) = except {
        body["socket_id"] = json!(socket);
    }
    let (status, reply) = Rest::new(node)
        .post(&format!("/apps/{APP_ID}/events"), body)
        .await;
    assert_eq!(status, 200, "{reply}");
}

on_each_redis!(two_nodes_share_events_presence_queries_and_webhooks);
async fn two_nodes_share_events_presence_queries_and_webhooks(redis: &impl SharedRedis) {
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, hooked(&hook, 0));
    let b = ClusterNode::start(&redis, hooked(&hook, 0));

    // Events: triggered on one node, delivered on both, in order, exclusion honoured.
    let (mut on_a, mut on_b) = (a.client().await, b.client().await);
    on_a.subscribe("room").await;
    on_b.subscribe("room").await;
    trigger(&b, "room", "first", None).await;
    trigger(&a, "room", "second", Some(&on_b.socket_id)).await;
    trigger(&b, "room", "third", None).await;
    for expected in ["first", "second", "third"] {
        assert_eq!(on_a.recv_event("e").await["data"], expected);
    }
    for expected in ["first", "third"] {
        assert_eq!(
            on_b.recv_event("e").await["data"],
            expected,
            "not the excluded one"
        );
    }

    // Client events cross nodes and never come back to their sender.
    on_a.subscribe_private("private-chat").await;
    on_b.subscribe_private("private-chat").await;
    on_a.send(json!({"event": "client-typing", "channel": "private-chat", "data": {"who": "a"}}))
        .await;
    let relayed = on_b.recv_event("client-typing").await;
    assert_eq!(relayed["data"]["who"], "a", "{relayed}");
    on_a.expect_silence(Duration::from_millis(300)).await;

    // Presence: one member list for the cluster, notices to members on every node.
    let (mut u1, mut u2) = (a.client().await, b.client().await);
    let list = u1.join_presence("presence-room", "u1").await;
    assert_eq!(list["presence"]["count"], 1);
    let list = u2.join_presence("presence-room", "u2").await;
    assert_eq!(list["presence"]["count"], 2, "{list}");
    assert_eq!(list["presence"]["hash"]["u1"]["name"], "u1");
    let added = u1.recv_event("pusher_internal:member_added").await;
    assert_eq!(data_of(&added)["user_id"], "u2");
    let mut u1_again = b.client().await;
    assert_eq!(
        u1_again.join_presence("presence-room", "u1").await["presence"]["count"],
        2
    );
    u2.expect_silence(Duration::from_millis(300)).await;

    // REST queries answer for the cluster from either node.
    let (status, channel) = Rest::new(&a)
        .get(
            &format!("/apps/{APP_ID}/channels/presence-room"),
            &[("info", "user_count,subscription_count")],
        )
        .await;
    assert_eq!(status, 200, "{channel}");
    assert_eq!(channel["occupied"], true);
    assert_eq!(channel["user_count"], 2);
    assert_eq!(channel["subscription_count"], 3);
    let (_, users) = Rest::new(&b)
        .get(&format!("/apps/{APP_ID}/channels/presence-room/users"), &[])
        .await;
    let mut ids: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["u1", "u2"]);
    let (_, listing) = Rest::new(&b)
        .get(&format!("/apps/{APP_ID}/channels"), &[])
        .await;
    let listed = listing["channels"].as_object().unwrap();
    for name in ["room", "private-chat", "presence-room"] {
        assert!(listed.contains_key(name), "{name} in {listing}");
    }

    // Subscribing again is answered again and counted once.
    on_a.subscribe("room").await;
    let (_, room) = Rest::new(&b)
        .get(
            &format!("/apps/{APP_ID}/channels/room"),
            &[("info", "subscription_count")],
        )
        .await;
    assert_eq!(room["subscription_count"], 2, "{room}");

    // Leaving on one node is heard on the other; the user's other socket keeps it a member.
    u1_again.disconnect().await;
    u2.expect_silence(Duration::from_millis(300)).await;
    u1.disconnect().await;
    let removed = u2.recv_event("pusher_internal:member_removed").await;
    assert_eq!(data_of(&removed)["user_id"], "u1");

    // terminate_connections through one node closes the user's sockets on the other.
    let mut signed_in = b.client().await;
    signed_in.sign_in("u9").await;
    let (status, _) = Rest::new(&a)
        .post(
            &format!("/apps/{APP_ID}/users/u9/terminate_connections"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(signed_in.closed().await.code, Some(4009));

    // One webhook per transition for the whole cluster.
    hook.wait_until(|_| count(&events(&hook), "member_removed", "presence-room") == 1)
        .await;
    let seen = events(&hook);
    assert_eq!(count(&seen, "channel_occupied", "room"), 1, "{seen:?}");
    assert_eq!(
        count(&seen, "channel_occupied", "presence-room"),
        1,
        "{seen:?}"
    );
    assert_eq!(count(&seen, "member_added", "presence-room"), 2, "{seen:?}");
    assert_eq!(count(&seen, "client_event", "private-chat"), 1, "{seen:?}");
}

on_each_redis!(a_killed_nodes_sockets_are_cleaned_up_once_by_a_survivor);
async fn a_killed_nodes_sockets_are_cleaned_up_once_by_a_survivor(redis: &impl SharedRedis) {
    let hook = Receiver::start().await;
    let mut a = ClusterNode::start(&redis, hooked(&hook, 200));
    let b = ClusterNode::start(&redis, hooked(&hook, 200));
    let mut doomed = a.client().await;
    doomed.join_presence("presence-lobby", "u1").await;
    doomed.subscribe("solo").await;
    let mut survivor = b.client().await;
    survivor.join_presence("presence-lobby", "u2").await;
    hook.wait_until(|_| count(&events(&hook), "member_added", "presence-lobby") == 2)
        .await;

    let killed = tokio::time::Instant::now();
    a.kill();
    let removed = survivor.recv_event("pusher_internal:member_removed").await;
    assert_eq!(data_of(&removed)["user_id"], "u1");
    hook.wait_until(|_| {
        let seen = events(&hook);
        count(&seen, "member_removed", "presence-lobby") == 1
            && count(&seen, "channel_vacated", "solo") == 1
    })
    .await;
    eprintln!("cleanup webhooks {:?} after SIGKILL", killed.elapsed());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let seen = events(&hook);
    assert_eq!(
        count(&seen, "member_removed", "presence-lobby"),
        1,
        "{seen:?}"
    );
    assert_eq!(count(&seen, "channel_vacated", "solo"), 1, "{seen:?}");
    assert_eq!(
        count(&seen, "channel_vacated", "presence-lobby"),
        0,
        "still occupied: {seen:?}"
    );
    let (_, channel) = Rest::new(&b)
        .get(
            &format!("/apps/{APP_ID}/channels/presence-lobby"),
            &[("info", "subscription_count")],
        )
        .await;
    assert_eq!(
        channel["subscription_count"], 1,
        "the dead socket is forgotten"
    );
}

#[tokio::test]
async fn a_node_stopped_for_a_deploy_hands_its_clients_over_without_webhooks() {
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let mut a = ClusterNode::start(&redis, hooked(&hook, 2000));
    let b = ClusterNode::start(&redis, hooked(&hook, 2000));
    let mut client = a.client().await;
    client.join_presence("presence-deploy", "u1").await;
    hook.wait_until(|_| count(&events(&hook), "member_added", "presence-deploy") == 1)
        .await;

    a.stop();
    assert_eq!(client.closed().await.code, Some(4200), "told to reconnect");
    let mut reconnected = b.client().await;
    reconnected.join_presence("presence-deploy", "u1").await;
    a.wait_exit();
    // Past the grace period: the holds were cancelled by the rejoin, nothing more is sent.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let seen = events(&hook);
    assert_eq!(
        count(&seen, "channel_vacated", "presence-deploy"),
        0,
        "{seen:?}"
    );
    assert_eq!(
        count(&seen, "member_removed", "presence-deploy"),
        0,
        "{seen:?}"
    );
    assert_eq!(
        count(&seen, "channel_occupied", "presence-deploy"),
        1,
        "{seen:?}"
    );
    assert_eq!(
        count(&seen, "member_added", "presence-deploy"),
        1,
        "{seen:?}"
    );
}

/// Whether the events of `open` / `close` for one key strictly alternate, starting with `open`;
/// returns how many pairs there were.
fn alternation(names: &[&str], open: &str, close: &str) -> Result<usize, String> {
    let mut live = false;
    let mut pairs = 0;
    for (i, name) in names.iter().enumerate() {
        match (*name == open, live) {
            (true, false) => live = true,
            (false, true) => {
                live = false;
                pairs += 1;
            }
            _ => return Err(format!("{name} at {i} breaks the alternation: {names:?}")),
        }
    }
    if live {
        return Err(format!("ends without its {close}: {names:?}"));
    }
    Ok(pairs)
}

on_each_redis!(concurrent_subscribes_and_leaves_on_three_nodes_fire_each_webhook_once);
async fn concurrent_subscribes_and_leaves_on_three_nodes_fire_each_webhook_once(
    redis: &impl SharedRedis,
) {
    use std::sync::Arc;
    use tokio::sync::Barrier;

    const ROUNDS: usize = 20;
    const PER_NODE: usize = 3;
    let hook = Receiver::start().await;
    let nodes: Vec<ClusterNode> = (0..3)
        .map(|_| ClusterNode::start(&redis, hooked(&hook, 0)))
        .collect();
    let mut clients = Vec::new();
    for node in &nodes {
        for _ in 0..PER_NODE {
            clients.push(node.client().await);
        }
    }
    // The test itself is a party too: it ends each round once the cluster is empty again.
    let barrier = Arc::new(Barrier::new(clients.len() + 1));
    // Each user has a socket on every node: one member however many of them join at once.
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let barrier = barrier.clone();
            let user = format!("u{}", i % PER_NODE);
            tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    barrier.wait().await;
                    // Notices of the others' comings and goings arrive in between.
                    let data = json!({"auth": "", "channel": "race"});
                    client
                        .send(json!({"event": "pusher:subscribe", "data": data}))
                        .await;
                    client
                        .recv_event("pusher_internal:subscription_succeeded")
                        .await;
                    let member = json!({"user_id": user});
                    let data = client.presence_data("presence-race", &member);
                    client
                        .send(json!({"event": "pusher:subscribe", "data": data}))
                        .await;
                    client
                        .recv_event("pusher_internal:subscription_succeeded")
                        .await;
                    barrier.wait().await;
                    for channel in ["race", "presence-race"] {
                        let leave =
                            json!({"event": "pusher:unsubscribe", "data": {"channel": channel}});
                        client.send(leave).await;
                    }
                    // A ping answered means this socket's leaves were handled.
                    client
                        .send(json!({"event": "pusher:ping", "data": {}}))
                        .await;
                    client.recv_event("pusher:pong").await;
                    barrier.wait().await;
                    // The round ends when the cluster has no subscriber left anywhere.
                    barrier.wait().await;
                }
            })
        })
        .collect();
    let rest = Rest::new(&nodes[0]);
    let rounds = async {
        for _ in 0..ROUNDS {
            for _ in 0..3 {
                barrier.wait().await;
            }
            loop {
                let (_, channels) = rest.get(&format!("/apps/{APP_ID}/channels"), &[]).await;
                if channels["channels"]
                    .as_object()
                    .is_some_and(|c| c.is_empty())
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            barrier.wait().await;
        }
    };
    // A client that failed leaves the others at a barrier: the bound turns that into a failure.
    tokio::time::timeout(Duration::from_secs(60), rounds)
        .await
        .expect("every round within 60 s (a client task failed?)");
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("rounds in time")
            .unwrap();
    }
    // Per round: occupied and vacated of both channels, added and removed of every user.
    let expected = ROUNDS * (4 + 2 * PER_NODE);
    hook.wait_until(|_| events(&hook).len() >= expected).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = events(&hook);
    let names = |channel: &str, user: &str| -> Vec<&str> {
        seen.iter()
            .filter(|(_, c, u)| c == channel && u == user)
            .map(|(n, _, _)| n.as_str())
            .collect()
    };
    for channel in ["race", "presence-race"] {
        let pairs = alternation(&names(channel, ""), "channel_occupied", "channel_vacated");
        assert_eq!(pairs, Ok(ROUNDS), "{channel}");
    }
    for user in 0..PER_NODE {
        let pairs = alternation(
            &names("presence-race", &format!("u{user}")),
            "member_added",
            "member_removed",
        );
        assert_eq!(pairs, Ok(ROUNDS), "u{user}");
    }
    assert_eq!(seen.len(), expected, "0 lost, 0 duplicated");
}

#[tokio::test]
async fn a_node_paused_past_the_timeout_is_fenced_closes_its_sockets_and_rejoins() {
    let redis = RedisServer::start();
    let hook = Receiver::start().await;
    let a = ClusterNode::start(&redis, hooked(&hook, 0));
    let b = ClusterNode::start(&redis, hooked(&hook, 0));
    let mut paused = a.client().await;
    paused.subscribe("paused-room").await;
    hook.wait_until(|_| count(&events(&hook), "channel_occupied", "paused-room") == 1)
        .await;

    a.pause();
    // The survivor takes the silent node for dead and removes its socket.
    hook.wait_until(|_| count(&events(&hook), "channel_vacated", "paused-room") == 1)
        .await;
    a.resume();
    assert_eq!(paused.closed().await.code, Some(4200), "told to reconnect");

    // Back under a new incarnation: a new subscription on the same node counts again.
    let mut back = a.client().await;
    back.subscribe("paused-room").await;
    hook.wait_until(|_| count(&events(&hook), "channel_occupied", "paused-room") == 2)
        .await;
    let (_, channel) = Rest::new(&b)
        .get(
            &format!("/apps/{APP_ID}/channels/paused-room"),
            &[("info", "subscription_count")],
        )
        .await;
    assert_eq!(channel["subscription_count"], 1, "{channel}");
    let mut listener = b.client().await;
    listener.subscribe("paused-room").await;
    trigger(&b, "paused-room", "after", None).await;
    assert_eq!(
        back.recv_event("e").await["data"],
        "after",
        "the rejoined node hears the cluster"
    );
}

on_each_redis!(a_killed_nodes_open_webhook_batch_is_resent_by_another_under_its_id);
async fn a_killed_nodes_open_webhook_batch_is_resent_by_another_under_its_id(
    redis: &impl SharedRedis,
) {
    let hook = Receiver::start().await;
    // Alone at first, so the first node holds every partition's lease.
    let mut a = ClusterNode::start(&redis, hooked(&hook, 0));
    hook.hold();
    let mut client = a.client().await;
    client.subscribe("backlog").await;
    let held = hook.wait_until(|r| !r.is_empty()).await;
    let held_id = held[0].header("webhook-id").to_owned();
    let b = ClusterNode::start(&redis, hooked(&hook, 0));

    // The first node dies with its POST open; its socket is reaped (a vacate after the occupy).
    a.kill();
    hook.release();
    let received = hook
        .wait_until(|r| {
            let vacated = r.iter().filter(|r| r.accepted()).flat_map(|r| r.events());
            vacated.into_iter().any(|e| e["name"] == "channel_vacated")
        })
        .await;
    let resent: Vec<_> = received[1..].iter().filter(|r| r.accepted()).collect();
    assert_eq!(
        resent[0].header("webhook-id"),
        held_id,
        "the open batch first, under its id"
    );
    let names: Vec<String> = resent
        .iter()
        .flat_map(|r| r.events())
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["channel_occupied", "channel_vacated"],
        "no inversion"
    );
    drop(b);
}

#[tokio::test]
async fn cluster_wide_queries_answer_503_while_redis_is_down() {
    let redis = RedisServer::start();
    let node = ClusterNode::start(&redis, |_| {});
    let (status, _) = Rest::new(&node)
        .get(&format!("/apps/{APP_ID}/channels"), &[])
        .await;
    assert_eq!(status, 200);
    drop(redis);
    let (rest, path) = (Rest::new(&node), format!("/apps/{APP_ID}/channels"));
    let asked = rest.get(&path, &[]);
    let (status, body) = tokio::time::timeout(Duration::from_secs(15), asked)
        .await
        .expect("an answer, not a hang");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], 503, "a JSON error: {body}");
}

on_each_redis!(the_member_limit_counts_users_on_every_node);
async fn the_member_limit_counts_users_on_every_node(redis: &impl SharedRedis) {
    let limit = |c: &mut Value| {
        c["app_manager"]["array"]["apps"][0]["max_presence_members_per_channel"] = json!(2)
    };
    let (a, b) = (
        ClusterNode::start(&redis, limit),
        ClusterNode::start(&redis, limit),
    );
    let mut first = a.client().await;
    first.join_presence("presence-full", "u1").await;
    let mut second = b.client().await;
    second.join_presence("presence-full", "u2").await;
    let mut third = b.client().await;
    let data = third.presence_data("presence-full", &json!({"user_id": "u3"}));
    let reply = third.subscribe_with(data).await;
    assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
    assert_eq!(reply["data"]["status"], 4100);
    // A present user's second socket, on the other node, still fits.
    let mut u1_again = b.client().await;
    assert_eq!(
        u1_again.join_presence("presence-full", "u1").await["presence"]["count"],
        2
    );
    // The refused socket forgot the channel: it stays open, and can subscribe elsewhere.
    third.subscribe("room").await;
    let (_, users) = Rest::new(&a)
        .get(&format!("/apps/{APP_ID}/channels/presence-full/users"), &[])
        .await;
    assert_eq!(users["users"].as_array().unwrap().len(), 2, "{users}");
}

on_each_redis!(a_cache_channel_replays_the_last_event_published_on_any_node);
async fn a_cache_channel_replays_the_last_event_published_on_any_node(redis: &impl SharedRedis) {
    let (a, b) = (
        ClusterNode::start(&redis, |_| {}),
        ClusterNode::start(&redis, |_| {}),
    );
    let mut first = b.client().await;
    first.subscribe("cache-prices").await;
    assert_eq!(first.recv().await["event"], "pusher:cache_miss");
    for price in ["1", "2"] {
        let body = json!({"name": "price", "channel": "cache-prices", "data": price});
        let (status, _) = Rest::new(&a)
            .post(&format!("/apps/{APP_ID}/events"), body)
            .await;
        assert_eq!(status, 200);
        assert_eq!(first.recv_event("price").await["data"], price, "live, once");
    }
    let mut late = b.client().await;
    late.subscribe("cache-prices").await;
    let replayed = late.recv().await;
    assert_eq!(
        (replayed["event"].as_str(), replayed["data"].as_str()),
        (Some("price"), Some("2"))
    );
    late.expect_silence(Duration::from_millis(300)).await;
    let (_, info) = Rest::new(&b)
        .get(
            &format!("/apps/{APP_ID}/channels/cache-prices"),
            &[("info", "cache")],
        )
        .await;
    assert_eq!(info["cache"]["data"], "2", "{info}");
}
