//! What a node reports of the Redis it uses: the primaries (`herald_redis_primary`, the
//! console) and whether it is online on each (`herald_cluster_online{shard}`: on a Redis
//! Cluster, 0 for the shard whose partitions are down while the node serves the others).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::availability::{members, Availability};
use super::connection::{RedisConnection, SlotRange};
use crate::metrics::Metrics;

/// How often the node looks up the primaries it uses (a failover, a resharding or a shard out
/// shows in the metrics and the console within it).
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Reports the primaries the node uses and its state on each, now and every [`REPORT_EVERY`].
pub fn start(
    (con, availability, metrics): (&RedisConnection, &Arc<Availability>, &Arc<Metrics>),
    (tasks, close): (&TaskTracker, &CancellationToken),
) {
    let (con, availability, metrics) = (con.clone(), availability.clone(), metrics.clone());
    let close = close.clone();
    tasks.spawn(async move {
        let mut every = tokio::time::interval(REPORT_EVERY);
        let mut ranges = Vec::new();
        loop {
            tokio::select! {
                _ = close.cancelled() => return,
                _ = every.tick() => {}
                _ = availability.changed.notified() => {}
            }
            // Unreachable (or asked of a shard that is out): the ranges last found stand.
            let found = tokio::time::timeout(REPORT_EVERY / 2, con.slot_ranges()).await;
            if let Ok(Ok(found)) = found {
                ranges = found;
            }
            if !ranges.is_empty() {
                report(&ranges, &availability, &metrics);
            }
        }
    });
}

/// Reports the primaries of `ranges`, each online unless the node is offline or a partition
/// whose slot it owns is down.
fn report(ranges: &[SlotRange], availability: &Availability, metrics: &Metrics) {
    let mut primaries: Vec<String> = ranges.iter().map(|r| r.primary.clone()).collect();
    primaries.sort();
    primaries.dedup();
    let down = availability.down();
    let shards = primaries
        .iter()
        .map(|primary| {
            let owns_a_down_partition = members(down).any(|partition| {
                let owner = SlotRange::owner(ranges, &format!("p{partition}"));
                owner.is_some_and(|range| range.primary == *primary)
            });
            let online = availability.is_online() && !owns_a_down_partition;
            (primary.clone(), online)
        })
        .collect();
    let link = metrics.redis_link();
    link.primaries_now(primaries);
    link.online_now(shards);
}
