//! The write side of a WebSocket connection: frames serialized and framed once ([`WireFrame`]),
//! written straight to the socket by whoever publishes them, with a byte-bounded queue for what
//! the socket cannot take at once ([`OutboundQueue`]).
//!
//! It sits below both the connection task (`transport`) and the fan-out (`cluster`), so neither
//! has to know the other.

mod link;
mod queue;
mod wire;

pub use link::Link;
pub use queue::{Flushed, Outbound, OutboundQueue};
pub use wire::WireFrame;
