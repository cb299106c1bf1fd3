//! The cluster stage on Redis: nodes that share one Redis behave as one server.
//!
//! [`RedisCluster`] (in `stage`) is the stage of a node: its apps ([`app`]) keep only the node's
//! own sockets, their lines' workers ([`worker`]) run subscriptions and leaves through the
//! cluster-wide channel state ([`channel_state`]: scripts that return the transition, append its
//! webhook event to the channel's partition stream and publish its member notice), and their
//! lines ([`line`]) deliver what comes back from Redis ([`fanout`]). The node registry
//! ([`node`]) and the node's duties ([`liveness`]) find dead nodes and fence this one; the
//! webhook streams ([`webhook_stream`]) are delivered by whichever node holds a partition's
//! lease ([`webhook_delivery`], [`webhook_rounds`]). Each node's figures for the console are
//! shared in Redis too ([`node_figures`]), and so are the rate limits' and quotas' windows
//! ([`window_counts`]). `docs/cluster.md` has the design.

mod admission;
pub mod app;
pub mod arrival_order;
pub mod availability;
mod broadcast_wire;
mod channel_reads;
mod channel_scripts;
pub mod channel_state;
pub mod connection;
pub mod connection_counts;
pub mod fanout;
mod fencing;
pub mod line;
pub mod link;
pub mod liveness;
pub mod node;
pub mod node_figures;
mod primaries_report;
mod pubsub_shards;
mod recovery;
mod sentinel;
mod shard_recovery;
mod stage;
pub mod subscriber;
pub mod webhook_delivery;
pub mod webhook_rounds;
pub mod webhook_stream;
pub mod window_counts;
mod worker;

pub use connection::RedisConnection;
pub use node::{Beat, JoinError, NodeMembership};
pub use stage::RedisCluster;

/// A command connection to the Redis at `url` (see [`RedisConnection`]).
pub async fn connect(url: &str) -> Result<RedisConnection, ::redis::RedisError> {
    RedisConnection::open(url).await
}
