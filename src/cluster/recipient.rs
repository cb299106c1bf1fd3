//! What a stage needs of a subscriber and of the webhook side, so its rules run in
//! unit tests with recording stand-ins instead of sockets and HTTP endpoints.

use crate::config::EventKind;
use crate::outbound::{Outbound, WireFrame};
use crate::protocol::codes::SocketError;
use crate::webhooks::WebhookEvent;

/// A subscriber's handle: a socket's outbound side in the server.
pub trait Recipient: Clone + Send + Sync + 'static {
    /// Sends a frame without waiting; false when the subscriber refuses it (closing).
    fn push(&self, frame: &WireFrame) -> bool;

    /// Asks the subscriber's connection to close with `error`.
    fn close(&self, error: SocketError);
}

impl Recipient for Outbound {
    fn push(&self, frame: &WireFrame) -> bool {
        crate::outbound::OutboundQueue::push(self, frame)
    }

    fn close(&self, error: SocketError) {
        crate::outbound::OutboundQueue::close(self, error);
    }
}

/// Where an app's webhook events go, in the order they are submitted.
pub trait WebhookOut: Send + Sync {
    /// Whether any endpoint wants events of this kind (building one costs work: ask first).
    fn wants(&self, kind: EventKind) -> bool;

    /// Takes one event without waiting.
    fn submit(&self, event: WebhookEvent);
}
