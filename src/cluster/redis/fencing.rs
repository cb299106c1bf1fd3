//! What a node does when it finds itself fenced (it was taken for dead, say after a long pause,
//! and a survivor reaped its sockets): it joins again as a new incarnation, changes the shared
//! state on that one's behalf from then on, and closes the sockets it had with 4200 so their
//! clients reconnect and subscribe again, which adds them back under the new incarnation.

use std::sync::Arc;
use std::time::Duration;

use super::app::RedisApp;
use super::channel_state::ChannelState;
use super::link::NodeLink;
use super::node::{JoinError, NodeMembership};
use crate::config::RedisConfig;

/// How a fenced node joins again.
pub struct Rejoin {
    pub redis: RedisConfig,
    /// The apps whose events go into the webhook streams.
    pub hooked: Vec<String>,
    /// The apps that announce subscription counts.
    pub counted: Vec<String>,
    /// At most one count announcement per channel per this long.
    pub count_window: Duration,
    pub grace_ms: u64,
}

impl Rejoin {
    /// The channel scripts of an incarnation, for the cluster's `epoch`.
    pub fn state(&self, incarnation: &str, epoch: &str) -> ChannelState {
        ChannelState::new(&self.redis.prefix, incarnation, self.grace_ms)
            .with_webhook_apps(self.hooked.iter().map(String::as_str))
            .with_counted_apps(
                self.counted
                    .iter()
                    .map(|app| (app.as_str(), self.count_window)),
            )
            .with_epoch(epoch)
            .with_sharded_pubsub(
                self.redis
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.sharded_pubsub),
            )
    }
}

/// Joins again as a new incarnation, changes the shared state on its behalf from now on, and
/// closes the node's subscribed sockets with 4200; returns the new membership and its state.
pub async fn rejoin(
    link: &NodeLink,
    rejoin: &Rejoin,
    apps: &[Arc<RedisApp>],
) -> Result<(Arc<NodeMembership>, Arc<ChannelState>), JoinError> {
    let joined = Arc::new(NodeMembership::join(&mut link.con(), &rejoin.redis).await?);
    let state = Arc::new(rejoin.state(joined.incarnation(), link.state().epoch()));
    link.replace_state(state.clone());
    let closed: usize = apps.iter().map(|app| app.close_subscribed()).sum();
    tracing::warn!(
        node = joined.incarnation(),
        sockets = closed,
        "rejoined the cluster after being fenced; subscribed sockets were closed with 4200 to reconnect"
    );
    Ok((joined, state))
}
