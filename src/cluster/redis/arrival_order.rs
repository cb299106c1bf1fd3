//! One REST request's order across the shards of a Redis Cluster.
//!
//! On one Redis, a node reads every topic on one connection, in the order Redis published them,
//! so a batch trigger (item n+1 published only once item n's publish answered) arrives in its
//! order. On a Redis Cluster each shard reaches a node on a connection of its own, and item n+1
//! on shard Y can be read before item n on shard X. So each item of a request with several
//! carries a [`Stamp`]: the request's number, its index, and for each topic of the items before
//! it (the last [`MAX_EARLIER`]) the latest item's index and the topic's hash. A receiving node
//! delivers an item once those earlier items on topics it listens to were delivered
//! ([`ArrivalOrder`]), holding it meanwhile, at most [`HOLD`] (an earlier item lost at a broken
//! connection must not hold the rest for ever: the node resyncs then anyway).
//! Items on one topic come on one connection in order, so a channel's own order needs no wait.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::channel_state::fnv1a;
use super::fanout::Broadcast;

/// The longest an item waits for an earlier one.
pub const HOLD: Duration = Duration::from_millis(500);

/// A request's numbers on this node (the origin names the node).
static REQUESTS: AtomicU64 = AtomicU64::new(1);

/// The hash a stamp names a topic by.
pub fn topic_hash(topic: &str) -> u32 {
    fnv1a(&[topic]) as u32
}

/// An item's place in its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The request, unique per origin.
    pub request: u64,
    /// The item's index in the request.
    pub index: u32,
    /// Every earlier item: its index and its topic's hash.
    pub earlier: Vec<(u32, u32)>,
}

impl Stamp {
    /// `{request}:{index}:{j}.{hash},...` (hashes in hex).
    pub fn encode(&self) -> String {
        let mut text = format!("{}:{}:", self.request, self.index);
        for (i, (index, hash)) in self.earlier.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("{index}.{hash:x}"));
        }
        text
    }

    /// The stamp [`Stamp::encode`] wrote.
    pub fn decode(text: &str) -> Option<Stamp> {
        let mut parts = text.splitn(3, ':');
        let request = parts.next()?.parse().ok()?;
        let index = parts.next()?.parse().ok()?;
        let earlier = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|item| {
                    let (index, hash) = item.split_once('.')?;
                    Some((index.parse().ok()?, u32::from_str_radix(hash, 16).ok()?))
                })
                .collect::<Option<_>>()?,
        };
        Some(Stamp {
            request,
            index,
            earlier,
        })
    }
}

/// The most earlier items a stamp names: a request over more channels is ordered after the
/// last ones only (a stamp stays a few hundred bytes, however large the request).
pub const MAX_EARLIER: usize = 64;

/// The publishing side: stamps a request's items in the order they are published.
#[derive(Debug, Default)]
pub struct PublishOrder {
    request: u64,
    next: u32,
    /// Per topic seen so far, its latest item (items on one topic arrive in order, so waiting
    /// for the latest is waiting for all), the most recent last.
    earlier: Vec<(u32, u32)>,
}

impl PublishOrder {
    /// A request about to publish several items.
    pub fn new() -> PublishOrder {
        PublishOrder {
            request: REQUESTS.fetch_add(1, Ordering::Relaxed),
            next: 0,
            earlier: Vec::new(),
        }
    }

    /// The stamp of the next item, published on `topic`.
    pub fn stamp(&mut self, topic: &str) -> Stamp {
        let index = self.next;
        self.next += 1;
        let stamp = Stamp {
            request: self.request,
            index,
            earlier: self.earlier.clone(),
        };
        let hash = topic_hash(topic);
        self.earlier.retain(|(_, seen)| *seen != hash);
        self.earlier.push((index, hash));
        if self.earlier.len() > MAX_EARLIER {
            self.earlier.remove(0);
        }
        stamp
    }
}

/// A broadcast held back.
struct Held {
    /// Its topic's hash.
    topic: u32,
    stamp: Option<Stamp>,
    broadcast: Broadcast,
    /// When it goes whatever it waits for.
    until: Instant,
}

/// The items of one request delivered so far.
struct Delivered {
    indices: HashSet<u32>,
    /// When it can be forgotten: every item of a request arrives within [`HOLD`] of the others.
    forget_at: Instant,
}

/// The receiving side: delivers a request's items in its order, over every shard, and keeps
/// every topic's own order while something on it is held.
#[derive(Default)]
pub struct ArrivalOrder {
    /// What is held, in arrival order (so by falling due).
    held: VecDeque<Held>,
    /// Per topic hash, how many held items are on it: what arrives on such a topic waits
    /// behind them, stamped or not.
    held_topics: HashMap<u32, usize>,
    delivered: HashMap<(String, u64), Delivered>,
    /// When the requests are next looked through for ones to forget.
    next_forget: Option<Instant>,
}

impl ArrivalOrder {
    /// Whether a broadcast on `topic` must go through [`ArrivalOrder::arrive`] (something on
    /// its topic is held); an unstamped one that need not is delivered at once.
    pub fn must_wait(&self, topic: u32) -> bool {
        !self.held.is_empty() && self.held_topics.contains_key(&topic)
    }

    /// A broadcast arrived on `topic`: what may be delivered now, in order. `listened` tells
    /// whether this node listens to a topic, by its hash.
    pub fn arrive(
        &mut self,
        broadcast: Broadcast,
        stamp: Option<Stamp>,
        topic: u32,
        listened: &dyn Fn(u32) -> bool,
        now: Instant,
    ) -> Vec<Broadcast> {
        self.forget_old(now);
        *self.held_topics.entry(topic).or_default() += 1;
        self.held.push_back(Held {
            topic,
            stamp,
            broadcast,
            until: now + HOLD,
        });
        self.release(listened, now)
    }

    /// What waited past [`HOLD`], with what it held up, in order.
    pub fn expire(&mut self, listened: &dyn Fn(u32) -> bool, now: Instant) -> Vec<Broadcast> {
        let released = self.release(listened, now);
        self.forget_old(now);
        released
    }

    /// When the next held item falls due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.front().map(|held| held.until)
    }

    /// Delivers, in arrival order, every held item that is first on its topic and whose earlier
    /// listened items were delivered (or that waited its time out).
    fn release(&mut self, listened: &dyn Fn(u32) -> bool, now: Instant) -> Vec<Broadcast> {
        let mut released = Vec::new();
        loop {
            let mut blocked = HashSet::new();
            let ready = self.held.iter().position(|held| {
                let ready = !blocked.contains(&held.topic)
                    && (held.until <= now || self.earlier_delivered(held, listened));
                blocked.insert(held.topic);
                ready
            });
            let Some(at) = ready else {
                return released;
            };
            let held = self.held.remove(at).expect("a held item");
            if let Some(count) = self.held_topics.get_mut(&held.topic) {
                *count -= 1;
                if *count == 0 {
                    self.held_topics.remove(&held.topic);
                }
            }
            if let Some(stamp) = &held.stamp {
                let key = (held.broadcast.origin.clone(), stamp.request);
                let delivered = self.delivered.entry(key).or_insert_with(|| Delivered {
                    indices: HashSet::new(),
                    forget_at: now,
                });
                delivered.indices.insert(stamp.index);
                delivered.forget_at = now + HOLD * 4;
            }
            released.push(held.broadcast);
        }
    }

    /// Whether every earlier item a held one names, on a topic listened to, was delivered.
    fn earlier_delivered(&self, held: &Held, listened: &dyn Fn(u32) -> bool) -> bool {
        let Some(stamp) = &held.stamp else {
            return true;
        };
        let key = (held.broadcast.origin.clone(), stamp.request);
        let delivered = self.delivered.get(&key);
        stamp.earlier.iter().all(|(index, hash)| {
            !listened(*hash) || delivered.is_some_and(|d| d.indices.contains(index))
        })
    }

    /// Forgets the requests whose items all came long enough ago, at most every [`HOLD`].
    fn forget_old(&mut self, now: Instant) {
        if self.next_forget.is_some_and(|at| at > now) {
            return;
        }
        self.next_forget = Some(now + HOLD);
        self.delivered.retain(|_, d| d.forget_at > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::redis::fanout::BroadcastBody;

    fn item(index: u32) -> Broadcast {
        Broadcast {
            app: "a".into(),
            channel: format!("c{index}"),
            origin: "n1".into(),
            except: None,
            version: None,
            body: BroadcastBody::SubscriptionCount(index as usize),
        }
    }

    fn stamps(topics: &[&str]) -> Vec<Stamp> {
        let mut order = PublishOrder::new();
        topics.iter().map(|t| order.stamp(t)).collect()
    }

    fn channels(out: &[Broadcast]) -> Vec<&str> {
        out.iter().map(|b| b.channel.as_str()).collect()
    }

    #[test]
    fn a_stamp_names_the_latest_item_of_each_earlier_topic_within_a_bound() {
        let s = stamps(&["x", "y", "x", "z"]);
        let hash = topic_hash;
        assert_eq!(s[3].earlier, [(1, hash("y")), (2, hash("x"))]);
        let many: Vec<String> = (0..MAX_EARLIER + 10).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let last = stamps(&many).pop().unwrap();
        assert_eq!(last.earlier.len(), MAX_EARLIER);
        assert_eq!(last.earlier.last().unwrap().0, (MAX_EARLIER + 8) as u32);
    }

    #[test]
    fn a_stamp_survives_the_wire() {
        let stamp = &stamps(&["x", "y", "x"])[2];
        assert_eq!(stamp.earlier.len(), 2);
        assert_eq!(Stamp::decode(&stamp.encode()).as_ref(), Some(stamp));
        let single = &stamps(&["x"])[0];
        assert_eq!(Stamp::decode(&single.encode()).as_ref(), Some(single));
        assert_eq!(Stamp::decode("1:2:x"), None);
    }

    #[test]
    fn an_item_overtaking_an_earlier_one_waits_for_it() {
        let s = stamps(&["x", "y", "z"]);
        let mut order = ArrivalOrder::default();
        let all = |_: u32| true;
        let now = Instant::now();
        assert!(order
            .arrive(item(1), Some(s[1].clone()), 1, &all, now)
            .is_empty());
        assert!(order
            .arrive(item(2), Some(s[2].clone()), 2, &all, now)
            .is_empty());
        let out = order.arrive(item(0), Some(s[0].clone()), 0, &all, now);
        assert_eq!(channels(&out), ["c0", "c1", "c2"]);
        assert_eq!(order.next_deadline(), None);
    }

    #[test]
    fn an_earlier_item_on_a_topic_not_listened_to_is_not_waited_for() {
        let s = stamps(&["x", "y"]);
        let mut order = ArrivalOrder::default();
        let only_y = |hash: u32| hash == topic_hash("y");
        let out = order.arrive(item(1), Some(s[1].clone()), 1, &only_y, Instant::now());
        assert_eq!(channels(&out), ["c1"]);
    }

    #[test]
    fn an_item_whose_earlier_one_never_comes_goes_after_the_hold() {
        let s = stamps(&["x", "y"]);
        let mut order = ArrivalOrder::default();
        let all = |_: u32| true;
        let now = Instant::now();
        assert!(order
            .arrive(item(1), Some(s[1].clone()), 1, &all, now)
            .is_empty());
        assert_eq!(order.next_deadline(), Some(now + HOLD));
        assert!(order.expire(&all, now + HOLD / 2).is_empty());
        assert_eq!(channels(&order.expire(&all, now + HOLD)), ["c1"]);
        assert_eq!(order.next_deadline(), None);
    }

    #[test]
    fn a_request_is_forgotten_once_its_items_are_long_past() {
        let s = stamps(&["x", "y"]);
        let mut order = ArrivalOrder::default();
        let all = |_: u32| true;
        let now = Instant::now();
        assert_eq!(
            order
                .arrive(item(0), Some(s[0].clone()), 0, &all, now)
                .len(),
            1
        );
        assert_eq!(order.delivered.len(), 1);
        order.expire(&all, now + HOLD * 5);
        assert!(order.delivered.is_empty(), "memory stays bounded");
    }

    #[test]
    fn what_arrives_on_a_topic_with_a_held_item_waits_behind_it() {
        let s = stamps(&["x", "y"]);
        let mut order = ArrivalOrder::default();
        let all = |_: u32| true;
        let now = Instant::now();
        let y = topic_hash("y");
        assert!(order
            .arrive(item(1), Some(s[1].clone()), y, &all, now)
            .is_empty());
        assert!(order.must_wait(y));
        assert!(!order.must_wait(topic_hash("z")));
        // A single trigger (unstamped) on y, after the held item: behind it.
        assert!(order.arrive(item(7), None, y, &all, now).is_empty());
        let out = order.arrive(item(0), Some(s[0].clone()), topic_hash("x"), &all, now);
        assert_eq!(channels(&out), ["c0", "c1", "c7"]);
        assert!(!order.must_wait(y));
    }

    #[test]
    fn unstamped_broadcasts_pass_at_once() {
        let mut order = ArrivalOrder::default();
        let out = order.arrive(item(5), None, 5, &|_| true, Instant::now());
        assert_eq!(channels(&out), ["c5"]);
    }
}
