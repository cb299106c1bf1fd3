//! The single-node adapter: transitions pass through and broadcasts stay on this node.

use axum::extract::ws::Utf8Bytes;

use crate::apps::App;
use crate::engine::Transition;
use crate::metrics::Metrics;
use crate::protocol::SocketId;

/// The adapter of a server that runs alone.
#[derive(Default)]
pub struct LocalAdapter;

impl LocalAdapter {
    /// On one node, local transitions are the cluster-wide ones.
    pub fn resolve(&self, _app: &App, transitions: Vec<Transition>) -> Vec<Transition> {
        transitions
    }

    /// Queues the shared frame on every local subscriber; one counter update per broadcast.
    pub fn broadcast(
        &self,
        app: &App,
        channel: &str,
        frame: Utf8Bytes,
        except: Option<SocketId>,
        metrics: &Metrics,
    ) -> usize {
        let delivered = app
            .channels
            .for_each_subscriber(channel, except, |outbound| {
                outbound.push(frame.clone());
            });
        metrics.messages_out(delivered);
        delivered
    }
}
