//! What a cluster node asks Redis before it admits work: a new connection against its app's
//! cluster-wide `max_connections`, and a request against the rate limits' and quotas' shared
//! windows. While Redis (or the shard of the counter's partition) is known to be unreachable the
//! node decides alone at once (its own count), rather than make every request wait for a
//! timeout.

use std::time::Duration;

use super::broadcast_wire::partition_of_key;
use super::stage::{bounded, RedisCluster};
use crate::apps::App;
use crate::cluster::{Admission, Unavailable, WindowKey};

impl RedisCluster {
    /// Adds `amount` hits to the cluster-wide window of `key`: its count and when it ends.
    pub async fn hit_window(
        &self,
        key: &WindowKey<'_>,
        window: Duration,
        amount: u32,
    ) -> Result<(u64, Duration), Unavailable> {
        if !self.reachable(&self.windows.key(key)) {
            return Err(Unavailable);
        }
        let hit = bounded(self.windows.hit(key, window, amount)).await;
        hit.map_err(|error| {
            tracing::debug!(%error, "a shared rate-limit window could not reach Redis");
            Unavailable
        })
    }

    /// Counts a new connection of `app` on this node and, with a `max_connections`, in the
    /// cluster.
    pub async fn admit_connection(&self, app: &App) -> Admission {
        let local = self.app(app);
        if !local.try_add_connection() {
            return Admission::Full;
        }
        let alone = Admission::Admitted {
            counted_in_cluster: false,
        };
        let Some(max) = app.max_connections else {
            return alone;
        };
        if !self.reachable(&self.connection_counts.key(&app.id)) {
            return alone;
        }
        match bounded(self.connection_counts.admit(&app.id, max)).await {
            Ok(true) => Admission::Admitted {
                counted_in_cluster: true,
            },
            Ok(false) => {
                local.remove_connection();
                Admission::Full
            }
            Err(error) => {
                tracing::warn!(%error, app = %app.id, "cannot count a connection in Redis; max_connections is checked against this node's connections alone meanwhile");
                alone
            }
        }
    }

    /// Whether Redis can be asked of `key` now: the node is online and the key's partition is
    /// not down (its shard out: asking would wait for a timeout).
    fn reachable(&self, key: &str) -> bool {
        let availability = &self.link.availability;
        let partition = partition_of_key(&self.link.fanout.prefix, key);
        availability.is_online() && partition.is_none_or(|p| !availability.is_down(p))
    }

    /// Releases a connection counted by [`RedisCluster::admit_connection`]; one that Redis
    /// counted is uncounted there too (one it did not count must not lower the count).
    pub fn release_connection(&self, app: &App, counted_in_cluster: bool) {
        self.app(app).remove_connection();
        if counted_in_cluster {
            self.connection_counts.release(&app.id);
        }
    }
}
