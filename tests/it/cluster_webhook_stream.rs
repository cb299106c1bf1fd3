//! A partition's webhook stream against a real Redis: one node at a time holds it, a batch is
//! recorded before its POST, and a node that takes over after a death resends that batch under
//! the same `webhook-id` before anything newer; the dead node can no longer move the cursor.

use std::time::Duration;

use herald::cluster::redis::channel_state::{partition_of, ChannelState, Joining};
use herald::cluster::redis::connect;
use herald::cluster::redis::webhook_stream::{Next, StreamEntry, WebhookStreams};
use herald::cluster::redis::RedisConnection;

use crate::redis_server::RedisServer;

fn names(entries: &[StreamEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.field("name").unwrap()).collect()
}

/// Each socket in turn occupies and vacates app `a`'s channel `room`: two stream entries each.
async fn occupy_and_vacate(con: &mut RedisConnection, sockets: &[&str]) {
    let state = ChannelState::new("t", "n.x", 0);
    for &socket in sockets {
        let joining = Joining {
            app: "a",
            channel: "room",
            socket,
            member: None,
            max_members: 0,
            cached: false,
        };
        state.join(con, &joining).await.unwrap();
        state.leave(con, "a", "room", socket).await.unwrap();
    }
}

#[tokio::test]
async fn a_batch_cut_short_by_a_death_is_resent_under_its_id_by_the_next_holder() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    occupy_and_vacate(&mut con, &["1.1", "1.1"]).await;
    let partition = partition_of("a", "room");
    let all = |_: &StreamEntry| true;
    let first = WebhookStreams::new("t", "a.1", 300);
    let second = WebhookStreams::new("t", "b.1", 300);
    assert!(first.lease(&mut con, partition).await.unwrap());
    assert!(
        !second.lease(&mut con, partition).await.unwrap(),
        "one holder at a time"
    );
    assert!(
        first.lease(&mut con, partition).await.unwrap(),
        "the holder renews"
    );

    let cut_short = first
        .next_batch(&mut con, partition, "a\n0", 2, all)
        .await
        .unwrap()
        .batch()
        .unwrap();
    assert_eq!(
        names(&cut_short.entries),
        ["channel_occupied", "channel_vacated"]
    );

    // The first node dies before its POST is answered; its lease runs out.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(second.lease(&mut con, partition).await.unwrap());
    let resent = second
        .next_batch(&mut con, partition, "a\n0", 2, all)
        .await
        .unwrap()
        .batch()
        .unwrap();
    assert_eq!(
        resent, cut_short,
        "the same batch under the same webhook-id"
    );
    assert!(
        !first
            .done(&mut con, partition, "a\n0", &cut_short)
            .await
            .unwrap(),
        "the dead holder cannot move the cursor"
    );
    let zombie = first
        .next_batch(&mut con, partition, "a\n2", 2, all)
        .await
        .unwrap();
    assert_eq!(zombie, Next::LeaseLost, "nor record a batch");
    assert!(second
        .done(&mut con, partition, "a\n0", &resent)
        .await
        .unwrap());

    let next = second
        .next_batch(&mut con, partition, "a\n0", 2, all)
        .await
        .unwrap()
        .batch()
        .unwrap();
    assert_ne!(next.id, cut_short.id, "a new batch, a new id");
    assert_eq!(
        names(&next.entries),
        ["channel_occupied", "channel_vacated"]
    );
    assert!(second
        .done(&mut con, partition, "a\n0", &next)
        .await
        .unwrap());
    assert_eq!(
        second
            .next_batch(&mut con, partition, "a\n0", 2, all)
            .await
            .unwrap(),
        Next::Empty
    );

    // Another endpoint has its own cursor, and skips what its filter does not take.
    let vacates = |e: &StreamEntry| e.field("name") == Some("channel_vacated");
    let own = second
        .next_batch(&mut con, partition, "a\n1", 10, vacates)
        .await
        .unwrap()
        .batch()
        .unwrap();
    assert_eq!(names(&own.entries), ["channel_vacated", "channel_vacated"]);
    assert_eq!(
        own.last, next.last,
        "its cursor passes the entries it skipped"
    );

    // Once every endpoint is past them, the entries go; before, nothing does.
    let endpoints = ["a\n0", "a\n1", "a\n2"];
    assert_eq!(
        second.trim(&mut con, partition, &endpoints).await.unwrap(),
        0,
        "an endpoint with no cursor yet"
    );
    assert!(second
        .done(&mut con, partition, "a\n1", &own)
        .await
        .unwrap());
    assert_eq!(
        second
            .trim(&mut con, partition, &endpoints[..2])
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        second
            .next_batch(&mut con, partition, "a\n0", 10, all)
            .await
            .unwrap(),
        Next::Empty
    );
}

#[tokio::test]
async fn a_holder_whose_lease_ran_out_during_a_stall_commits_unless_another_took_over() {
    let redis = RedisServer::start();
    let mut con = connect(&redis.url()).await.unwrap();
    occupy_and_vacate(&mut con, &["1.1", "1.2"]).await;
    let partition = partition_of("a", "room");
    let all = |_: &StreamEntry| true;
    let first = WebhookStreams::new("t", "a.1", 300);
    let second = WebhookStreams::new("t", "b.1", 300);
    assert!(first.lease(&mut con, partition).await.unwrap());
    let delivered = first
        .next_batch(&mut con, partition, "a\n0", 2, all)
        .await
        .unwrap()
        .batch()
        .unwrap();

    // The POST was answered, then Redis stalled past the lease; nobody took the partition.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(first
        .done(&mut con, partition, "a\n0", &delivered)
        .await
        .unwrap());
    assert!(second.lease(&mut con, partition).await.unwrap());
    let after = second
        .next_batch(&mut con, partition, "a\n0", 2, all)
        .await
        .unwrap()
        .batch()
        .unwrap();
    assert_ne!(
        after.id, delivered.id,
        "the delivered batch is not sent again"
    );
    assert_eq!(
        names(&after.entries),
        ["channel_occupied", "channel_vacated"]
    );

    // The second holder's lease runs out with its batch open: a late commit of the first's
    // batch must not move the cursor past it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !first
            .done(&mut con, partition, "a\n0", &delivered)
            .await
            .unwrap(),
        "not the endpoint's open batch"
    );
    assert!(first.lease(&mut con, partition).await.unwrap());
    let resent = first
        .next_batch(&mut con, partition, "a\n0", 2, all)
        .await
        .unwrap()
        .batch()
        .unwrap();
    assert_eq!(resent, after, "the open batch is resent under its id");
}
