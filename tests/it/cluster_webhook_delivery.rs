//! Webhook delivery from the cluster's streams to a real receiver: in stream order, and when the
//! node holding a partition dies with a POST still open, the next holder resends that batch
//! under the same `webhook-id` before anything newer, so the receiver sees no inversion.

use std::sync::Arc;
use std::time::Duration;

use herald::cluster::redis::channel_state::{partition_of, ChannelState, Joining};
use herald::cluster::redis::connect;
use herald::cluster::redis::webhook_delivery::{deliver_partition, Round};
use herald::cluster::redis::webhook_stream::WebhookStreams;
use herald::config::Config;
use herald::metrics::Metrics;
use herald::webhooks::StreamEndpoint;
use serde_json::json;

use crate::receiver::Receiver;
use crate::redis_server::RedisServer;

fn endpoints(receiver: &Receiver) -> Vec<StreamEndpoint> {
    let hook = json!({"url": receiver.url("/h"), "event_types": ["channel_occupied", "channel_vacated", "member_added", "member_removed"],
        "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 100, "max_elapsed_time_ms": 5000}, "request_timeout_ms": 10000});
    let config = json!({"app_manager": {"array": {"apps": [{"id": "a", "key": "k", "secret": "s", "webhooks": [hook]}]}}});
    let config = Config::from_json(&config.to_string()).unwrap();
    StreamEndpoint::all(&config.apps, Arc::new(Metrics::new("t_", ["a"])))
}

fn names(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["name"].as_str().unwrap(),
                e["user_id"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

#[tokio::test]
async fn a_dead_holders_open_batch_is_resent_under_its_id_and_nothing_is_inverted() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let mut con = connect(&redis.url()).await.unwrap();
    let state = ChannelState::new("t", "n.x", 0);
    let partition = partition_of("a", "presence-w");
    let join = |socket, user| Joining {
        app: "a",
        channel: "presence-w",
        socket,
        member: Some((user, "{}")),
        max_members: 0,
        cached: false,
    };
    state.join(&mut con, &join("1.1", "u1")).await.unwrap();
    state.join(&mut con, &join("1.2", "u2")).await.unwrap();
    state
        .leave(&mut con, "a", "presence-w", "1.1")
        .await
        .unwrap();
    state
        .leave(&mut con, "a", "presence-w", "1.2")
        .await
        .unwrap();
    let expected = [
        "channel_occupied -",
        "member_added u1",
        "member_added u2",
        "member_removed u1",
        "member_removed u2",
        "channel_vacated -",
    ];

    // The first holder's POST is held open by the receiver; then the node dies.
    receiver.hold();
    let first = tokio::spawn({
        let (mut con, endpoints) = (con.clone(), endpoints(&receiver));
        async move {
            let streams = WebhookStreams::new("t", "a.1", 300);
            deliver_partition(&mut con, &streams, partition, &endpoints).await
        }
    });
    receiver.wait_until(|requests| !requests.is_empty()).await;
    first.abort();
    let _ = first.await;
    receiver.release();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let streams = WebhookStreams::new("t", "b.1", 300);
    let endpoints = endpoints(&receiver);
    let round = deliver_partition(&mut con, &streams, partition, &endpoints)
        .await
        .unwrap();
    assert_eq!(round, Round::CaughtUp(6));
    let requests = receiver.at("/h");
    assert_eq!(requests.len(), 2, "the open batch, then its resend");
    assert_eq!(
        requests[0].header("webhook-id"),
        requests[1].header("webhook-id"),
        "resent under the same id"
    );
    assert_eq!(
        names(&requests[1].events()),
        expected,
        "in order, nothing lost"
    );
    assert_eq!(
        requests[0].events(),
        requests[1].events(),
        "the same events"
    );
    assert_eq!(
        deliver_partition(&mut con, &streams, partition, &endpoints)
            .await
            .unwrap(),
        Round::CaughtUp(0),
        "nothing is sent twice by the holder"
    );
    let other = WebhookStreams::new("t", "c.1", 300);
    assert_eq!(
        deliver_partition(&mut con, &other, partition, &endpoints)
            .await
            .unwrap(),
        Round::NotHeld
    );
}

#[tokio::test]
async fn a_slow_receiver_does_not_let_the_lease_lapse() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let mut con = connect(&redis.url()).await.unwrap();
    let state = ChannelState::new("t", "n.x", 0);
    let partition = partition_of("a", "slow");
    let joining = Joining {
        app: "a",
        channel: "slow",
        socket: "1.1",
        member: None,
        max_members: 0,
        cached: false,
    };
    state.join(&mut con, &joining).await.unwrap();
    // Each answer takes three times the lease.
    receiver.hang(Duration::from_millis(900));
    let holder = tokio::spawn({
        let (mut con, endpoints) = (con.clone(), endpoints(&receiver));
        async move {
            let streams = WebhookStreams::new("t", "a.1", 300);
            deliver_partition(&mut con, &streams, partition, &endpoints).await
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let other = WebhookStreams::new("t", "b.1", 300);
    assert!(
        !other.lease(&mut con, partition).await.unwrap(),
        "renewed while the POST is open"
    );
    assert_eq!(holder.await.unwrap().unwrap(), Round::CaughtUp(1));
    assert_eq!(receiver.at("/h").len(), 1, "sent once");
}

#[test]
fn an_endpoints_cursor_key_follows_the_endpoint_not_its_place() {
    let keys = |hooks: serde_json::Value| -> Vec<String> {
        let config = json!({"app_manager": {"array": {"apps": [{"id": "a", "key": "k", "secret": "s", "webhooks": hooks}]}}});
        let config = Config::from_json(&config.to_string()).unwrap();
        let metrics = Arc::new(Metrics::new("t_", ["a"]));
        StreamEndpoint::all(&config.apps, metrics)
            .iter()
            .map(|e| e.key().to_owned())
            .collect()
    };
    let first = json!({"url": "http://127.0.0.1:9/one", "event_types": ["channel_occupied"]});
    let second = json!({"url": "http://127.0.0.1:9/two", "event_types": ["channel_occupied"]});
    let narrowed = json!({"url": "http://127.0.0.1:9/one", "event_types": ["channel_occupied"], "filter": {"channel_prefix": "x-"}});
    let forward = keys(json!([first, second]));
    let backward = keys(json!([second, first]));
    assert_eq!(
        (forward[0].as_str(), forward[1].as_str()),
        (backward[1].as_str(), backward[0].as_str())
    );
    let twins = keys(json!([first, first, narrowed]));
    assert_eq!(twins[0], forward[0]);
    assert_ne!(twins[0], twins[1], "twins each keep their own cursor");
    assert_ne!(
        twins[0], twins[2],
        "a different filter is a different endpoint"
    );
    assert!(twins.iter().all(|k| k.starts_with("a\n")));
}
