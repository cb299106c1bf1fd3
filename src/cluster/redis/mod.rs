//! The cluster stage on Redis (being built): nodes that share one Redis behave as one server.
//!
//! What is here so far: the node registry (membership, heartbeats, dead-node detection and
//! fencing, [`node`]) and the cluster-wide channel state ([`channel_state`]: scripts that return
//! the transition and append its webhook event to the channel's partition stream, the grace
//! period held in Redis, the reaping of a dead incarnation's sockets), and the node's duties
//! each heartbeat ([`liveness`]: beat, notice fencing, reap the dead, sweep due holds), and
//! cross-node fan-out on pub/sub ([`fanout`]), and the leases, cursors and batch records of the
//! webhook streams ([`webhook_stream`]) and their delivery ([`webhook_delivery`]). The tasks
//! that run them and the wiring into
//! [`crate::cluster::Cluster`] come next; until they do, a config with `adapter.driver: "redis"`
//! is refused at start-up rather than run as independent nodes.

mod channel_scripts;
pub mod channel_state;
pub mod fanout;
pub mod liveness;
pub mod node;
pub mod webhook_delivery;
pub mod webhook_stream;

pub use node::{Beat, JoinError, NodeMembership};

/// A connection manager for the configured Redis: one multiplexed connection, reconnected in the
/// background with back-off; every command is bounded by a response timeout.
pub async fn connect(url: &str) -> Result<::redis::aio::ConnectionManager, ::redis::RedisError> {
    let client = ::redis::Client::open(url)?;
    let config = ::redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(Some(std::time::Duration::from_secs(5)))
        .set_max_delay(std::time::Duration::from_secs(2));
    client.get_connection_manager_with_config(config).await
}
