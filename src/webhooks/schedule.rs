//! One endpoint's queue: which events may go into the next batch, so that several batches can
//! be in flight while every channel's events still reach the receiver in order.
//!
//! Ordering is kept per channel (which covers every presence user of it): once an event of a
//! channel is in a batch, later events of that channel wait until the batch is delivered or
//! given up on. A batch that is being retried holds back only its own channels. A new batch takes
//! the channels whose waiting events are oldest, each with as many of its events as fit, and
//! lists the events in the order they were released.
//!
//! Pure state, no I/O: the endpoint task feeds events in, asks for batches and reports outcomes.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::event::WebhookEvent;

struct Waiting {
    seq: u64,
    since: Instant,
    bytes: usize,
    event: WebhookEvent,
}

#[derive(Default)]
struct ChannelQueue {
    events: VecDeque<Waiting>,
    /// A batch with events of this channel is outstanding.
    busy: bool,
}

struct Outstanding {
    channels: Vec<Arc<str>>,
    events: usize,
    bytes: usize,
    oldest_seq: u64,
    oldest_since: Instant,
}

/// A batch handed out for delivery.
#[derive(Debug)]
pub struct Batch {
    /// Identifies the batch when its outcome is reported.
    pub id: u64,
    /// Its events, in release order.
    pub events: Vec<WebhookEvent>,
    /// When each event entered the queue.
    pub queued_at: Vec<Instant>,
}

/// The events of one endpoint that are waiting or outstanding.
#[derive(Default)]
pub struct EndpointQueue {
    channels: HashMap<Arc<str>, ChannelQueue>,
    /// Channels with waiting events and no outstanding batch, by the seq of their oldest event.
    ready: BTreeMap<u64, Arc<str>>,
    /// Waiting events of the channels in `ready`.
    ready_events: usize,
    outstanding: HashMap<u64, Outstanding>,
    /// Outstanding batches by the seq of their oldest event.
    outstanding_by_age: BTreeSet<(u64, u64)>,
    next_seq: u64,
    next_batch: u64,
}

impl EndpointQueue {
    /// Appends an event released at `now` that counts `bytes` against the budget.
    pub fn push(&mut self, event: WebhookEvent, bytes: usize, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let channel = event.channel_name().clone();
        let queue = self.channels.entry(channel.clone()).or_default();
        if !queue.busy {
            if queue.events.is_empty() {
                self.ready.insert(seq, channel);
            }
            self.ready_events += 1;
        }
        queue.events.push_back(Waiting {
            seq,
            since: now,
            bytes,
            event,
        });
    }

    /// When the next batch should go: `window` after its oldest ready event, at once when
    /// `max_events` are ready or `now_please` (shutdown). `None` while nothing is ready.
    pub fn ready_at(
        &self,
        window: Duration,
        max_events: usize,
        now_please: bool,
    ) -> Option<Instant> {
        let (_, channel) = self.ready.first_key_value()?;
        let oldest = self.channels[channel].events.front()?.since;
        if now_please || self.ready_events >= max_events {
            return Some(oldest);
        }
        Some(oldest + window)
    }

    /// Takes the next batch of at most `max_events` ready events, if any are ready.
    pub fn take_batch(&mut self, max_events: usize) -> Option<Batch> {
        let mut picked: Vec<Waiting> = Vec::new();
        let mut channels = Vec::new();
        while picked.len() < max_events {
            let Some((_, channel)) = self.ready.pop_first() else {
                break;
            };
            let queue = self
                .channels
                .get_mut(&channel)
                .expect("a ready channel has a queue");
            queue.busy = true;
            self.ready_events -= queue.events.len();
            let take = queue.events.len().min(max_events - picked.len());
            picked.extend(queue.events.drain(..take));
            channels.push(channel);
        }
        if picked.is_empty() {
            return None;
        }
        picked.sort_unstable_by_key(|w| w.seq);
        let id = self.next_batch;
        self.next_batch += 1;
        let oldest = &picked[0];
        let outstanding = Outstanding {
            channels,
            events: picked.len(),
            bytes: picked.iter().map(|w| w.bytes).sum(),
            oldest_seq: oldest.seq,
            oldest_since: oldest.since,
        };
        self.outstanding_by_age.insert((outstanding.oldest_seq, id));
        self.outstanding.insert(id, outstanding);
        let queued_at = picked.iter().map(|w| w.since).collect();
        Some(Batch {
            id,
            events: picked.into_iter().map(|w| w.event).collect(),
            queued_at,
        })
    }

    /// A batch was delivered or given up on: its channels may go on. Returns the events and
    /// bytes it held.
    pub fn complete(&mut self, id: u64) -> (usize, usize) {
        let Some(done) = self.outstanding.remove(&id) else {
            return (0, 0);
        };
        self.outstanding_by_age.remove(&(done.oldest_seq, id));
        for channel in done.channels {
            let Some(queue) = self.channels.get_mut(&channel) else {
                continue;
            };
            queue.busy = false;
            match queue.events.front() {
                Some(front) => {
                    self.ready.insert(front.seq, channel);
                    self.ready_events += queue.events.len();
                }
                None => {
                    self.channels.remove(&channel);
                }
            }
        }
        (done.events, done.bytes)
    }

    /// When the oldest event not yet delivered was released, if there is one.
    pub fn oldest_since(&self) -> Option<Instant> {
        let ready = self
            .ready
            .first_key_value()
            .and_then(|(_, channel)| self.channels[channel].events.front())
            .map(|w| (w.seq, w.since));
        let outstanding = self
            .outstanding_by_age
            .first()
            .map(|(_, id)| &self.outstanding[id])
            .map(|o| (o.oldest_seq, o.oldest_since));
        // Waiting events of busy channels are younger than the batch that holds them back.
        ready
            .into_iter()
            .chain(outstanding)
            .min()
            .map(|(_, since)| since)
    }

    /// Nothing waiting and nothing outstanding.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.outstanding.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occupied(c: &str) -> WebhookEvent {
        WebhookEvent::ChannelOccupied { channel: c.into() }
    }
    fn vacated(c: &str) -> WebhookEvent {
        WebhookEvent::ChannelVacated { channel: c.into() }
    }
    fn names(batch: &Batch) -> Vec<String> {
        batch
            .events
            .iter()
            .map(|e| format!("{} {}", e.kind().name(), e.channel()))
            .collect()
    }

    #[test]
    fn an_outstanding_batch_holds_back_only_its_channels() {
        let now = Instant::now();
        let mut q = EndpointQueue::default();
        q.push(occupied("a"), 10, now);
        q.push(occupied("b"), 10, now);
        let first = q.take_batch(1).unwrap();
        assert_eq!(names(&first), ["channel_occupied a"]);
        q.push(vacated("a"), 10, now);
        let second = q.take_batch(10).unwrap();
        assert_eq!(
            names(&second),
            ["channel_occupied b"],
            "a waits for its first batch"
        );
        assert!(q.take_batch(10).is_none());
        assert_eq!(q.complete(first.id), (1, 10));
        assert_eq!(names(&q.take_batch(10).unwrap()), ["channel_vacated a"]);
        q.complete(second.id);
        assert!(!q.is_empty());
        q.complete(2);
        assert!(q.is_empty());
    }

    #[test]
    fn a_batch_takes_whole_runs_of_the_oldest_channels_in_release_order() {
        let now = Instant::now();
        let mut q = EndpointQueue::default();
        for c in ["a", "b", "a", "c", "b", "a"] {
            q.push(occupied(c), 1, now);
        }
        let batch = q.take_batch(5).unwrap();
        // a (3 events) and b (2) fit; c waits although it is older than b's second event.
        assert_eq!(
            names(&batch),
            [
                "channel_occupied a",
                "channel_occupied b",
                "channel_occupied a",
                "channel_occupied b",
                "channel_occupied a"
            ]
        );
        assert_eq!(names(&q.take_batch(5).unwrap()), ["channel_occupied c"]);
    }

    #[test]
    fn a_channel_cut_by_the_batch_size_continues_after_it() {
        let now = Instant::now();
        let mut q = EndpointQueue::default();
        for _ in 0..3 {
            q.push(occupied("a"), 1, now);
        }
        let first = q.take_batch(2).unwrap();
        assert_eq!(first.events.len(), 2);
        assert!(
            q.take_batch(2).is_none(),
            "the rest of a waits for the first part"
        );
        q.complete(first.id);
        assert_eq!(q.take_batch(2).unwrap().events.len(), 1);
    }

    #[test]
    fn ready_at_waits_for_the_window_unless_full_or_draining() {
        let t0 = Instant::now();
        let window = Duration::from_millis(50);
        let mut q = EndpointQueue::default();
        assert_eq!(q.ready_at(window, 2, false), None);
        q.push(occupied("a"), 1, t0);
        assert_eq!(q.ready_at(window, 2, false), Some(t0 + window));
        assert_eq!(q.ready_at(window, 2, true), Some(t0));
        q.push(occupied("b"), 1, t0 + window / 2);
        assert_eq!(q.ready_at(window, 2, false), Some(t0), "max_events ready");
    }

    #[test]
    fn oldest_since_covers_waiting_and_outstanding_events() {
        let t0 = Instant::now();
        let mut q = EndpointQueue::default();
        assert_eq!(q.oldest_since(), None);
        q.push(occupied("a"), 1, t0);
        q.push(occupied("b"), 1, t0 + Duration::from_secs(1));
        let batch = q.take_batch(1).unwrap();
        assert_eq!(q.oldest_since(), Some(t0), "the outstanding batch");
        q.complete(batch.id);
        assert_eq!(q.oldest_since(), Some(t0 + Duration::from_secs(1)));
    }
}
