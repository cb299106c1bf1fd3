//! The single-node adapter: broadcasts stay on this node.

use crate::apps::App;
use crate::metrics::Metrics;
use crate::protocol::SocketId;
use crate::transport::WireFrame;

/// The adapter of a server that runs alone.
#[derive(Default)]
pub struct LocalAdapter;

impl LocalAdapter {
    /// Sends the shared frame to every local subscriber; one counter update per broadcast.
    pub fn broadcast(
        &self,
        app: &App,
        channel: &str,
        frame: WireFrame,
        except: Option<SocketId>,
        metrics: &Metrics,
    ) -> usize {
        let Some(subscribers) = app.channels.subscribers(channel) else {
            return 0;
        };
        let mut delivered = 0;
        for (socket, outbound) in subscribers.iter() {
            // A socket that is closing refuses the frame: it is not counted as delivered.
            if Some(*socket) != except && outbound.push(&frame) {
                delivered += 1;
            }
        }
        metrics.messages_out(delivered * frame.messages());
        delivered
    }
}
