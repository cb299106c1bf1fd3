//! One task per WebSocket connection: the read loop, liveness pings and the per-event handlers.
//! Frames go out through the connection's [`crate::outbound`] side; every channel operation
//! goes through the cluster stage.

mod connection;
mod decision;
mod handlers;
mod inflate;
mod journal;
mod liveness;
mod session;

pub(crate) use connection::websocket_config;
pub use connection::{serve, Handshake};
pub use decision::ConnectionInfo;
