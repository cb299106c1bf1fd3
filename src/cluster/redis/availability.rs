//! Which of the shared state a node can use now: all of it, none of it (Redis unreachable, its
//! state lost, the node fenced), or, on a Redis Cluster with sharded pub/sub, all but the
//! partitions whose shard is unreachable or whose topics lost messages.
//!
//! A partition that is down is served as in an outage: its channels' joins, leaves and events
//! stay on this node, and REST reads of them answer 503, until the supervisor resynced it. With
//! one Redis (or Sentinel) every partition lives on one server, so every failure takes the
//! whole node down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::channel_state::PARTITIONS;

/// A set of partitions, one bit each (there are 64).
pub type Partitions = u64;

/// Every partition.
pub const EVERY_PARTITION: Partitions = u64::MAX;

/// The set holding only `partition`.
pub fn only(partition: u32) -> Partitions {
    1 << partition
}

/// The partitions in `set`, lowest first.
pub fn members(set: Partitions) -> impl Iterator<Item = u32> {
    (0..PARTITIONS).filter(move |p| set & only(*p) != 0)
}

/// What a node may use of the shared state, shared by everything that reaches Redis.
pub struct Availability {
    /// Failures can be told apart per partition (a Redis Cluster with sharded pub/sub).
    scoped: bool,
    /// False from the moment anything found Redis unreachable (or its state lost) until the
    /// node has resynced: meanwhile the node serves its own sockets only.
    online: AtomicBool,
    /// Partitions served locally until their resync (only while `scoped`).
    down: AtomicU64,
    /// Partitions that failed since a recovery of theirs began: it must not take them online.
    failed: AtomicU64,
    /// How many times anything found Redis failing as a whole.
    failures: AtomicU64,
    /// The last resync generation handed out, and each partition's.
    generation: AtomicU64,
    partition_generation: [AtomicU64; PARTITIONS as usize],
    /// Woken when the node or a partition goes offline.
    pub offline: Notify,
    /// Woken when what is online changed (for the metrics).
    pub changed: Notify,
}

impl Availability {
    /// Everything available; `scoped`: failures are taken per partition.
    pub fn new(scoped: bool) -> Availability {
        Availability {
            scoped,
            online: AtomicBool::new(true),
            down: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            partition_generation: std::array::from_fn(|_| AtomicU64::new(0)),
            offline: Notify::new(),
            changed: Notify::new(),
        }
    }

    /// Whether a failure can be confined to the partitions it touched.
    pub fn is_scoped(&self) -> bool {
        self.scoped
    }

    /// Whether Redis is reachable and this node's share of the shared state is in it (some
    /// partitions may still be down: see [`Availability::is_online_in`]).
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Whether the node uses Redis for `partition`.
    pub fn is_online_in(&self, partition: u32) -> bool {
        self.is_online() && !self.is_down(partition)
    }

    /// Whether `partition` alone is down (its shard is out; the node may be online).
    pub fn is_down(&self, partition: u32) -> bool {
        self.down.load(Ordering::Acquire) & only(partition) != 0
    }

    /// The partitions down now.
    pub fn down(&self) -> Partitions {
        self.down.load(Ordering::Acquire)
    }

    /// Redis failed (or lost its state): serve locally until the node has resynced.
    pub fn went_offline(&self, why: &dyn std::fmt::Display) {
        self.failures.fetch_add(1, Ordering::AcqRel);
        if self.online.swap(false, Ordering::AcqRel) {
            tracing::warn!(%why, "Redis is unreachable or lost its state; this node serves its own sockets only until it can resync");
            self.changed.notify_one();
        }
        self.offline.notify_one();
    }

    /// Something in `partitions` failed: they are served locally until resynced (the whole node
    /// when failures are not scoped).
    pub fn went_offline_in(&self, partitions: Partitions, why: &dyn std::fmt::Display) {
        if !self.scoped {
            return self.went_offline(why);
        }
        self.failed.fetch_or(partitions, Ordering::AcqRel);
        let before = self.down.fetch_or(partitions, Ordering::AcqRel);
        let new = partitions & !before;
        if new != 0 {
            self.changed.notify_one();
            tracing::warn!(%why, partitions = new.count_ones(), "a Redis shard is unreachable or lost messages; this node serves the channels of its partitions locally until they resync");
        }
        self.offline.notify_one();
    }

    /// How many whole-node failures were seen so far (see [`Availability::went_online_since`]).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Acquire)
    }

    /// The node resynced (or rejoined): Redis is used again.
    pub fn went_online(&self) {
        self.online.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// Takes the node online unless a failure was seen since `failures` was read (then it stays
    /// offline, and the recovery tries again): true when it went online.
    pub fn went_online_since(&self, failures: u64) -> bool {
        self.online.store(true, Ordering::Release);
        // A failure counted after the store took the node offline itself.
        if self.failures() == failures {
            self.changed.notify_one();
            return true;
        }
        self.online.store(false, Ordering::Release);
        self.offline.notify_one();
        false
    }

    /// A recovery of `partitions` begins: failures from now on keep them down.
    pub fn recovering(&self, partitions: Partitions) {
        self.failed.fetch_and(!partitions, Ordering::AcqRel);
    }

    /// Takes `partitions` online, but not those that failed since their recovery began (see
    /// [`Availability::recovering`]); returns those that went online.
    pub fn went_online_in(&self, partitions: Partitions) -> Partitions {
        let up = partitions & !self.failed.load(Ordering::Acquire);
        self.down.fetch_and(!up, Ordering::AcqRel);
        // A failure counted after the load set its bit in `down` itself, or is in `failed` now.
        let again = up & self.failed.load(Ordering::Acquire);
        if again != 0 {
            self.down.fetch_or(again, Ordering::AcqRel);
            self.offline.notify_one();
        }
        self.changed.notify_one();
        up & !again
    }

    /// Every partition down (the node rejoined: each is resynced as its shard answers).
    pub fn all_down(&self) {
        self.down.store(EVERY_PARTITION, Ordering::Release);
    }

    /// The last generation handed out.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The generation of `partition`'s last resync: a line uses Redis for it once its worker
    /// carried that resync out.
    pub fn generation_of(&self, partition: u32) -> u64 {
        self.partition_generation[partition as usize].load(Ordering::Acquire)
    }

    /// Starts a new resync generation for `partitions`; returns it.
    pub fn next_generation(&self, partitions: Partitions) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        for partition in members(partitions) {
            self.partition_generation[partition as usize].store(generation, Ordering::Release);
        }
        generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_that_failed_during_its_recovery_stays_down() {
        let availability = Availability::new(true);
        availability.went_offline_in(only(3) | only(5), &"test");
        assert!(availability.is_online() && availability.down() != 0);
        assert!(!availability.is_online_in(3) && availability.is_online_in(4));
        availability.recovering(only(3) | only(5));
        availability.went_offline_in(only(5), &"again");
        assert_eq!(availability.went_online_in(only(3) | only(5)), only(3));
        assert_eq!(availability.down(), only(5));
    }

    #[test]
    fn without_scope_a_partition_takes_the_whole_node_down() {
        let availability = Availability::new(false);
        availability.went_offline_in(only(7), &"test");
        assert!(!availability.is_online());
        assert_eq!(availability.down(), 0);
    }

    #[test]
    fn a_generation_belongs_to_the_partitions_it_was_started_for() {
        let availability = Availability::new(true);
        let first = availability.next_generation(EVERY_PARTITION);
        let second = availability.next_generation(only(2));
        assert_eq!(availability.generation_of(2), second);
        assert_eq!(availability.generation_of(1), first);
        assert_eq!(members(only(2) | only(63)).collect::<Vec<_>>(), [2, 63]);
    }
}
