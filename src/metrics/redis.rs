//! A cluster node's connections to Redis: reconnects per connection, and how long ago its
//! pub/sub connection last proved alive (a message, or an answered PING).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabel {
    connection: String,
}

/// The series of a node's Redis connections.
#[derive(Default)]
pub struct RedisLinkMetrics {
    reconnects: Family<ConnectionLabel, Counter>,
    last_message_age: Family<ConnectionLabel, Gauge>,
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
}
