//! One task per WebSocket connection: the read loop, the writer draining a bounded outbound
//! queue, liveness pings and the per-event handlers.

mod connection;
mod handlers;
mod liveness;
mod outbound;
mod session;

pub use connection::{serve, Handshake};
pub use outbound::{Drained, Outbound, OutboundQueue};
