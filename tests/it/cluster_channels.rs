//! The cluster-wide channel state against a real Redis: idempotent per-socket entries, one
//! occupied/vacated and one member_added/member_removed per transition however many nodes change
//! a channel at the same instant, and the grace period held and swept in Redis.

use std::sync::Arc;
use std::time::Duration;

use herald::cluster::redis::channel_state::{partition_of, ChannelState, Joining};
use herald::cluster::redis::connect;
use herald::cluster::redis::RedisConnection;
use tokio::sync::Barrier;

use crate::redis_server::RedisServer;

/// The webhook events of `channel`'s partition, as "name channel [user]".
async fn events(
    con: &mut RedisConnection,
    state: &ChannelState,
    app: &str,
    channel: &str,
) -> Vec<String> {
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(state.stream(partition_of(app, channel)))
        .arg("-")
        .arg("+")
        .query_async(con)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| {
            let field = |name: &str| {
                let at = fields.iter().position(|f| f == name)?;
                fields.get(at + 1).cloned()
            };
            let user = field("user_id")
                .map(|u| format!(" {u}"))
                .unwrap_or_default();
            format!(
                "{} {}{user}",
                field("name").unwrap(),
                field("channel").unwrap()
            )
        })
        .collect()
}

fn join<'a>(channel: &'a str, socket: &'a str, member: Option<(&'a str, &'a str)>) -> Joining<'a> {
    Joining {
        app: "a",
        channel,
        socket,
        member,
        max_members: 0,
        cached: false,
    }
}

#[tokio::test]
async fn joins_and_leaves_are_idempotent_and_emit_once() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    let state = ChannelState::new("t", "n1.x", 0);
    let first = state
        .join(&mut con, &join("room", "1.1", None))
        .await
        .unwrap()
        .transition;
    assert!(first.changed && first.occupancy_changed);
    assert_eq!(first.subscription_count, 1);
    let again = state
        .join(&mut con, &join("room", "1.1", None))
        .await
        .unwrap()
        .transition;
    assert!(
        !again.changed && !again.occupancy_changed,
        "a retried join changes nothing"
    );
    let second = state
        .join(&mut con, &join("room", "1.2", None))
        .await
        .unwrap()
        .transition;
    assert!(second.changed && !second.occupancy_changed);
    assert_eq!(second.subscription_count, 2);
    state.leave(&mut con, "a", "room", "1.1").await.unwrap();
    let repeated = state.leave(&mut con, "a", "room", "1.1").await.unwrap();
    assert!(!repeated.changed, "a retried leave changes nothing");
    let last = state.leave(&mut con, "a", "room", "1.2").await.unwrap();
    assert!(last.changed && last.occupancy_changed);
    assert_eq!(last.subscription_count, 0);
    assert_eq!(last.user, None, "a public channel's socket has no user");
    assert_eq!(
        events(&mut con, &state, "a", "room").await,
        ["channel_occupied room", "channel_vacated room"]
    );
    // A vacated channel leaves no key behind.
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("t:*:ch:a:room:*")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

/// Three nodes, each with its own connection, join and then leave three sockets each at the
/// same instant, `rounds` times; returns the events of the channel.
async fn concurrent_rounds(
    redis: &RedisServer,
    channel: &'static str,
    presence: bool,
    rounds: usize,
) -> Vec<String> {
    let barrier = Arc::new(Barrier::new(3));
    let mut nodes = Vec::new();
    for node in 0..3 {
        let mut con = connect(&redis.url()).await.unwrap();
        let barrier = barrier.clone();
        nodes.push(tokio::spawn(async move {
            let state = ChannelState::new("t", &format!("n{node}.x"), 0);
            let sockets: Vec<String> = (0..3).map(|s| format!("{node}.{s}")).collect();
            let (mut occupied, mut vacated) = (0, 0);
            for _ in 0..rounds {
                barrier.wait().await;
                for socket in &sockets {
                    // One user with a socket on every node: one member.
                    let member = presence.then_some(("u", r#"{"name":"U"}"#));
                    let t = state
                        .join(&mut con, &join(channel, socket, member))
                        .await
                        .unwrap()
                        .transition;
                    occupied += usize::from(if presence {
                        t.membership_changed
                    } else {
                        t.occupancy_changed
                    });
                }
                barrier.wait().await;
                for socket in &sockets {
                    let t = state.leave(&mut con, "a", channel, socket).await.unwrap();
                    vacated += usize::from(if presence {
                        t.membership_changed
                    } else {
                        t.occupancy_changed
                    });
                }
            }
            (occupied, vacated)
        }));
    }
    let mut totals = (0, 0);
    for node in nodes {
        let (o, v) = node.await.unwrap();
        totals = (totals.0 + o, totals.1 + v);
    }
    assert_eq!(totals, (rounds, rounds), "one node saw each transition");
    let mut con = connect(&redis.url()).await.unwrap();
    events(&mut con, &ChannelState::new("t", "reader", 0), "a", channel).await
}

#[tokio::test]
async fn concurrent_nodes_produce_one_occupied_and_one_vacated_per_transition() {
    let redis = RedisServer::start();
    let rounds = 40;
    let events = concurrent_rounds(&redis, "room", false, rounds).await;
    let expected: Vec<String> = (0..rounds)
        .flat_map(|_| {
            [
                "channel_occupied room".to_owned(),
                "channel_vacated room".to_owned(),
            ]
        })
        .collect();
    assert_eq!(
        events, expected,
        "strictly alternating, none lost, none duplicated"
    );
}

#[tokio::test]
async fn a_user_on_several_nodes_is_one_member() {
    let redis = RedisServer::start();
    let rounds = 30;
    let events = concurrent_rounds(&redis, "presence-room", true, rounds).await;
    let expected: Vec<String> = (0..rounds)
        .flat_map(|_| {
            [
                "channel_occupied presence-room",
                "member_added presence-room u",
                "member_removed presence-room u",
                "channel_vacated presence-room",
            ]
            .map(str::to_owned)
        })
        .collect();
    assert_eq!(events, expected);
}

#[tokio::test]
async fn the_grace_period_is_held_in_redis_and_cancelled_from_another_node() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    let node_a = ChannelState::new("t", "a.x", 300);
    let node_b = ChannelState::new("t", "b.x", 300);
    let partition = partition_of("a", "presence-g");
    node_a
        .join(&mut con, &join("presence-g", "1.1", Some(("u", "{}"))))
        .await
        .unwrap();
    let left = node_a
        .leave(&mut con, "a", "presence-g", "1.1")
        .await
        .unwrap();
    assert_eq!(
        left.user.as_deref(),
        Some("u"),
        "the leave names the socket's user"
    );
    // Within the grace period the user returns on another node: both halves are cancelled.
    node_b
        .join(&mut con, &join("presence-g", "2.1", Some(("u", "{}"))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(node_b.sweep(&mut con, partition, 100).await.unwrap(), 0);
    node_b
        .leave(&mut con, "a", "presence-g", "2.1")
        .await
        .unwrap();
    assert_eq!(
        node_a.sweep(&mut con, partition, 100).await.unwrap(),
        0,
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(node_a.sweep(&mut con, partition, 100).await.unwrap(), 2);
    assert_eq!(
        node_b.sweep(&mut con, partition, 100).await.unwrap(),
        0,
        "released once"
    );
    assert_eq!(
        events(&mut con, &node_a, "a", "presence-g").await,
        [
            "channel_occupied presence-g",
            "member_added presence-g u",
            "member_removed presence-g u",
            "channel_vacated presence-g",
        ]
    );
}

#[tokio::test]
async fn a_dead_nodes_sockets_are_removed_once_and_channels_occupied_elsewhere_get_nothing() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    let dead = ChannelState::new("t", "a.1", 0);
    let alive = ChannelState::new("t", "b.1", 0);
    dead.join(&mut con, &join("room", "1.1", None))
        .await
        .unwrap();
    dead.join(&mut con, &join("alone", "1.2", None))
        .await
        .unwrap();
    dead.join(
        &mut con,
        &join("presence-p", "1.3", Some(("u1", r#"{"n":1}"#))),
    )
    .await
    .unwrap();
    dead.join(
        &mut con,
        &join("presence-p", "1.4", Some(("u2", r#"{"n":2}"#))),
    )
    .await
    .unwrap();
    alive
        .join(&mut con, &join("room", "2.1", None))
        .await
        .unwrap();
    alive
        .join(
            &mut con,
            &join("presence-p", "2.2", Some(("u2", r#"{"n":2}"#))),
        )
        .await
        .unwrap();

    assert_eq!(alive.reap(&mut con, "a.1").await.unwrap(), 4);
    assert_eq!(
        alive.reap(&mut con, "a.1").await.unwrap(),
        0,
        "a second reap finds nothing"
    );
    assert_eq!(
        alive.reap(&mut con, "c.1").await.unwrap(),
        0,
        "an incarnation that owns nothing"
    );
    // The dead node was only paused: a join it runs now is refused, not leaked.
    let late = dead
        .join(&mut con, &join("room", "1.9", None))
        .await
        .unwrap();
    assert!(late.fenced && !late.transition.changed);
    assert_eq!(late.transition.subscription_count, 1);

    assert_eq!(
        events(&mut con, &alive, "a", "room").await,
        ["channel_occupied room"]
    );
    assert_eq!(
        events(&mut con, &alive, "a", "alone").await,
        ["channel_occupied alone", "channel_vacated alone"]
    );
    assert_eq!(
        events(&mut con, &alive, "a", "presence-p").await,
        [
            "channel_occupied presence-p",
            "member_added presence-p u1",
            "member_added presence-p u2",
            "member_removed presence-p u1",
        ]
    );
    assert_eq!(
        alive
            .subscription_count(&mut con, "a", "room")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        alive
            .subscription_count(&mut con, "a", "presence-p")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        alive.members(&mut con, "a", "presence-p").await.unwrap(),
        [("u2".to_owned(), r#"{"n":2}"#.to_owned())]
    );
}

#[tokio::test]
async fn only_apps_with_webhook_endpoints_fill_the_streams() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    let state = ChannelState::new("t", "n.x", 0).with_webhook_apps(["hooked"]);
    let quiet = state
        .join(&mut con, &join("room", "1.1", None))
        .await
        .unwrap();
    assert!(
        quiet.transition.occupancy_changed,
        "the transition is still decided"
    );
    state.leave(&mut con, "a", "room", "1.1").await.unwrap();
    assert!(
        events(&mut con, &state, "a", "room").await.is_empty(),
        "nobody would read them"
    );
    let hooked = Joining {
        app: "hooked",
        channel: "room",
        socket: "1.2",
        member: None,
        max_members: 0,
        cached: false,
    };
    state.join(&mut con, &hooked).await.unwrap();
    assert_eq!(
        events(&mut con, &state, "hooked", "room").await,
        ["channel_occupied room"]
    );
}
