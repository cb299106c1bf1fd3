//! A cluster node's connections to Redis: which primaries it uses (one, or a Redis Cluster's
//! shards) and whether it is online on each, reconnects per connection, and how long ago its
//! pub/sub connection last proved alive (a message, or an answered PING).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabel {
    connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabel {
    address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

/// The series of a node's Redis connections.
#[derive(Default)]
pub struct RedisLinkMetrics {
    reconnects: Family<ConnectionLabel, Counter>,
    last_message_age: Family<ConnectionLabel, Gauge>,
    primaries: Family<AddressLabel, Gauge>,
    /// The primaries as last found (`host:port`), for the console and to retire old series.
    current: Mutex<Vec<String>>,
    online: Family<ShardLabel, Gauge>,
    /// Each primary's online state as last reported.
    online_now: Mutex<Vec<(String, bool)>>,
}

impl RedisLinkMetrics {
    /// Registers the series under `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "redis_reconnects",
            "Times a cluster node's connection to Redis (pubsub, sentinel) was opened again after a break.",
            self.reconnects.clone(),
        );
        registry.register(
            "redis_primary",
            "1 for each Redis primary the node uses now (`host:port`): the one server, the one Sentinel names, or each shard's of a Redis Cluster.",
            self.primaries.clone(),
        );
        registry.register(
            "cluster_online",
            "1 while this cluster node uses the shard (`host:port` of its primary; the one server without Redis Cluster): Redis answers and the node's share of the state in that shard is in it.",
            self.online.clone(),
        );
        registry.register(
            "redis_pubsub_last_message_age_seconds",
            "Seconds since the connection last proved alive (a message or an answered PING), as of the node's last check.",
            self.last_message_age.clone(),
        );
    }

    /// `connection` was opened again.
    pub fn reconnected(&self, connection: &str) {
        let label = ConnectionLabel {
            connection: connection.to_owned(),
        };
        self.reconnects.get_or_create(&label).inc();
    }

    /// `connection` last proved alive `seconds` ago.
    pub fn heard(&self, connection: &str, seconds: u64) {
        let label = ConnectionLabel {
            connection: connection.to_owned(),
        };
        self.last_message_age
            .get_or_create(&label)
            .set(seconds as i64);
    }

    /// The node uses these primaries now (addresses without credentials).
    pub fn primaries_now(&self, mut addresses: Vec<String>) {
        addresses.sort();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        for gone in current.iter().filter(|a| !addresses.contains(a)) {
            let label = AddressLabel {
                address: gone.clone(),
            };
            self.primaries.remove(&label);
        }
        for address in &addresses {
            let label = AddressLabel {
                address: address.clone(),
            };
            self.primaries.get_or_create(&label).set(1);
        }
        *current = addresses;
    }

    /// Whether the node uses each shard now, by its primary's address.
    pub fn online_now(&self, mut shards: Vec<(String, bool)>) {
        shards.sort();
        let mut current = self.online_now.lock().unwrap_or_else(|e| e.into_inner());
        for (gone, _) in current
            .iter()
            .filter(|(a, _)| !shards.iter().any(|(s, _)| s == a))
        {
            let label = ShardLabel {
                shard: gone.clone(),
            };
            self.online.remove(&label);
        }
        for (shard, online) in &shards {
            let label = ShardLabel {
                shard: shard.clone(),
            };
            self.online.get_or_create(&label).set(i64::from(*online));
        }
        *current = shards;
    }

    /// The shards the node does not use now (their primary's address), as last reported.
    pub fn shards_out(&self) -> Vec<String> {
        let current = self.online_now.lock().unwrap_or_else(|e| e.into_inner());
        (current.iter())
            .filter(|(_, online)| !online)
            .map(|(shard, _)| shard.clone())
            .collect()
    }

    /// The primaries as last found.
    pub fn primaries(&self) -> Vec<String> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reconnects of `connection` so far.
    pub fn reconnects(&self, connection: &str) -> u64 {
        let label = ConnectionLabel {
            connection: connection.to_owned(),
        };
        self.reconnects.get_or_create(&label).get()
    }

    /// Seconds since `connection` last proved alive, as of the last check.
    pub fn age(&self, connection: &str) -> i64 {
        let label = ConnectionLabel {
            connection: connection.to_owned(),
        };
        self.last_message_age.get_or_create(&label).get()
    }
}
