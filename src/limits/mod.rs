//! Process-wide admission limits: open WebSocket connections (`max_connections`) and REST
//! request bytes being read before a handler runs (`http_api.max_buffered_body_mb`); per client
//! address, a share of a cap and a throttle on failures (`per_address`).

mod per_address;
mod windows;

pub use per_address::{
    address_key, AddressShare, AddressSlot, Failed, FailureTally, FailureThrottle,
};
pub use windows::{WindowCounts, WindowDecision};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of request bodies being read at once, across every connection.
#[derive(Clone)]
pub struct BodyBudget {
    used: Arc<AtomicUsize>,
    max: usize,
}

/// Bytes taken from a [`BodyBudget`], returned on drop.
pub struct Reservation {
    used: Arc<AtomicUsize>,
    bytes: usize,
}

impl BodyBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> BodyBudget {
        BodyBudget {
            used: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Takes `bytes`, or nothing when that would go over the budget.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.max {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return None;
        }
        Some(Reservation {
            used: self.used.clone(),
            bytes,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A connection count and its optional bound: the process-wide `max_connections`, and each
/// app's on this node.
pub struct ConnectionLimit {
    open: AtomicUsize,
    max: AtomicUsize,
}

impl ConnectionLimit {
    /// At most `max` connections at once (`None`: unbounded).
    pub fn new(max: Option<usize>) -> ConnectionLimit {
        ConnectionLimit {
            open: AtomicUsize::new(0),
            max: AtomicUsize::new(max.unwrap_or(usize::MAX)),
        }
    }

    /// A new bound (a reload changed it): connections over it stay, new ones wait for room.
    pub fn set_max(&self, max: Option<usize>) {
        self.max.store(max.unwrap_or(usize::MAX), Ordering::Release);
    }

    /// Counts one more connection; false (and nothing counted) at the bound.
    pub fn try_add(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max.load(Ordering::Acquire)).then_some(n + 1)
            })
            .is_ok()
    }

    /// Releases a connection counted by [`ConnectionLimit::try_add`].
    pub fn remove(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// The connections counted now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_return_on_drop() {
        let budget = BodyBudget::new(10);
        let a = budget.try_reserve(6).unwrap();
        assert!(budget.try_reserve(6).is_none());
        drop(a);
        assert!(budget.try_reserve(10).is_some());
    }
}
