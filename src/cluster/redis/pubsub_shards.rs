//! Each shard's part of the pub/sub connection, on a Redis Cluster with sharded pub/sub.
//!
//! redis-rs keeps one connection per shard under the node's pub/sub connection, reconnects one
//! that broke and subscribes its topics again, but does not say which shard it was: whatever
//! was published there meanwhile is lost. So the node records, per partition, who its shard's
//! server knows that connection as (`CLIENT INFO`: id and addresses); a check that finds no
//! answer, or another identity (the connection was opened again, another server owns the slot
//! now, or the server restarted), takes that partition down until its recovery subscribes its
//! topics again and resyncs it. A partition goes online only once every topic wanted in it is
//! subscribed, under the lock a join of a partition down wants its topic under.

use std::collections::HashMap;
use std::time::Duration;

use super::availability::{members, only, Availability, Partitions};
use super::broadcast_wire::partition_of_key;
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
        let recorded = self
            .client_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let checks = members(partitions).map(|partition| {
            let (mut sink, key) = (sink.clone(), self.partition_key(partition));
            async move {
                let id = tokio::time::timeout(bound, sink.identity(&key)).await;
                (partition, id.ok().and_then(Result::ok))
            }
        });
        let mut failing = 0;
        for (partition, id) in futures_util::future::join_all(checks).await {
            if id.is_none() || recorded[partition as usize].as_ref() != id.as_ref() {
                failing |= only(partition);
            }
        }
        if failing == 0 {
            self.proved_alive();
        }
        failing
    }

    /// Records the connection of each of `partitions`, then subscribes every topic wanted in
    /// it again (and unsubscribes those given up while its shard was out); returns the
    /// partitions where both succeeded within `bound`.
    pub async fn relisten(&self, partitions: Partitions, bound: Duration) -> Partitions {
        let in_partitions = |topics: &mut dyn Iterator<Item = &String>| {
            let mut by_partition: HashMap<u32, Vec<String>> = HashMap::new();
            for topic in topics {
                match partition_of_key(&self.prefix, topic) {
                    Some(p) if partitions & only(p) != 0 => {
                        by_partition.entry(p).or_default().push(topic.clone())
                    }
                    _ => {}
                }
            }
            by_partition
        };
        let (sink, mut wanted, mut forgotten) = {
            let listening = self.listening();
            let wanted = in_partitions(&mut listening.topics.iter());
            let forgotten = in_partitions(&mut listening.forgotten.iter());
            (listening.sink.clone(), wanted, forgotten)
        };
        let Some(sink) = sink else {
            return 0;
        };
        let confirms_by_push = sink.confirms_by_push();
        let subscribed = members(partitions).map(|partition| {
            let (mut sink, key) = (sink.clone(), self.partition_key(partition));
            let topics = wanted.remove(&partition).unwrap_or_default();
            let given_up = forgotten.remove(&partition).unwrap_or_default();
            async move {
                let again = async {
                    // The identity first: a connection opened again after it shows as another.
                    let id = sink.identity(&key).await?;
                    if !topics.is_empty() {
                        sink.subscribe(topics.clone()).await?;
                    }
                    for topic in &given_up {
                        if confirms_by_push {
                            let mut listening = self.listening();
                            *listening.unsubscribing.entry(topic.clone()).or_default() += 1;
                        }
                        sink.unsubscribe(topic.clone()).await?;
                    }
                    Ok::<_, ::redis::RedisError>(id)
                };
                let id = tokio::time::timeout(bound, again).await;
                (partition, id.ok().and_then(Result::ok), topics, given_up)
            }
        });
        let answered = futures_util::future::join_all(subscribed).await;
        let mut listening = self.listening();
        let mut ids = self.client_ids.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0;
        for (partition, id, topics, given_up) in answered {
            let Some(id) = id else { continue };
            ids[partition as usize] = Some(id);
            done |= only(partition);
            for topic in topics {
                listening.unsubscribed.remove(&topic);
            }
            for topic in given_up {
                listening.forgotten.remove(&topic);
            }
        }
        done
    }

    /// Takes online those of `partitions` none of whose wanted topics waits to be subscribed
    /// (a join while they were down may have added one since they were subscribed again);
    /// returns them.
    pub fn go_online(&self, partitions: Partitions, availability: &Availability) -> Partitions {
        let listening = self.listening();
        let waiting = (listening.unsubscribed.iter())
            .filter_map(|topic| partition_of_key(&self.prefix, topic))
            .fold(0, |set, p| set | only(p));
        availability.went_online_in(partitions & !waiting)
    }
}
