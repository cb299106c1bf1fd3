//! Cross-node fan-out against a real Redis: one PUBLISH reaches every node listening to the
//! channel, once and in order, with the exclusion carried along; a node not listening gets
//! nothing, and stops getting a channel once it unlistens.

use std::sync::Arc;
use std::time::Duration;

use herald::cluster::redis::availability::Availability;
use herald::cluster::redis::connect;
use herald::cluster::redis::fanout::{Broadcast, BroadcastBody, Fanout, Received};
use herald::outbound::WireFrame;

use crate::redis_server::RedisServer;

async fn node(redis: &RedisServer, origin: &str) -> (Arc<Fanout>, Received) {
    let publisher = connect(&redis.url()).await.unwrap();
    let apps = ["app".to_owned()];
    let available = Arc::new(Availability::new(false));
    let over = (publisher, available);
    Fanout::start("t", apps, origin, over, Duration::from_secs(1))
        .await
        .unwrap()
}

fn frame(json: &str) -> WireFrame {
    WireFrame::text(json)
}

async fn next(received: &mut Received) -> Broadcast {
    tokio::time::timeout(Duration::from_secs(5), received.broadcasts.recv())
        .await
        .expect("a broadcast in time")
        .expect("the pub/sub connection is open")
}

#[tokio::test]
async fn a_publish_reaches_every_listening_node_once_and_in_order() {
    let redis = RedisServer::start();
    let (a, mut from_a) = node(&redis, "a.1").await;
    let (b, mut at_b) = node(&redis, "b.1").await;
    let (c, mut at_c) = node(&redis, "c.1").await;
    a.listen("app", "room").await.unwrap();
    b.listen("app", "room").await.unwrap();
    c.listen("app", "elsewhere").await.unwrap();
    for i in 0..200 {
        let except = (i % 2 == 0).then_some("9.9");
        let receivers = a
            .publish(
                "app",
                "room",
                except,
                &frame(&format!(r#"{{"n":{i}}}"#)),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            receivers, 2,
            "both listening nodes, the publisher's own included"
        );
    }
    for received in [&mut from_a, &mut at_b] {
        for i in 0..200 {
            let broadcast = next(received).await;
            let event = BroadcastBody::Event(frame(&format!(r#"{{"n":{i}}}"#)));
            assert_eq!(broadcast.body, event, "in order");
            assert_eq!(broadcast.version, None);
            assert_eq!(
                (broadcast.app.as_str(), broadcast.channel.as_str()),
                ("app", "room")
            );
            assert_eq!(broadcast.origin, "a.1");
            assert_eq!(broadcast.except.as_deref(), (i % 2 == 0).then_some("9.9"));
        }
    }
    c.publish("app", "elsewhere", None, &frame("{}"), None)
        .await
        .unwrap();
    assert_eq!(
        next(&mut at_c).await.channel,
        "elsewhere",
        "nothing of room came before"
    );

    b.unlisten("app", "room").await.unwrap();
    assert_eq!(
        a.publish("app", "room", None, &frame("{}"), None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        next(&mut from_a).await.body,
        BroadcastBody::Event(frame("{}"))
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), at_b.broadcasts.recv())
            .await
            .is_err(),
        "a node that unlistened gets nothing more"
    );

    b.check(Duration::from_secs(1))
        .await
        .expect("a live pub/sub connection answers PING");
    drop(redis);
    assert!(
        b.check(Duration::from_secs(1)).await.is_err(),
        "a dead one is found"
    );
}
