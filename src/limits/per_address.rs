//! Per-client-address admission: a share of a cap that many clients draw on (decision hook
//! calls in flight), and a throttle on failures (console token guesses).
//!
//! Both count an IPv6 client by its /64, the block one subscriber gets: counting each of its
//! 2^64 addresses apart would let one client be everyone. Both are bounded in memory: the
//! share holds an entry only while an address has a call in flight, and the throttle counts
//! addresses past its capacity together, as one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The key an address is counted under: IPv4 as it is, IPv6 by its /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Slots in use per address, each address held to `share` of them.
pub struct AddressShare {
    share: u32,
    in_use: Mutex<HashMap<IpAddr, u32>>,
}

/// One slot of an [`AddressShare`], given back on drop.
pub struct AddressSlot {
    owner: Arc<AddressShare>,
    key: IpAddr,
}

impl AddressShare {
    /// Each address may hold `share` slots at once (at least one).
    pub fn new(share: usize) -> Arc<AddressShare> {
        Arc::new(AddressShare {
            share: u32::try_from(share.max(1)).unwrap_or(u32::MAX),
            in_use: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for `ip`, or none when it already holds its share.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let key = address_key(ip);
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        let held = in_use.entry(key).or_insert(0);
        if *held >= self.share {
            return None;
        }
        *held += 1;
        Some(AddressSlot {
            owner: self.clone(),
            key,
        })
    }

    /// The slots `ip` holds now.
    pub fn held_by(&self, ip: IpAddr) -> u32 {
        let in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        in_use.get(&address_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut in_use = self.owner.in_use.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = in_use.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                in_use.remove(&self.key);
            }
        }
    }
}

/// Failures of one address in the current window.
struct Window {
    started: Instant,
    failures: u32,
}

/// What a [`FailureThrottle`] saw since it last asked to be logged.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FailureTally {
    /// Failures recorded.
    pub failures: u64,
    /// Requests refused because their address was over the limit.
    pub refused: u64,
    /// Addresses that used up their allowance.
    pub throttled: u64,
}

/// What recording one failure found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Failed {
    /// What happened since the last report, when one is due (at most once a window).
    pub report: Option<FailureTally>,
    /// This failure used up the address's allowance (it is refused until its window ends), and
    /// it is the first address to since a window ago: worth a line of its own. Later ones are
    /// counted in the next report.
    pub now_throttled: bool,
}

/// Counts failures per address in fixed windows; an address with `max` failures in its
/// window is refused until the window ends.
pub struct FailureThrottle {
    max: u32,
    window: Duration,
    capacity: usize,
    state: Mutex<ThrottleState>,
}

struct ThrottleState {
    by_address: HashMap<IpAddr, Window>,
    tally: FailureTally,
    last_logged: Option<Instant>,
    last_throttled_logged: Option<Instant>,
    /// When ended windows were last dropped.
    swept: Option<Instant>,
}

/// Where addresses past the throttle's capacity are counted, together.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

impl FailureThrottle {
    /// `max` failures per address per `window`; at most `capacity` addresses counted apart.
    pub fn new(max: u32, window: Duration, capacity: usize) -> FailureThrottle {
        FailureThrottle {
            max,
            window,
            capacity: capacity.max(1),
            state: Mutex::new(ThrottleState {
                by_address: HashMap::new(),
                tally: FailureTally::default(),
                last_logged: None,
                last_throttled_logged: None,
                swept: None,
            }),
        }
    }

    /// Counts an attempt of `ip` as a failure up front, so concurrent attempts cannot pass
    /// the limit together: `Err(retry_after)` when the address has used up its failures for
    /// this window; call [`FailureThrottle::forgive`] when the attempt turns out right.
    pub fn attempt(&self, ip: IpAddr, now: Instant) -> Result<Failed, Duration> {
        // One lock for both: two attempts at once cannot both find the last one left.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.check(&mut state, ip, now)?;
        Ok(self.failed(&mut state, ip, now))
    }

    /// Takes back the failure an [`FailureThrottle::attempt`] of `ip` counted.
    pub fn forgive(&self, ip: IpAddr) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = state.key(address_key(ip), self.capacity);
        if let Some(window) = state.by_address.get_mut(&key) {
            window.failures = window.failures.saturating_sub(1);
        }
        state.tally.failures = state.tally.failures.saturating_sub(1);
    }

    /// `Err(retry_after)` when `ip` has used up its failures for this window.
    fn check(&self, state: &mut ThrottleState, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = state.key(address_key(ip), self.capacity);
        let Some(window) = state.by_address.get(&key) else {
            return Ok(());
        };
        let ends = window.started + self.window;
        if window.failures < self.max || now >= ends {
            return Ok(());
        }
        state.tally.refused += 1;
        Err(ends - now)
    }

    /// Records a failure of `ip`: whether it is throttled from now on, and what to log when
    /// the last report is a window old.
    fn failed(&self, state: &mut ThrottleState, ip: IpAddr, now: Instant) -> Failed {
        let window = self.window;
        let sweep_due = (state.swept).is_none_or(|at| now.duration_since(at) >= window / 4);
        if state.by_address.len() >= self.capacity && sweep_due {
            // At most a few times a window: a sweep scans every address under the lock.
            state
                .by_address
                .retain(|_, w| now.duration_since(w.started) < window);
            state.swept = Some(now);
        }
        let key = state.key(address_key(ip), self.capacity);
        let window = state.by_address.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(window.started) >= self.window {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
        let throttled = window.failures == self.max;
        state.tally.failures += 1;
        state.tally.throttled += u64::from(throttled);
        let quiet =
            |last: Option<Instant>| last.is_none_or(|at| now.duration_since(at) >= self.window);
        let now_throttled = throttled && quiet(state.last_throttled_logged);
        if now_throttled {
            state.last_throttled_logged = Some(now);
        }
        let due = quiet(state.last_logged);
        let report = due.then(|| {
            state.last_logged = Some(now);
            std::mem::take(&mut state.tally)
        });
        Failed {
            report,
            now_throttled,
        }
    }
}

impl ThrottleState {
    /// The key `key` is counted under: itself, or the shared overflow entry once full.
    fn key(&self, key: IpAddr, capacity: usize) -> IpAddr {
        if self.by_address.contains_key(&key) || self.by_address.len() < capacity {
            key
        } else {
            OVERFLOW
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_holds_at_most_its_share_and_gives_it_back() {
        let share = AddressShare::new(2);
        let a = [
            share.try_take(ip("10.0.0.1")),
            share.try_take(ip("10.0.0.1")),
        ];
        assert!(a.iter().all(Option::is_some));
        assert!(share.try_take(ip("10.0.0.1")).is_none());
        assert!(share.try_take(ip("10.0.0.2")).is_some(), "another address");
        // One /64 is one client.
        let v6 = share.try_take(ip("2001:db8::1"));
        let v6b = share.try_take(ip("2001:db8::ffff:2"));
        assert!(v6.is_some() && v6b.is_some());
        assert!(share.try_take(ip("2001:db8::3")).is_none());
        drop(a);
        assert_eq!(share.held_by(ip("10.0.0.1")), 0);
        assert!(
            share.in_use.lock().unwrap().len() == 1,
            "only the /64 holds slots"
        );
    }

    #[test]
    fn failures_over_the_limit_are_refused_until_the_window_ends() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60), 100);
        let start = Instant::now();
        let first = throttle.attempt(ip("10.0.0.1"), start).unwrap();
        let tally = FailureTally {
            failures: 1,
            refused: 0,
            throttled: 0,
        };
        assert_eq!(first.report, Some(tally));
        for n in 2..=3 {
            let failed = throttle.attempt(ip("10.0.0.1"), start).unwrap();
            assert_eq!(failed.report, None, "reported once a window");
            assert_eq!(failed.now_throttled, n == 3);
        }
        let later = start + Duration::from_secs(20);
        for _ in 0..3 {
            let failed = throttle.attempt(ip("10.0.0.3"), later).unwrap();
            assert!(!failed.now_throttled, "one throttle line a window");
        }
        let refused = throttle.attempt(ip("10.0.0.1"), later);
        assert_eq!(refused.unwrap_err(), Duration::from_secs(40));
        // Another address goes on, and a right attempt does not count.
        for _ in 0..5 {
            throttle.attempt(ip("10.0.0.2"), later).unwrap();
            throttle.forgive(ip("10.0.0.2"));
        }
        // A new window, and a report of the last one (the forgiven attempts not counted).
        let failed = throttle.attempt(ip("10.0.0.1"), start + Duration::from_secs(60));
        let tally = FailureTally {
            failures: 6,
            refused: 1,
            throttled: 2,
        };
        assert_eq!(failed.unwrap().report, Some(tally));
    }

    #[test]
    fn addresses_past_the_capacity_are_counted_together() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60), 2);
        let now = Instant::now();
        for n in 1..=4 {
            throttle.attempt(ip(&format!("10.0.0.{n}")), now).unwrap();
        }
        let state = throttle.state.lock().unwrap();
        assert!(
            state.by_address.len() <= 3,
            "two addresses and the overflow"
        );
        drop(state);
        assert!(
            throttle.attempt(ip("10.0.0.9"), now).is_err(),
            "the overflow is full"
        );
        assert!(throttle.attempt(ip("10.0.0.1"), now).is_ok());
    }
}
