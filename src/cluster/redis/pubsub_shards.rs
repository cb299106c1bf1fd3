//! Each shard's part of the pub/sub connection, on a Redis Cluster with sharded pub/sub.
//!
//! redis-rs keeps one connection per shard under the node's pub/sub connection, reconnects one
//! that broke and subscribes its topics again, but does not say which shard it was: whatever
//! was published there meanwhile is lost. So the node records, per partition, the id its
//! shard's server gives that connection (`CLIENT ID`); a check that finds no answer, or another
//! id (the connection was opened again, or another server owns the slot now), takes that
//! partition down until its recovery subscribes its topics again and resyncs it.

use std::collections::HashMap;
use std::time::Duration;

use super::availability::{members, only, Partitions};
use super::broadcast_wire::partition_of_topic;
use super::fanout::Fanout;

impl Fanout {
    /// A key in `partition`'s slot.
    fn partition_key(&self, partition: u32) -> String {
        format!("{}:{{p{partition}}}:", self.prefix)
    }

    /// Checks the connections of `partitions`: returns those whose shard did not answer within
    /// `bound`, or whose connection is not the one recorded.
    pub async fn failing_shards(&self, partitions: Partitions, bound: Duration) -> Partitions {
        let Some(sink) = self.listening().sink.clone() else {
            return partitions;
        };
        let recorded = *self.client_ids.lock().unwrap_or_else(|e| e.into_inner());
        let checks = members(partitions).map(|partition| {
            let (mut sink, key) = (sink.clone(), self.partition_key(partition));
            async move {
                let id = tokio::time::timeout(bound, sink.client_id(&key)).await;
                (partition, id.ok().and_then(Result::ok))
            }
        });
        let mut failing = 0;
        for (partition, id) in futures_util::future::join_all(checks).await {
            if id.is_none() || recorded[partition as usize] != id {
                failing |= only(partition);
            }
        }
        if failing == 0 {
            self.proved_alive();
        }
        failing
    }

    /// Records the connection of each of `partitions`, then subscribes every topic wanted in
    /// it again; returns the partitions where both succeeded within `bound`.
    pub async fn relisten(&self, partitions: Partitions, bound: Duration) -> Partitions {
        let (sink, mut wanted) = {
            let listening = self.listening();
            let mut wanted: HashMap<u32, Vec<String>> = HashMap::new();
            for topic in &listening.topics {
                match partition_of_topic(&self.prefix, topic) {
                    Some(p) if partitions & only(p) != 0 => {
                        wanted.entry(p).or_default().push(topic.clone())
                    }
                    _ => {}
                }
            }
            (listening.sink.clone(), wanted)
        };
        let Some(sink) = sink else {
            return 0;
        };
        let subscribed = members(partitions).map(|partition| {
            let (mut sink, key) = (sink.clone(), self.partition_key(partition));
            let topics = wanted.remove(&partition).unwrap_or_default();
            async move {
                let again = async {
                    // The id first: a connection opened again after it shows as another id.
                    let id = sink.client_id(&key).await?;
                    if !topics.is_empty() {
                        sink.subscribe(topics).await?;
                    }
                    Ok::<_, ::redis::RedisError>(id)
                };
                let id = tokio::time::timeout(bound, again).await;
                (partition, id.ok().and_then(Result::ok))
            }
        });
        let answered = futures_util::future::join_all(subscribed).await;
        let mut ids = self.client_ids.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0;
        for (partition, id) in answered {
            if let Some(id) = id {
                ids[partition as usize] = Some(id);
                done |= only(partition);
            }
        }
        done
    }
}
