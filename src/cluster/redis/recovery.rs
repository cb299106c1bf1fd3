//! How a node gets its place in the cluster back: after an outage of Redis (the node served its
//! own sockets meanwhile), after Redis lost its data, and after it was fenced.
//!
//! One task watches what can go wrong (a failed script or publish, a broken pub/sub
//! connection, a failed, fenced or lapsed heartbeat) and, once Redis answers again:
//! - **the state is there** (the epoch is the one the node knew): the incarnation is revived
//!   and every line resyncs its sockets, idempotently, with the transitions of the outage
//!   (joins and leaves that only this node saw) reported once each as they reach Redis;
//! - **the state was lost** (no epoch, or a newer one a sibling created): the incarnation is
//!   registered again under the new epoch and the lines put their sockets back in rebuild mode,
//!   which restores occupancy and members without an event: they were announced before;
//! - **the incarnation was reaped** (it was taken for dead): the fence ([`super::fencing`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::app::{Op, RedisApp};
use super::availability::{Partitions, EVERY_PARTITION};
use super::fencing::{self, Rejoin};
use super::link::NodeLink;
use super::liveness::{Liveness, NodeHealth};
use super::node::{cluster_epoch, NodeMembership};
use super::shard_recovery::ShardRetry;
use super::worker::{LinesSynced, Resync};
use crate::cluster::sequence::LINES;
use crate::config::redacted;
use crate::metrics::Metrics;

/// What a recovery attempt must wait for before it can tell anything.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

/// The node's watcher.
pub struct Supervisor {
    pub link: Arc<NodeLink>,
    pub apps: Vec<Arc<RedisApp>>,
    pub membership: Arc<Mutex<Arc<NodeMembership>>>,
    pub duties: Liveness,
    pub rejoin: Rejoin,
    pub close: CancellationToken,
    pub metrics: Arc<Metrics>,
    /// The connections moved to a new primary (which kept the epoch but may lack the last
    /// writes), or Redis lost the state, since the last resync was queued: the next one
    /// rebuilds, even when the attempt that found it out failed later.
    pub owes_rebuild: bool,
    /// The lines of the last resync when it was a rebuild: until every one is done, a new
    /// resync rebuilds too (one cut short by another outage must not announce, as new, entries
    /// the lost state lacked).
    pub rebuilding: Vec<Arc<LinesSynced>>,
    /// Shard recoveries in a row where the pub/sub connection missed shards that answered.
    pub pubsub_misses: u32,
}

#[derive(Debug, thiserror::Error)]
enum RecoveryError {
    #[error("Redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("{0}")]
    Join(#[from] super::node::JoinError),
    #[error("{0}")]
    NotYet(&'static str),
}

impl Supervisor {
    /// The watcher of a node that just joined, with its duties running, until `close`.
    pub fn new(
        duties: Liveness,
        link: &Arc<NodeLink>,
        (apps, membership): (&[Arc<RedisApp>], &Arc<Mutex<Arc<NodeMembership>>>),
        rejoin: Rejoin,
        (close, metrics): (CancellationToken, Arc<Metrics>),
    ) -> Supervisor {
        Supervisor {
            link: link.clone(),
            apps: apps.to_vec(),
            membership: membership.clone(),
            duties,
            rejoin,
            close,
            metrics,
            owes_rebuild: false,
            rebuilding: Vec::new(),
            pubsub_misses: 0,
        }
    }

    /// Watches and recovers until `close`.
    pub async fn run(mut self) {
        let mut pubsub = self.link.fanout.connected();
        let availability = self.link.availability.clone();
        let mut checks = tokio::time::interval(self.rejoin.redis.heartbeat_interval);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shards = ShardRetry::default();
        loop {
            let mut health = self.duties.health.clone();
            let offline = availability.offline.notified();
            let partly_down = availability.is_online() && availability.down() != 0;
            let check = tokio::select! {
                _ = self.close.cancelled() => break,
                _ = offline => false,
                changed = pubsub.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if !*pubsub.borrow_and_update() {
                        availability.went_offline(&"the pub/sub connection broke");
                    }
                    false
                }
                // An error means the duties ended (fenced or lapsed): the last value says so.
                _ = health.changed() => {
                    match *health.borrow_and_update() {
                        NodeHealth::RedisDown => {
                            availability.went_offline(&"the heartbeat could not reach Redis");
                            false
                        }
                        NodeHealth::Fenced | NodeHealth::Lapsed => true,
                        NodeHealth::Alive => false,
                    }
                }
                _ = checks.tick(), if availability.is_scoped() => {
                    if availability.is_online() {
                        self.check_shards().await;
                    }
                    false
                }
                _ = tokio::time::sleep_until(shards.due), if partly_down => false,
            };
            if check || !availability.is_online() {
                self.recover().await;
                shards = ShardRetry::default();
            }
            let due = tokio::time::Instant::now() >= shards.due;
            if due && availability.is_online() && availability.down() != 0 {
                shards.attempt(self.recover_shards().await);
            }
        }
        self.duties.stop.cancel();
        let _ = (&mut self.duties.task).await;
    }

    /// Tries until the node is back (or `close`), with back-off.
    async fn recover(&mut self) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.try_recover().await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, "the node cannot resync with the cluster yet; retrying")
                }
            }
            tokio::select! {
                _ = self.close.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    fn membership(&self) -> Arc<NodeMembership> {
        self.membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn try_recover(&mut self) -> Result<(), RecoveryError> {
        let failures = self.link.availability.failures();
        self.owes_rebuild |= self.follow_primary().await?;
        // On a Redis Cluster a shard may have failed over to a replica that lacks the last
        // writes and kept its partitions' epochs: nothing tells, so every recovery rebuilds.
        self.owes_rebuild |= self.rejoin.redis.cluster.is_some();
        let mut con = self.link.con();
        tokio::time::timeout(ANSWER_BOUND, con.reopen_cluster())
            .await
            .map_err(|_| RecoveryError::NotYet("no Redis Cluster node answers"))??;
        let ping = ::redis::cmd("PING");
        tokio::time::timeout(ANSWER_BOUND, ping.query_async::<String>(&mut con))
            .await
            .map_err(|_| RecoveryError::NotYet("Redis does not answer"))??;
        let mut pubsub = self.link.fanout.connected();
        let connected = tokio::time::timeout(ANSWER_BOUND, pubsub.wait_for(|up| *up));
        if !matches!(connected.await, Ok(Ok(_))) {
            return Err(RecoveryError::NotYet("the pub/sub connection is not back"));
        }
        let prefix = &self.rejoin.redis.prefix;
        let epoch = cluster_epoch(&mut con, prefix).await?;
        let state = self.link.state();
        let membership = self.membership();
        let lost = epoch != state.epoch();
        if lost {
            tracing::warn!(
                node = membership.incarnation(),
                "Redis lost the cluster's state (restarted without persistence, or flushed); rebuilding this node's share without events"
            );
            self.owes_rebuild = true;
            membership.register_again(&mut con).await?;
        } else if !membership.revive(&mut con).await? {
            return self.fence().await;
        }
        let state = Arc::new(self.rejoin.state(membership.incarnation(), &epoch));
        if self.link.availability.is_scoped() {
            return self.resume_by_shard(failures, membership, state);
        }
        state.write_epochs(&mut con).await?;
        self.link.replace_state(state.clone());
        self.restart_duties(membership, state.clone());
        let owned = state.owned(&mut con, EVERY_PARTITION).await?;
        self.resume(failures, owned)
    }

    /// On a Redis Cluster with sharded pub/sub: the node is back, with every partition down;
    /// each is written and resynced as its shard answers ([`Supervisor::recover_shards`]).
    fn resume_by_shard(
        &mut self,
        failures: u64,
        membership: Arc<NodeMembership>,
        state: Arc<super::channel_state::ChannelState>,
    ) -> Result<(), RecoveryError> {
        self.link.replace_state(state.clone());
        self.restart_duties(membership, state);
        let availability = &self.link.availability;
        availability.all_down();
        if !availability.went_online_since(failures) {
            return Err(RecoveryError::NotYet(
                "Redis failed again during the recovery",
            ));
        }
        self.owes_rebuild = false;
        tracing::info!(
            "the node is back in the cluster; its partitions resync as their shards answer"
        );
        Ok(())
    }

    /// Takes the node online and queues its lines' resyncs (in rebuild mode when owed), unless
    /// something failed since the attempt began (`failures`).
    fn resume(
        &mut self,
        failures: u64,
        owned: Vec<(String, String, String)>,
    ) -> Result<(), RecoveryError> {
        // A promoted replica keeps the epoch but may lack the last writes: what this node
        // holds goes back without events, as after a loss.
        let unfinished = self.rebuilding.iter().any(|lines| !lines.is_done());
        let rebuild = self.owes_rebuild || unfinished;
        // The new generation first: a line counts as synced only once it carried out a resync
        // of the current one. Then online before any resync can run: a line's worker marks the
        // line synced only if the node is online when its resync ends (else Redis failed
        // meanwhile); taking the node online after queueing let a quick line (one with no
        // channels) end first and stay offline, with its joins local only, until the next
        // outage. Not online if anything failed since this attempt began (a `+switch-master`
        // heard meanwhile, say): the next attempt starts over.
        let generation = (self.link.availability).next_generation(EVERY_PARTITION);
        if !self.link.availability.went_online_since(failures) {
            return Err(RecoveryError::NotYet(
                "Redis failed again during the recovery",
            ));
        }
        let synced = self.resync((generation, EVERY_PARTITION), owned, rebuild);
        self.rebuilding = if rebuild { synced } else { Vec::new() };
        self.owes_rebuild = false;
        self.metrics.cluster_resync();
        tracing::info!(rebuild, "the node is back in the cluster; its lines resync");
        Ok(())
    }

    /// With Sentinel: asks which server is the primary and, when it is another than the one the
    /// node's connections go to, moves them all there. True when they moved.
    async fn follow_primary(&mut self) -> Result<bool, RecoveryError> {
        let Some(sentinel) = &self.rejoin.redis.sentinel else {
            return Ok(false);
        };
        let con = self.link.con();
        let url = match super::sentinel::primary(sentinel).await {
            Ok(url) => url,
            // No sentinel answers: the primary the node knows is kept while it still is one
            // (the sentinels being down must not keep a healthy node out of the cluster).
            Err(error) => {
                super::sentinel::confirm(&con.url()).await?;
                tracing::warn!(%error, "no sentinel answers; the node keeps the primary it knows, which still is one");
                return Ok(false);
            }
        };
        if con.url() == url {
            return Ok(false);
        }
        // The old duties first: a round of theirs must not act on the new primary, where every
        // node's heartbeat looks old until the nodes revive (it would reap live nodes).
        self.stop_duties().await;
        con.replace(&url).await?;
        self.link.fanout.reconnect();
        self.metrics.redis_failover();
        tracing::warn!(primary = %redacted(&url), "Sentinel names a new primary; every connection moves there and the node resyncs in rebuild mode");
        Ok(true)
    }

    /// Ends the node's duties and waits for their last round.
    async fn stop_duties(&mut self) {
        self.duties.stop.cancel();
        if !self.duties.task.is_finished() {
            let _ = (&mut self.duties.task).await;
        }
    }

    /// Queues every line's resync, behind what the line was asked before (the node is online
    /// already): each line uses Redis again once its worker carried its resync out. Returns each
    /// app's lines, done as their resyncs are.
    pub(super) fn resync(
        &self,
        (generation, partitions): (u64, Partitions),
        owned: Vec<(String, String, String)>,
        rebuild: bool,
    ) -> Vec<Arc<LinesSynced>> {
        let mut by_app: HashMap<String, Vec<HashMap<String, Vec<String>>>> = HashMap::new();
        for (app, channel, socket) in owned {
            let Some(node_app) = self.apps.iter().find(|a| *a.app.id == *app) else {
                continue;
            };
            let line = node_app.line_of(&channel);
            let lines = by_app
                .entry(app)
                .or_insert_with(|| vec![HashMap::new(); LINES]);
            lines[line].entry(channel).or_default().push(socket);
        }
        let mut every_app = Vec::with_capacity(self.apps.len());
        for app in &self.apps {
            let mut lines = by_app.remove(&*app.app.id).unwrap_or_default();
            let synced = Arc::new(LinesSynced::new(LINES));
            every_app.push(synced.clone());
            for line in 0..LINES {
                let in_redis = lines.get_mut(line).map(std::mem::take).unwrap_or_default();
                let resync = Resync {
                    generation,
                    in_redis,
                    rebuild,
                    partitions,
                    synced: synced.clone(),
                };
                app.enqueue(line, Op::Resync(resync));
            }
            // What this node's watchers missed while it was cut off, once its own sockets are
            // back in Redis (a rebuild announces nothing).
            app.reconcile_watchlists_after(synced, (generation, partitions));
        }
        every_app
    }

    fn restart_duties(
        &mut self,
        membership: Arc<NodeMembership>,
        state: Arc<super::channel_state::ChannelState>,
    ) {
        self.duties.stop.cancel();
        let interval = self.rejoin.redis.heartbeat_interval;
        let con = self.link.con();
        let shared = (state, self.link.availability.clone());
        self.duties = Liveness::start(con, membership, shared, interval, self.close.clone());
    }

    /// The incarnation was reaped: join as a new one and close the sockets with 4200.
    async fn fence(&mut self) -> Result<(), RecoveryError> {
        // The old incarnation must not reap or sweep any more.
        self.stop_duties().await;
        let (joined, state) = fencing::rejoin(&self.link, &self.rejoin, &self.apps).await?;
        *self.membership.lock().unwrap_or_else(|e| e.into_inner()) = joined.clone();
        self.restart_duties(joined, state);
        self.link.availability.went_online();
        Ok(())
    }
}
