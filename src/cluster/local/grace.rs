//! The grace period: `channel_vacated` and `member_removed` are held, and a re-occupy or re-join
//! within the period cancels both the held event and the new `channel_occupied` / `member_added`.
//!
//! Pure state: the app's grace task ([`super::webhook_sink`]) feeds events in and asks what is
//! due. Cancelled events are handed back so the queue budget they hold is returned. This is the
//! single-node rule; a cluster keeps the holds where every node sees them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::webhooks::{PairKey, PairRole, WebhookEvent};

/// Held events of one app; `T` is the event with whatever the pipeline carries beside it.
pub struct GraceStage<T> {
    period: Duration,
    /// The generation of the live hold of each key; a re-hold gets a new generation.
    held: HashMap<PairKey, u64>,
    /// The held events by generation; a cancelled one is taken out at once.
    items: HashMap<u64, T>,
    /// Holds in deadline order (the period is constant, so arrival order is deadline order).
    queue: VecDeque<(Instant, PairKey, u64)>,
    next_generation: u64,
}

impl<T: AsRef<WebhookEvent>> GraceStage<T> {
    /// A stage holding events for `period` (zero releases everything at once).
    pub fn new(period: Duration) -> GraceStage<T> {
        GraceStage {
            period,
            held: HashMap::new(),
            items: HashMap::new(),
            queue: VecDeque::new(),
            next_generation: 0,
        }
    }

    /// Takes one event; appends to `out` whatever may be sent now and to `cancelled` the events
    /// a re-occupy or re-join made void (the new opener and the held closer).
    pub fn accept(&mut self, item: T, now: Instant, out: &mut Vec<T>, cancelled: &mut Vec<T>) {
        if self.period.is_zero() {
            return out.push(item);
        }
        match item.as_ref().pair() {
            Some((key, PairRole::Closes)) => self.hold(key, item, now),
            Some((key, PairRole::Opens)) => match self.held.remove(&key) {
                Some(generation) => {
                    // Its deadline entry stays queued and finds nothing when it comes due.
                    cancelled.extend(self.items.remove(&generation));
                    cancelled.push(item);
                }
                None => out.push(item),
            },
            None => out.push(item),
        }
    }

    fn hold(&mut self, key: PairKey, item: T, now: Instant) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.held.insert(key.clone(), generation);
        self.items.insert(generation, item);
        self.queue.push_back((now + self.period, key, generation));
    }

    /// Appends every hold whose period ended by `now`.
    pub fn release_due(&mut self, now: Instant, out: &mut Vec<T>) {
        while self
            .queue
            .front()
            .is_some_and(|(deadline, ..)| *deadline <= now)
        {
            if let Some((_, key, generation)) = self.queue.pop_front() {
                self.release(key, generation, out);
            }
        }
    }

    /// Appends every live hold at once (shutdown).
    pub fn release_all(&mut self, out: &mut Vec<T>) {
        while let Some((_, key, generation)) = self.queue.pop_front() {
            self.release(key, generation, out);
        }
    }

    fn release(&mut self, key: PairKey, generation: u64, out: &mut Vec<T>) {
        if self.held.get(&key) == Some(&generation) {
            self.held.remove(&key);
        }
        out.extend(self.items.remove(&generation));
    }

    /// When the next hold ends, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.front().map(|(deadline, ..)| *deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3);

    fn occupied(c: &str) -> WebhookEvent {
        WebhookEvent::ChannelOccupied { channel: c.into() }
    }
    fn vacated(c: &str) -> WebhookEvent {
        WebhookEvent::ChannelVacated { channel: c.into() }
    }
    fn added(c: &str, u: &str) -> WebhookEvent {
        WebhookEvent::MemberAdded {
            channel: c.into(),
            user_id: u.into(),
        }
    }
    fn removed(c: &str, u: &str) -> WebhookEvent {
        WebhookEvent::MemberRemoved {
            channel: c.into(),
            user_id: u.into(),
        }
    }

    #[test]
    fn vacate_is_held_then_released() {
        let t0 = Instant::now();
        let mut g = GraceStage::new(GRACE);
        let (mut out, mut void) = (Vec::new(), Vec::new());
        g.accept(occupied("a"), t0, &mut out, &mut void);
        g.accept(vacated("a"), t0, &mut out, &mut void);
        assert_eq!(out, [occupied("a")]);
        assert_eq!(g.next_deadline(), Some(t0 + GRACE));
        out.clear();
        g.release_due(t0 + GRACE - Duration::from_millis(1), &mut out);
        assert!(out.is_empty());
        g.release_due(t0 + GRACE, &mut out);
        assert_eq!(out, [vacated("a")]);
    }

    #[test]
    fn reoccupy_within_the_period_cancels_both() {
        let t0 = Instant::now();
        let mut g = GraceStage::new(GRACE);
        let (mut out, mut void) = (Vec::new(), Vec::new());
        g.accept(vacated("a"), t0, &mut out, &mut void);
        g.accept(removed("presence-a", "u"), t0, &mut out, &mut void);
        g.accept(
            occupied("a"),
            t0 + Duration::from_secs(1),
            &mut out,
            &mut void,
        );
        g.accept(
            added("presence-a", "u"),
            t0 + Duration::from_secs(1),
            &mut out,
            &mut void,
        );
        g.release_due(t0 + GRACE * 2, &mut out);
        assert!(out.is_empty());
        assert_eq!(
            void.len(),
            4,
            "both halves of both pairs come back: {void:?}"
        );
    }

    #[test]
    fn a_second_vacate_after_a_cancel_is_held_afresh() {
        let t0 = Instant::now();
        let mut g = GraceStage::new(GRACE);
        let (mut out, mut void) = (Vec::new(), Vec::new());
        g.accept(vacated("a"), t0, &mut out, &mut void);
        g.accept(
            occupied("a"),
            t0 + Duration::from_secs(1),
            &mut out,
            &mut void,
        );
        g.accept(
            vacated("a"),
            t0 + Duration::from_secs(2),
            &mut out,
            &mut void,
        );
        g.release_due(t0 + GRACE, &mut out);
        assert!(out.is_empty(), "the first hold was cancelled");
        g.release_due(t0 + Duration::from_secs(2) + GRACE, &mut out);
        assert_eq!(out, [vacated("a")]);
    }

    #[test]
    fn other_users_are_not_cancelled() {
        let t0 = Instant::now();
        let mut g = GraceStage::new(GRACE);
        let (mut out, mut void) = (Vec::new(), Vec::new());
        g.accept(removed("presence-a", "u"), t0, &mut out, &mut void);
        g.accept(added("presence-a", "v"), t0, &mut out, &mut void);
        g.release_all(&mut out);
        assert_eq!(out, [added("presence-a", "v"), removed("presence-a", "u")]);
    }

    #[test]
    fn zero_period_passes_everything() {
        let mut g = GraceStage::new(Duration::ZERO);
        let (mut out, mut void) = (Vec::new(), Vec::new());
        g.accept(vacated("a"), Instant::now(), &mut out, &mut void);
        assert_eq!(out, [vacated("a")]);
    }
}
