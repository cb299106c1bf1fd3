//! One task per WebSocket connection: the read loop, the outbound side that writes frames
//! straight to the socket (queueing only what the socket cannot take), liveness pings and the
//! per-event handlers.

mod connection;
mod handlers;
mod liveness;
mod outbound;
mod session;
mod subscription_counts;
mod wire;

pub(crate) use connection::websocket_config;
pub use connection::{serve, Handshake};
pub use outbound::{Outbound, OutboundQueue};
pub use session::ConnectionLimit;
pub use subscription_counts::CountThrottle;
pub use wire::WireFrame;
