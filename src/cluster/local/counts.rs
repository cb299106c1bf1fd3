//! Throttled `pusher_internal:subscription_count` (and its webhook): at most one per channel per
//! `channel_limits.subscription_count_interval_ms`, always with the latest count.
//!
//! A change after a quiet window is announced at once; changes within the window are coalesced
//! into one announcement at its end, which reads the count afresh. Without this, one socket
//! subscribing and unsubscribing in a loop makes the server send a frame to every subscriber
//! per change.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

struct Slot {
    last_sent: Instant,
    pending: bool,
}

/// When a changed count is to be announced.
#[derive(Debug, PartialEq, Eq)]
pub enum Announce {
    /// Now, by the caller, with the count it holds.
    Now,
    /// At this instant, by a task the caller starts, with the count it reads then.
    Later(Instant),
    /// An announcement is already due; it will carry this change.
    Pending,
}

/// The per-channel announcement windows of one app.
pub struct CountThrottle {
    window: Duration,
    channels: DashMap<Arc<str>, Slot>,
}

impl CountThrottle {
    /// At most one announcement per channel per `window` (zero: every change at once).
    pub fn new(window: Duration) -> CountThrottle {
        CountThrottle {
            window,
            channels: DashMap::new(),
        }
    }

    /// The count of `channel` changed to `count` at `now`.
    pub fn changed(&self, channel: &str, count: usize, now: Instant) -> Announce {
        if self.window.is_zero() {
            return Announce::Now;
        }
        let Some(mut slot) = self.channels.get_mut(channel) else {
            // An empty channel needs no window: nobody is left to flood.
            if count > 0 {
                let slot = Slot {
                    last_sent: now,
                    pending: false,
                };
                self.channels.insert(Arc::from(channel), slot);
            }
            return Announce::Now;
        };
        if slot.pending {
            return Announce::Pending;
        }
        if now >= slot.last_sent + self.window {
            slot.last_sent = now;
            if count == 0 {
                drop(slot);
                self.forget_if_idle(channel);
            }
            return Announce::Now;
        }
        slot.pending = true;
        Announce::Later(slot.last_sent + self.window)
    }

    /// A deferred announcement is being made at `now`: later changes start a new window.
    pub fn announcing(&self, channel: &str, now: Instant) {
        if let Some(mut slot) = self.channels.get_mut(channel) {
            slot.pending = false;
            slot.last_sent = now;
        }
    }

    /// Forgets a channel that emptied with nothing due.
    pub fn forget_if_idle(&self, channel: &str) {
        self.channels.remove_if(channel, |_, slot| !slot.pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_within_the_window_are_coalesced() {
        let t0 = Instant::now();
        let window = Duration::from_millis(500);
        let throttle = CountThrottle::new(window);
        assert_eq!(throttle.changed("c", 1, t0), Announce::Now);
        let soon = t0 + Duration::from_millis(10);
        assert_eq!(throttle.changed("c", 2, soon), Announce::Later(t0 + window));
        assert_eq!(throttle.changed("c", 1, soon), Announce::Pending);
        throttle.announcing("c", t0 + window);
        let after = t0 + window + Duration::from_millis(1);
        assert_eq!(
            throttle.changed("c", 2, after),
            Announce::Later(t0 + window * 2)
        );
        assert_eq!(
            throttle.changed("c", 1, t0 + window * 3),
            Announce::Pending,
            "still due"
        );
    }

    #[test]
    fn a_quiet_channel_announces_at_once_and_zero_disables() {
        let t0 = Instant::now();
        let throttle = CountThrottle::new(Duration::from_millis(100));
        assert_eq!(throttle.changed("c", 1, t0), Announce::Now);
        assert_eq!(
            throttle.changed("c", 2, t0 + Duration::from_millis(200)),
            Announce::Now
        );
        let off = CountThrottle::new(Duration::ZERO);
        assert_eq!(off.changed("c", 1, t0), Announce::Now);
        assert_eq!(off.changed("c", 2, t0), Announce::Now);
    }
}
