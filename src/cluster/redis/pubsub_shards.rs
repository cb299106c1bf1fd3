//! Each shard's part of the pub/sub connection, on a Redis Cluster with sharded pub/sub.
//!
//! redis-rs keeps one connection per shard under the node's pub/sub connection. One that
//! breaks is reported (a disconnection push, which does not say which shard): the fan-out then
//! opens the whole connection again, subscribing nothing itself, and every partition waits for
//! its recovery, which subscribes its topics again as its shard answers. A shard that stops
//! answering without closing its connection (paused, partitioned away) is found by a PING
//! routed to each partition's slot every heartbeat. A partition goes online only once every
//! topic wanted in it is subscribed, under the lock a join of a partition down wants its topic
//! under.

use std::collections::{HashMap, HashSet};

use ::redis::{ErrorKind, RedisError};
use std::time::Duration;

use super::availability::{members, only, Availability, Partitions};
use super::broadcast_wire::partition_of_key;
use super::connection::SlotRange;
use super::fanout::Fanout;
use super::subscriber::SubscriberSink;

impl Fanout {
    /// A key in `partition`'s slot.
    fn partition_key(&self, partition: u32) -> String {
        format!("{}:{{p{partition}}}:", self.prefix)
    }

    /// Checks the shards of `partitions`: returns those whose shard did not answer a PING on
    /// the pub/sub connection within `bound`.
    pub async fn failing_shards(&self, partitions: Partitions, bound: Duration) -> Partitions {
        let Some(sink) = self.listening().sink.clone() else {
            return partitions;
        };
        let checks = members(partitions).map(|partition| {
            let (mut sink, key) = (sink.clone(), self.partition_key(partition));
            async move {
                let answered = tokio::time::timeout(bound, sink.ping_slot(&key)).await;
                (partition, matches!(answered, Ok(Ok(()))))
            }
        });
        let mut failing = 0;
        for (partition, answered) in futures_util::future::join_all(checks).await {
            if !answered {
                failing |= only(partition);
            }
        }
        if failing == 0 {
            self.proved_alive();
        }
        failing
    }

    /// Subscribes every topic wanted in each of `partitions` again (and unsubscribes those
    /// given up while its shard was out); returns the partitions where that succeeded within
    /// `bound`, on the server `owners` name for the partition's slot (after a failover
    /// redis-rs may answer from another until a redirection taught it the way).
    pub async fn relisten(
        &self,
        partitions: Partitions,
        owners: &[SlotRange],
        bound: Duration,
    ) -> Partitions {
        let (sink, mut wanted, mut forgotten) = {
            let listening = self.listening();
            let wanted = self.by_partition(&listening.topics, partitions);
            let forgotten = self.by_partition(&listening.forgotten, partitions);
            (listening.sink.clone(), wanted, forgotten)
        };
        let Some(sink) = sink else {
            return 0;
        };
        let attempts = members(partitions).map(|partition| {
            let topics = wanted.remove(&partition).unwrap_or_default();
            let given_up = forgotten.remove(&partition).unwrap_or_default();
            let owner = SlotRange::owner(owners, &format!("p{partition}")).map(|r| r.id.clone());
            let sink = sink.clone();
            async move {
                let again = self.relisten_one(sink, partition, (&topics, &given_up), owner);
                let done = tokio::time::timeout(bound, again).await;
                (partition, matches!(done, Ok(Ok(true))), topics, given_up)
            }
        });
        let answered = futures_util::future::join_all(attempts).await;
        let mut listening = self.listening();
        let mut done = 0;
        for (partition, _, topics, given_up) in answered.into_iter().filter(|a| a.1) {
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

    /// `topics` of `partitions`, by partition.
    fn by_partition(
        &self,
        topics: &HashSet<String>,
        partitions: Partitions,
    ) -> HashMap<u32, Vec<String>> {
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
    }

    /// One partition's resubscription; true when the server that answered is `owner` (or
    /// cannot be told: a service that refuses `CLUSTER MYID`, or names no ids in `CLUSTER
    /// SLOTS`, is taken at its word).
    async fn relisten_one(
        &self,
        mut sink: SubscriberSink,
        partition: u32,
        (topics, given_up): (&[String], &[String]),
        owner: Option<String>,
    ) -> Result<bool, RedisError> {
        let answering = match sink.node_of_slot(&self.partition_key(partition)).await {
            Ok(id) => Some(id),
            Err(e) if matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) => None,
            Err(e) => return Err(e),
        };
        if !topics.is_empty() {
            sink.subscribe(topics.to_vec()).await?;
        }
        for topic in given_up {
            self.listening().unsubscribing_now(topic);
            sink.unsubscribe(topic.clone()).await?;
        }
        // Checked last: a subscription sent to another server was redirected, which teaches
        // redis-rs the way for the next attempt.
        let owner = owner.filter(|id| !id.is_empty());
        Ok(match (answering, owner) {
            (Some(answering), Some(owner)) => answering == owner,
            _ => true,
        })
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
