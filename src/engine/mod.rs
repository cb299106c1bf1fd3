//! The channel engine: subscriptions, presence membership, occupancy and the cache of last events.
//!
//! No I/O happens here. Every operation returns the [`Transition`]s it caused; the cluster stage
//! fixes their place in the channel's line under the lock and carries them out after it. Subscribers are
//! stored as an opaque handle `S` so the rules are unit-testable without sockets.

mod cache;
mod channels;
mod presence;
mod users;

pub use cache::{CachedEvent, ChannelCache};
pub use channels::{
    ChannelFull, ChannelRegistry, ChannelSummary, ChannelView, Joined, Left, Subscribers,
};
pub use presence::{snapshot_json as presence_snapshot_json, PresenceMember};
pub use users::UserRegistry;

use std::sync::Arc;

use serde_json::value::RawValue;

/// A change in occupancy or presence membership caused by one operation.
#[derive(Clone, Debug)]
pub enum Transition {
    /// The channel's subscription count went 0 → 1.
    Occupied { channel: Arc<str> },
    /// The channel's subscription count went 1 → 0.
    Vacated { channel: Arc<str> },
    /// A user's first socket joined the presence channel.
    MemberAdded {
        channel: Arc<str>,
        user_id: Arc<str>,
        user_info: Option<Arc<RawValue>>,
    },
    /// A user's last socket left the presence channel.
    MemberRemoved {
        channel: Arc<str>,
        user_id: Arc<str>,
    },
}
