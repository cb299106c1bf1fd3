//! Fixed-window counters kept in this process: the rate limits of one node alone (or of a
//! cluster node that cannot reach Redis), and the per-app quotas likewise. A window starts at a
//! key's first hit and lasts `window`; a hit past `max` in it is refused. Memory is bounded: keys
//! whose window ended are dropped when the map is full, and past `capacity` live keys new ones
//! share one count.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a hit found: allowed or not, and the figures for the `X-RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowDecision {
    /// Whether the hit fits the limit.
    pub allowed: bool,
    /// The limit (hits per window).
    pub limit: u32,
    /// Hits left in this window.
    pub remaining: u32,
    /// Until the window ends.
    pub resets_in: Duration,
}

impl WindowDecision {
    /// The decision of a window that counted `count` hits (this one included) and ends in
    /// `resets_in`, against `limit`.
    pub fn of(count: u64, limit: u32, resets_in: Duration) -> WindowDecision {
        WindowDecision {
            allowed: count <= u64::from(limit),
            limit,
            remaining: u64::from(limit).saturating_sub(count) as u32,
            resets_in,
        }
    }
}

/// Counts per key in fixed windows.
pub struct WindowCounts<K> {
    window: Duration,
    capacity: usize,
    table: Mutex<Table<K>>,
}

struct Table<K> {
    counts: HashMap<Option<K>, (Instant, u64)>,
    /// When ended windows were last dropped: a full table is swept at most a few times a
    /// window, never on every hit (a sweep scans every key under the lock).
    swept: Option<Instant>,
}

impl<K: Hash + Eq + Clone> WindowCounts<K> {
    /// Windows of `window`, at most `capacity` keys counted apart.
    pub fn new(window: Duration, capacity: usize) -> WindowCounts<K> {
        WindowCounts {
            window,
            capacity: capacity.max(1),
            table: Mutex::new(Table {
                counts: HashMap::new(),
                swept: None,
            }),
        }
    }

    /// Adds `amount` hits of `key` at `now`; the decision against `limit`.
    pub fn hit(&self, key: &K, amount: u32, limit: u32, now: Instant) -> WindowDecision {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Table { counts, swept } = &mut *table;
        let mut slot = Some(key.clone());
        if !counts.contains_key(&slot) && counts.len() >= self.capacity {
            let window = self.window;
            if swept.is_none_or(|at| now.duration_since(at) >= window / 4) {
                counts.retain(|_, (started, _)| now.duration_since(*started) < window);
                *swept = Some(now);
            }
            if counts.len() >= self.capacity {
                // Everyone new shares one count: memory stays bounded, nobody goes unlimited.
                slot = None;
            }
        }
        let (started, count) = counts.entry(slot).or_insert((now, 0));
        if now.duration_since(*started) >= self.window {
            *started = now;
            *count = 0;
        }
        *count += u64::from(amount);
        let resets_in = (*started + self.window).saturating_duration_since(now);
        WindowDecision::of(*count, limit, resets_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_limit_then_refuses_until_it_ends() {
        let counts = WindowCounts::new(Duration::from_secs(60), 100);
        let start = Instant::now();
        for n in 1..=3u32 {
            let decision = counts.hit(&"a", 1, 3, start);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, 3 - n);
        }
        let refused = counts.hit(&"a", 1, 3, start + Duration::from_secs(10));
        assert!(!refused.allowed);
        assert_eq!(refused.resets_in, Duration::from_secs(50));
        assert!(counts.hit(&"b", 1, 3, start).allowed, "another key");
        assert!(
            counts
                .hit(&"a", 1, 3, start + Duration::from_secs(60))
                .allowed,
            "a new window"
        );
        assert!(
            !counts.hit(&"c", 5, 3, start).allowed,
            "a batch counts each item"
        );
    }

    #[test]
    fn keys_past_the_capacity_share_one_count() {
        let counts = WindowCounts::new(Duration::from_secs(60), 2);
        let now = Instant::now();
        counts.hit(&1, 1, 2, now);
        counts.hit(&2, 1, 2, now);
        assert!(counts.hit(&3, 1, 2, now).allowed);
        assert!(counts.hit(&4, 1, 2, now).allowed);
        assert!(
            !counts.hit(&5, 1, 2, now).allowed,
            "3, 4 and 5 share a count"
        );
        assert!(
            counts.hit(&1, 1, 2, now).allowed,
            "a key counted apart keeps its own"
        );
    }
}
