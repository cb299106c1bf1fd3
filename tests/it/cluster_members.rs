//! The joiner-list invariant across nodes, against a real Redis: sockets on three nodes join a
//! presence channel at the same instant; each gets a member list with the version it was read
//! at, and the notices every node receives after it never add someone already in the list and
//! never miss someone absent from it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use herald::cluster::redis::availability::Availability;
use herald::cluster::redis::channel_state::{ChannelState, Joining};
use herald::cluster::redis::connect;
use herald::cluster::redis::fanout::{Broadcast, BroadcastBody, Fanout};
use tokio::sync::Barrier;

use crate::redis_server::RedisServer;

const CHANNEL: &str = "presence-m";

/// A socket's member list and the version it was read at.
struct Joiner {
    node: usize,
    socket: String,
    version: u64,
    members: BTreeSet<String>,
}

/// Applies the notices after the joiner's version to its list, checking each one.
fn follow(joiner: &mut Joiner, notices: &[Broadcast]) {
    for notice in notices.iter().filter(|n| n.version > Some(joiner.version)) {
        match &notice.body {
            BroadcastBody::MemberAdded { user_id, .. } => {
                assert!(
                    joiner.members.insert(user_id.clone()),
                    "{}: member_added for {user_id}, already in its list",
                    joiner.socket
                );
            }
            BroadcastBody::MemberRemoved { user_id } => {
                assert!(
                    joiner.members.remove(user_id),
                    "{}: member_removed for {user_id}, not in its list",
                    joiner.socket
                );
            }
            BroadcastBody::Event(_)
            | BroadcastBody::Terminate { .. }
            | BroadcastBody::Watchlist { .. }
            | BroadcastBody::SubscriptionCount(_) => {}
        }
    }
}

#[tokio::test]
async fn concurrent_joins_on_three_nodes_keep_every_member_list_consistent() {
    let redis = RedisServer::start();
    let barrier = Arc::new(Barrier::new(3));
    let mut nodes = Vec::new();
    for node in 0..3 {
        let con = connect(&redis.url()).await.unwrap();
        let incarnation = format!("n{node}.x");
        let (fanout, mut received) = Fanout::start(
            "t",
            ["a".to_owned()],
            &incarnation,
            (con.clone(), Arc::new(Availability::new(false))),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        // A node listens before its first join: no notice after a list can be missed.
        fanout.listen("a", CHANNEL).await.unwrap();
        let barrier = barrier.clone();
        nodes.push(tokio::spawn(async move {
            let state = ChannelState::new("t", &incarnation, 0);
            let mut con = con;
            barrier.wait().await;
            let mut joiners = Vec::new();
            for k in 0..6 {
                let socket = format!("{node}.{k}");
                // Each node has users of its own and one user all nodes share.
                let user = if k == 0 {
                    "shared".to_owned()
                } else {
                    format!("u{node}{k}")
                };
                let joining = Joining {
                    app: "a",
                    channel: CHANNEL,
                    socket: &socket,
                    member: Some((&user, "{}")),
                    max_members: 0,
                    cached: false,
                };
                let joined = state.join(&mut con, &joining).await.unwrap();
                assert!(
                    joined.members.iter().any(|(u, _)| *u == user),
                    "the joiner is in its own list"
                );
                let members = joined.members.into_iter().map(|(u, _)| u).collect();
                joiners.push(Joiner {
                    node,
                    socket,
                    version: joined.version,
                    members,
                });
            }
            barrier.wait().await;
            // Node 0's sockets leave while the others stay.
            if node == 0 {
                for joiner in &joiners {
                    state
                        .leave(&mut con, "a", CHANNEL, &joiner.socket)
                        .await
                        .unwrap();
                }
            }
            barrier.wait().await;
            // Every node receives every notice: collect them until quiet.
            let mut notices = Vec::new();
            while let Ok(Some(b)) =
                tokio::time::timeout(Duration::from_millis(300), received.broadcasts.recv()).await
            {
                notices.push(b);
            }
            (joiners, notices, fanout)
        }));
    }
    let mut results = Vec::new();
    for node in nodes {
        results.push(node.await.unwrap());
    }
    let mut con = connect(&redis.url()).await.unwrap();
    let probe = ChannelState::new("t", "probe.x", 0);
    let final_list: BTreeSet<String> = probe
        .members(&mut con, "a", CHANNEL)
        .await
        .unwrap()
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    assert_eq!(
        final_list.len(),
        1 + 2 * 5,
        "the shared user and the staying nodes' own users"
    );
    let total_notices = results[0].1.len();
    assert_eq!(
        total_notices,
        16 + 5,
        "16 users added; node 0's 5 own users removed (the shared one stays)"
    );
    for (joiners, notices, _) in &mut results {
        let versions: Vec<u64> = notices.iter().map(|n| n.version.unwrap()).collect();
        // A channel's versions start from Redis's clock (so a rebuilt channel never reuses
        // one) and then count up by one per notice.
        let first = versions[0];
        assert_eq!(
            versions,
            (first..first + total_notices as u64).collect::<Vec<_>>(),
            "every notice once, in order"
        );
        for joiner in joiners.iter_mut().filter(|j| j.node != 0) {
            follow(joiner, notices);
            assert_eq!(
                joiner.members, final_list,
                "{} ends with the channel's members",
                joiner.socket
            );
        }
    }
}
