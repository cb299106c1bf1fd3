//! The single-node adapter: broadcasts stay on this node.

use axum::extract::ws::Utf8Bytes;

use crate::apps::App;
use crate::metrics::Metrics;
use crate::protocol::SocketId;

/// The adapter of a server that runs alone.
#[derive(Default)]
pub struct LocalAdapter;

impl LocalAdapter {
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
