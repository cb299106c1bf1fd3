//! The grace period: `channel_vacated` and `member_removed` are held, and a re-occupy or re-join
//! within the period cancels both the held event and the new `channel_occupied` / `member_added`.
//!
//! Pure state: the app's pipeline task feeds events in and asks what is due.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::event::WebhookEvent;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum HeldKey {
    Channel(Arc<str>),
    Member(Arc<str>, Arc<str>),
}

/// Held events of one app.
pub struct GraceStage {
    period: Duration,
    /// The generation of the live hold of each key; a re-hold gets a new generation.
    held: HashMap<HeldKey, u64>,
    /// Holds in deadline order (the period is constant, so arrival order is deadline order).
    queue: VecDeque<(Instant, HeldKey, u64, WebhookEvent)>,
    next_generation: u64,
}

impl GraceStage {
    /// A stage holding events for `period` (zero releases everything at once).
    pub fn new(period: Duration) -> GraceStage {
        GraceStage {
            period,
            held: HashMap::new(),
            queue: VecDeque::new(),
            next_generation: 0,
        }
    }

    /// Takes one event; appends to `out` whatever may be sent now.
    pub fn accept(&mut self, event: WebhookEvent, now: Instant, out: &mut Vec<WebhookEvent>) {
        if self.period.is_zero() {
            return out.push(event);
        }
        match &event {
            WebhookEvent::ChannelVacated { channel } => {
                self.hold(HeldKey::Channel(channel.clone()), event, now)
            }
            WebhookEvent::MemberRemoved { channel, user_id } => self.hold(
                HeldKey::Member(channel.clone(), user_id.clone()),
                event,
                now,
            ),
            WebhookEvent::ChannelOccupied { channel } => {
                if self
                    .held
                    .remove(&HeldKey::Channel(channel.clone()))
                    .is_none()
                {
                    out.push(event);
                }
            }
            WebhookEvent::MemberAdded { channel, user_id } => {
                if self
                    .held
                    .remove(&HeldKey::Member(channel.clone(), user_id.clone()))
                    .is_none()
                {
                    out.push(event);
                }
            }
            _ => out.push(event),
        }
    }

    fn hold(&mut self, key: HeldKey, event: WebhookEvent, now: Instant) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.held.insert(key.clone(), generation);
        self.queue
            .push_back((now + self.period, key, generation, event));
    }

    /// Appends every hold whose period ended by `now` and was not cancelled.
    pub fn release_due(&mut self, now: Instant, out: &mut Vec<WebhookEvent>) {
        while self
            .queue
            .front()
            .is_some_and(|(deadline, ..)| *deadline <= now)
        {
            if let Some((_, key, generation, event)) = self.queue.pop_front() {
                self.release(key, generation, event, out);
            }
        }
    }

    /// Appends every live hold at once (shutdown).
    pub fn release_all(&mut self, out: &mut Vec<WebhookEvent>) {
        while let Some((_, key, generation, event)) = self.queue.pop_front() {
            self.release(key, generation, event, out);
        }
    }

    fn release(
        &mut self,
        key: HeldKey,
        generation: u64,
        event: WebhookEvent,
        out: &mut Vec<WebhookEvent>,
    ) {
        if self.held.get(&key) == Some(&generation) {
            self.held.remove(&key);
            out.push(event);
        }
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
        let mut out = Vec::new();
        g.accept(occupied("a"), t0, &mut out);
        g.accept(vacated("a"), t0, &mut out);
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
        let mut out = Vec::new();
        g.accept(vacated("a"), t0, &mut out);
        g.accept(removed("presence-a", "u"), t0, &mut out);
        g.accept(occupied("a"), t0 + Duration::from_secs(1), &mut out);
        g.accept(
            added("presence-a", "u"),
            t0 + Duration::from_secs(1),
            &mut out,
        );
        g.release_due(t0 + GRACE * 2, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_second_vacate_after_a_cancel_is_held_afresh() {
        let t0 = Instant::now();
        let mut g = GraceStage::new(GRACE);
        let mut out = Vec::new();
        g.accept(vacated("a"), t0, &mut out);
        g.accept(occupied("a"), t0 + Duration::from_secs(1), &mut out);
        g.accept(vacated("a"), t0 + Duration::from_secs(2), &mut out);
        g.release_due(t0 + GRACE, &mut out);
        assert!(out.is_empty(), "the first hold was cancelled");
        g.release_due(t0 + Duration::from_secs(2) + GRACE, &mut out);
        assert_eq!(out, [vacated("a")]);
    }

    #[test]
    fn other_users_are_not_cancelled() {
        let t0 = Instant::now();
        let mut g = GraceStage::new(GRACE);
        let mut out = Vec::new();
        g.accept(removed("presence-a", "u"), t0, &mut out);
        g.accept(added("presence-a", "v"), t0, &mut out);
        g.release_all(&mut out);
        assert_eq!(out, [added("presence-a", "v"), removed("presence-a", "u")]);
    }

    #[test]
    fn zero_period_passes_everything() {
        let mut g = GraceStage::new(Duration::ZERO);
        let mut out = Vec::new();
        g.accept(vacated("a"), Instant::now(), &mut out);
        assert_eq!(out, [vacated("a")]);
    }
}
