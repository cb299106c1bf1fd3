//! How a node gets partitions back while the rest of it stays in the cluster (a Redis Cluster
//! with sharded pub/sub, where a shard can be out while the others serve).
//!
//! The supervisor checks every shard's pub/sub connection each heartbeat (and at once when
//! redis-rs reports a broken one): a partition whose shard does not answer, or whose connection
//! was opened again meanwhile (messages lost), goes down, as does one whose script or publish
//! failed. An attempt on the partitions down then takes back those whose shard answers: their
//! epoch is checked (and written again when their shard lost it), their topics subscribed
//! again, and their lines resynced in rebuild mode (a promoted replica may lack the last
//! writes: no event for what stayed).

use std::sync::Arc;
use std::time::Duration;

use ::redis::RedisError;
use tokio::time::Instant;

use super::availability::{members, only, Partitions, EVERY_PARTITION};
use super::channel_state::{partition_of, ChannelState};
use super::connection::RedisConnection;
use super::node::cluster_epoch;
use super::recovery::Supervisor;

/// Attempts in a row where the pub/sub connection did not reach shards the commands reached,
/// before it is opened again.
const PUBSUB_MISSES: u32 = 3;

/// What a check or an attempt may wait for one shard.
const SHARD_BOUND: Duration = Duration::from_secs(1);

/// When the next attempt on the partitions down is due, backing off while they stay down.
pub struct ShardRetry {
    /// The next attempt's time.
    pub due: Instant,
    delay: Duration,
}

impl Default for ShardRetry {
    fn default() -> ShardRetry {
        ShardRetry {
            due: Instant::now(),
            delay: Duration::from_millis(100),
        }
    }
}

impl ShardRetry {
    /// An attempt ended: `all_back` resets the back-off, else the next waits longer.
    pub fn attempt(&mut self, all_back: bool) {
        if all_back {
            *self = ShardRetry::default();
            return;
        }
        self.due = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(Duration::from_secs(2));
    }
}

fn bounded_error(what: &'static str) -> RedisError {
    RedisError::from((::redis::ErrorKind::Io, what))
}

async fn bounded<T>(
    what: &'static str,
    query: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    tokio::time::timeout(SHARD_BOUND * 3, query)
        .await
        .unwrap_or_else(|_| Err(bounded_error(what)))
}

impl Supervisor {
    /// Checks the pub/sub connection of every partition up; takes those failing down.
    pub(super) async fn check_shards(&self) {
        let availability = &self.link.availability;
        let up = EVERY_PARTITION & !availability.down();
        let failing = self.link.fanout.failing_shards(up, SHARD_BOUND).await;
        if failing != 0 {
            let why = "a shard's pub/sub connection broke, stopped answering or moved";
            availability.went_offline_in(failing, &why);
        }
    }

    /// One attempt at the partitions down; true when none is down any more.
    pub(super) async fn recover_shards(&mut self) -> bool {
        match self.try_recover_shards().await {
            Ok(all_back) => all_back,
            Err(error) => {
                tracing::warn!(%error, "the partitions of a Redis shard cannot resync yet; retrying");
                false
            }
        }
    }

    async fn try_recover_shards(&mut self) -> Result<bool, RedisError> {
        let availability = self.link.availability.clone();
        let down = availability.down();
        availability.recovering(down);
        let mut con = self.link.con();
        let state = self.link.state();
        let prefix = &self.rejoin.redis.prefix;
        let epoch = bounded("no answer", cluster_epoch(&mut con, prefix)).await?;
        if epoch != state.epoch() {
            // A sibling found the state lost and started a new epoch: the whole node rejoins.
            availability.went_offline(&"the cluster's epoch changed");
            return Ok(false);
        }
        let mut answering = epochs_in_place(&state, &con, down).await;
        // Those that answer go on at once; only when none does can the connection be to blame.
        if answering == 0 {
            // After a failover redis-rs's connection can keep asking the dead primary: a fresh
            // one learns the topology from the seeds (it fails while a shard hangs: no matter).
            let reopened = bounded("no Redis Cluster node answers", con.reopen_cluster()).await;
            if reopened.is_ok() {
                answering = epochs_in_place(&state, &con, down).await;
            }
        }
        let owners = bounded("no answer", con.slot_ranges()).await?;
        let listening = (self.link.fanout)
            .relisten(answering, &owners, SHARD_BOUND)
            .await;
        self.pubsub_misses = match answering & !listening {
            0 => 0,
            _ => self.pubsub_misses + 1,
        };
        if self.pubsub_misses >= PUBSUB_MISSES {
            // The commands reach those shards and the pub/sub connection still does not.
            tracing::warn!("the pub/sub connection does not reach the shards the commands reach; opening it again");
            self.pubsub_misses = 0;
            self.link.fanout.reopen();
        }
        if listening == 0 {
            return Ok(false);
        }
        let owned = bounded("no answer", state.owned(&mut con, listening)).await?;
        let generation = availability.next_generation(listening);
        let up = self.link.fanout.go_online(listening, &availability);
        let owned = (owned.into_iter())
            .filter(|(app, channel, _)| up & only(partition_of(app, channel)) != 0)
            .collect();
        self.resync((generation, up), owned, true);
        self.metrics.cluster_resync();
        let left = availability.down().count_ones();
        tracing::info!(
            partitions = up.count_ones(),
            still_down = left,
            "partitions whose Redis shard answers again resync in rebuild mode"
        );
        Ok(left == 0)
    }
}

/// The partitions of `partitions` whose shard answers and holds the node's epoch (written again
/// where it is missing or older: the cluster's epoch was checked to be the node's).
async fn epochs_in_place(
    state: &Arc<ChannelState>,
    con: &RedisConnection,
    partitions: Partitions,
) -> Partitions {
    let checks = members(partitions).map(|partition| {
        let mut con = con.clone();
        let key = format!("{}epoch", state.partition_base(partition));
        let epoch = state.epoch().to_owned();
        async move {
            let in_place = async {
                let held: Option<String> =
                    ::redis::cmd("GET").arg(&key).query_async(&mut con).await?;
                if held.as_deref() != Some(epoch.as_str()) {
                    let _: () = ::redis::cmd("SET")
                        .arg(&key)
                        .arg(&epoch)
                        .query_async(&mut con)
                        .await?;
                }
                Ok::<_, RedisError>(())
            };
            let answered = tokio::time::timeout(SHARD_BOUND, in_place).await;
            (partition, matches!(answered, Ok(Ok(()))))
        }
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .filter(|(_, in_place)| *in_place)
        .fold(0, |set, (partition, _)| set | only(partition))
}
