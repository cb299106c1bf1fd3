//! What a node does when it finds itself fenced (it was taken for dead, say after a long pause,
//! and a survivor reaped its sockets): it joins again as a new incarnation, changes the shared
//! state on that one's behalf from then on, and closes the sockets it had with 4200 so their
//! clients reconnect and subscribe again, which adds them back under the new incarnation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::app::RedisApp;
use super::channel_state::ChannelState;
use super::link::NodeLink;
use super::liveness::{Liveness, NodeHealth};
use super::node::NodeMembership;
use crate::config::RedisConfig;

/// How a fenced node joins again.
pub struct Rejoin {
    pub redis: RedisConfig,
    /// The apps whose events go into the webhook streams.
    pub hooked: Vec<String>,
    pub grace_ms: u64,
}

impl Rejoin {
    /// The channel scripts of an incarnation.
    pub fn state(&self, incarnation: &str) -> ChannelState {
        ChannelState::new(&self.redis.prefix, incarnation, self.grace_ms)
            .with_webhook_apps(self.hooked.iter().map(String::as_str))
    }
}

/// Watches the node's duties; on a fence, rejoins and starts them again, until `close`.
pub async fn supervise(
    link: Arc<NodeLink>,
    apps: Vec<Arc<RedisApp>>,
    membership: Arc<Mutex<Arc<NodeMembership>>>,
    mut duties: Liveness,
    rejoin: Rejoin,
    close: CancellationToken,
) {
    loop {
        let mut health = duties.health.clone();
        tokio::select! {
            _ = close.cancelled() => break,
            fenced = health.wait_for(|h| *h == NodeHealth::Fenced) => {
                if fenced.is_err() {
                    break;
                }
            }
        }
        // Fencing ends the duties of the old incarnation.
        let _ = duties.task.await;
        let Some(joined) = join_again(&link, &rejoin, &close).await else {
            return;
        };
        let state = Arc::new(rejoin.state(joined.incarnation()));
        link.replace_state(state.clone());
        *membership.lock().unwrap_or_else(|e| e.into_inner()) = joined.clone();
        let closed: usize = apps.iter().map(|app| app.close_subscribed()).sum();
        tracing::warn!(
            node = joined.incarnation(),
            sockets = closed,
            "rejoined the cluster after being fenced; subscribed sockets were closed with 4200 to reconnect"
        );
        let interval = rejoin.redis.heartbeat_interval;
        duties = Liveness::start(link.con(), joined, state, interval, close.clone());
    }
    let _ = duties.task.await;
}

async fn join_again(
    link: &NodeLink,
    rejoin: &Rejoin,
    close: &CancellationToken,
) -> Option<Arc<NodeMembership>> {
    loop {
        match NodeMembership::join(&mut link.con(), &rejoin.redis).await {
            Ok(joined) => return Some(Arc::new(joined)),
            Err(error) => {
                tracing::error!(%error, "a fenced node cannot join the cluster again; retrying")
            }
        }
        tokio::select! {
            _ = close.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
