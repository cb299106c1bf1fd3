//! The Pusher Channels wire protocol: frames, error codes, channel names and signatures.
//!
//! Everything here is a pure function or a plain type; nothing touches a socket.

pub mod channel;
pub mod codes;
pub mod deflate;
pub mod frames;
pub mod incoming;
pub mod jwt;
pub mod signing;
pub mod socket_id;
pub mod user_id;

pub use channel::{ChannelKind, ChannelType};
pub use socket_id::SocketId;
