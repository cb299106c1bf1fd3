//! A broadcast to a large channel is written by several threads at once
//! (`cluster/delivery.rs`): order must not suffer. Every subscriber gets a channel's events in
//! publish order, and a batch's events, spread over two channels it is on, in the batch's order.

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::support::{Client, Rest, TestServer, APP_ID};

/// More than two chunks' worth of recipients (a chunk is 512), so the writes are spread.
const SUBSCRIBERS: usize = 1_100;
const BATCHES: usize = 5;
/// Sockudo's default batch limit.
const PER_BATCH: usize = 10;

#[tokio::test]
async fn a_split_broadcast_keeps_each_channels_order_and_a_batchs_order() {
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["max_event_batch_size"] = json!(PER_BATCH);
    })
    .await;
    let mut clients = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS / 100 {
        let batch = (0..100).map(|_| async {
            let mut client = server.client().await;
            client.subscribe("split-a").await;
            client.subscribe("split-b").await;
            client
        });
        clients.extend(join_all(batch).await);
    }
    let rest = Rest::new(&server);
    for batch in 0..BATCHES {
        let events: Vec<Value> = (0..PER_BATCH)
            .map(|i| {
                let seq = batch * PER_BATCH + i;
                let channel = if seq % 3 == 0 { "split-b" } else { "split-a" };
                json!({"name": "seq", "channel": channel, "data": seq.to_string()})
            })
            .collect();
        let (status, body) = rest
            .post(
                &format!("/apps/{APP_ID}/batch_events"),
                json!({"batch": events}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let heard = join_all(clients.iter_mut().map(|client| async {
        let mut seqs = Vec::with_capacity(BATCHES * PER_BATCH);
        while seqs.len() < BATCHES * PER_BATCH {
            let frame: Value = client.recv_event("seq").await;
            seqs.push(frame["data"].as_str().unwrap().parse::<usize>().unwrap());
        }
        seqs
    }))
    .await;
    let expected: Vec<usize> = (0..BATCHES * PER_BATCH).collect();
    for (i, seqs) in heard.iter().enumerate() {
        assert_eq!(seqs, &expected, "subscriber {i}");
    }
    for client in clients {
        client.disconnect().await;
    }
}

/// Every subscriber of one large channel gets every event of a fast run of single publishes,
/// in order (each publish's writes end before the channel's next).
#[tokio::test]
async fn single_publishes_to_a_large_channel_arrive_in_order_everywhere() {
    let server = TestServer::start().await;
    let mut clients: Vec<Client> = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS / 100 {
        let batch = (0..100).map(|_| async {
            let mut client = server.client().await;
            client.subscribe("split-single").await;
            client
        });
        clients.extend(join_all(batch).await);
    }
    const EVENTS: usize = 30;
    let rest = Rest::new(&server);
    let publishes = (0..EVENTS).map(|seq| {
        let body = json!({"name": "seq", "channel": "split-single", "data": seq.to_string()});
        let rest = &rest;
        async move { rest.post(&format!("/apps/{APP_ID}/events"), body).await }
    });
    // One after the other: a publish is answered once its event is in line.
    for publish in publishes {
        assert_eq!(publish.await.0, 200);
    }
    let heard = join_all(clients.iter_mut().map(|client| async {
        let mut seqs = Vec::with_capacity(EVENTS);
        while seqs.len() < EVENTS {
            let frame = client.recv_event("seq").await;
            seqs.push(frame["data"].as_str().unwrap().parse::<usize>().unwrap());
        }
        seqs
    }))
    .await;
    let expected: Vec<usize> = (0..EVENTS).collect();
    assert!(heard.iter().all(|seqs| *seqs == expected));
    for client in clients {
        client.disconnect().await;
    }
}
