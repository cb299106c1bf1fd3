//! The adapter between nodes: it delivers broadcasts to every node and answers channel queries
//! with cluster-wide counts.
//!
//! `local` (one node) is the only adapter so far; `redis` will join it behind the same enum.
//! On one node, the engine's transitions are already the cluster-wide ones and are emitted
//! under the channel lock (see `transport::session`); the Redis adapter will decide them with
//! atomic scripts instead. Queries are `async` because the Redis adapter will wait on Redis.

mod local;

use std::sync::Arc;

pub use local::LocalAdapter;

use crate::apps::App;
use crate::engine::ChannelSummary;
use crate::metrics::Metrics;
use crate::protocol::SocketId;
use crate::transport::WireFrame;

/// The cluster adapter in use.
pub enum ClusterAdapter {
    /// A single node: local state is the whole truth.
    Local(LocalAdapter),
}

impl ClusterAdapter {
    /// Delivers a serialized frame to every subscriber of `channel` except `except`.
    ///
    /// Never waits: frames are queued on each subscriber's bounded outbound queue.
    pub fn broadcast(
        &self,
        app: &App,
        channel: &str,
        frame: WireFrame,
        except: Option<SocketId>,
        metrics: &Metrics,
    ) -> usize {
        match self {
            ClusterAdapter::Local(local) => local.broadcast(app, channel, frame, except, metrics),
        }
    }

    /// The channel's cluster-wide counts; `None` when unoccupied.
    pub async fn channel(&self, app: &App, channel: &str) -> Option<ChannelSummary> {
        match self {
            ClusterAdapter::Local(_) => app.channels.summary(channel),
        }
    }

    /// Every occupied channel whose name starts with `prefix`.
    pub async fn channels(&self, app: &App, prefix: &str) -> Vec<ChannelSummary> {
        match self {
            ClusterAdapter::Local(_) => app.channels.summaries(prefix),
        }
    }

    /// The user ids present in a presence channel.
    pub async fn users(&self, app: &App, channel: &str) -> Vec<Arc<str>> {
        match self {
            ClusterAdapter::Local(_) => app.channels.user_ids(channel),
        }
    }
}
