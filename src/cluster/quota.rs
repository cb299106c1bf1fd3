//! An app's `max_connections`, counted on this node.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Open connections of one app against its limit.
pub struct ConnectionQuota {
    max: usize,
    open: AtomicUsize,
}

impl ConnectionQuota {
    /// A quota of `max` connections (`None`: unlimited).
    pub fn new(max: Option<usize>) -> ConnectionQuota {
        ConnectionQuota {
            max: max.unwrap_or(usize::MAX),
            open: AtomicUsize::new(0),
        }
    }

    /// Counts a new connection; false (nothing counted) when the quota is full.
    pub fn try_add(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Releases a connection counted by [`ConnectionQuota::try_add`].
    pub fn remove(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}
