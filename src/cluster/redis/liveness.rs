//! The background duties of a cluster node, once per heartbeat interval: renew its heartbeat
//! (and notice when it has been fenced), reap the sockets of nodes found dead, and release the
//! grace-period holds that fell due. Any node may reap or sweep; the scripts make doing it twice,
//! or on two nodes at once, harmless.

use std::sync::Arc;
use std::time::Duration;

use super::connection::RedisConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::availability::Availability;
use super::channel_state::{ChannelState, PARTITIONS};
use super::node::{Beat, NodeMembership};

/// Holds released per partition per sweep; the rest wait for the next one.
pub const SWEEP_LIMIT: usize = 500;

/// What the node learns from its duties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeHealth {
    /// Heartbeats are renewed.
    Alive,
    /// Redis cannot be reached: the heartbeat is not renewed, local sockets keep working.
    RedisDown,
    /// This incarnation lost its id (it was taken for dead): its sockets must close so their
    /// clients reconnect, and the node must rejoin as a new incarnation.
    Fenced,
    /// The heartbeat lapsed without a reap (Redis stalled past the timeout): the node revives,
    /// or finds itself fenced, through recovery.
    Lapsed,
}

/// The node's duties, run on a task until `close` is cancelled or the node is fenced.
pub struct Liveness {
    /// The task.
    pub task: JoinHandle<()>,
    /// The node's health, as the last round found it.
    pub health: watch::Receiver<NodeHealth>,
    /// Ends the duties (they end by themselves when the node is fenced).
    pub stop: CancellationToken,
}

impl Liveness {
    /// Starts the duties of `membership` every `interval`. The heartbeat runs on a task of its
    /// own, so a long reap (a big node died) can never make this node miss its own beats.
    pub fn start(
        con: RedisConnection,
        membership: Arc<NodeMembership>,
        (state, availability): (Arc<ChannelState>, Arc<Availability>),
        interval: Duration,
        close: CancellationToken,
    ) -> Liveness {
        let (report, health) = watch::channel(NodeHealth::Alive);
        // Fencing ends the duties too: a fenced incarnation must not reap or sweep.
        let stop = close.child_token();
        let beats = tokio::spawn(beat(
            con.clone(),
            membership.clone(),
            interval,
            report,
            stop.clone(),
        ));
        let duties_stop = stop.clone();
        // After an outage of Redis every node's last beat looks old at once: a node that reaped
        // as soon as it was back would reap siblings that are about to revive. So a node reaps
        // only after one timeout of its own duties (they start again after every recovery), by
        // when every live sibling has revived.
        let reap_from = tokio::time::Instant::now() + membership.timeout();
        let duties = tokio::spawn(async move {
            // The connection manager is a cheap handle on one multiplexed connection.
            let round = || {
                let (mut con, membership, state) = (con.clone(), membership.clone(), state.clone());
                let availability = availability.clone();
                let reap = tokio::time::Instant::now() >= reap_from;
                async move {
                    let shared = (&*state, &*availability);
                    reap_and_sweep(&mut con, &membership, shared, reap).await
                }
            };
            every(interval, &duties_stop, round).await;
        });
        let task = tokio::spawn(async move {
            let _ = beats.await;
            let _ = duties.await;
        });
        Liveness { task, health, stop }
    }
}

/// Runs `round` every `interval` until `stop`.
async fn every<F: std::future::Future<Output = ()>>(
    interval: Duration,
    stop: &CancellationToken,
    mut round: impl FnMut() -> F,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => round().await,
        }
    }
}

/// Renews the heartbeat every `interval`, reporting the node's health; cancels `stop` when
/// the node finds itself fenced.
async fn beat(
    con: RedisConnection,
    membership: Arc<NodeMembership>,
    interval: Duration,
    report: watch::Sender<NodeHealth>,
    stop: CancellationToken,
) {
    let report = Arc::new(report);
    every(interval, &stop.clone(), || {
        let (mut con, membership, report, stop) = (
            con.clone(),
            membership.clone(),
            report.clone(),
            stop.clone(),
        );
        async move {
            let now = match membership.beat(&mut con).await {
                Ok(Beat::Alive) => NodeHealth::Alive,
                Ok(Beat::Fenced) => NodeHealth::Fenced,
                Ok(Beat::Lapsed) => NodeHealth::Lapsed,
                Err(error) => {
                    tracing::warn!(%error, "cannot renew the node heartbeat in Redis");
                    NodeHealth::RedisDown
                }
            };
            report.send_if_modified(|health| std::mem::replace(health, now) != now);
            let node = membership.incarnation();
            match now {
                NodeHealth::Fenced => {
                    tracing::error!(node, "this node was taken for dead by the cluster (fenced)")
                }
                NodeHealth::Lapsed => tracing::warn!(
                    node,
                    "this node's heartbeat lapsed (Redis or this node stalled past the node timeout); reviving it"
                ),
                NodeHealth::Alive | NodeHealth::RedisDown => return,
            }
            // Neither a fenced nor a lapsed incarnation may reap or sweep; recovery restarts
            // the duties once the node is back.
            stop.cancel();
        }
    })
    .await;
}

/// One round of the other duties; a failure is logged and retried next round.
async fn reap_and_sweep(
    con: &mut RedisConnection,
    membership: &NodeMembership,
    (state, availability): (&ChannelState, &Availability),
    reap: bool,
) {
    if reap {
        if let Err(error) = reap_dead(con, membership, state).await {
            tracing::warn!(%error, "cannot reap dead nodes");
        }
    }
    for partition in 0..PARTITIONS {
        // A shard out waits for its partitions' recovery; the others are swept meanwhile.
        if availability.is_down(partition) {
            continue;
        }
        if let Err(error) = state.sweep(con, partition, SWEEP_LIMIT).await {
            tracing::warn!(%error, partition, "cannot release due grace-period holds");
            if !availability.is_scoped() {
                break;
            }
        }
    }
}
/// Removes the sockets of every incarnation whose heartbeat stopped, then forgets it.
async fn reap_dead(
    con: &mut RedisConnection,
    membership: &NodeMembership,
    state: &ChannelState,
) -> Result<(), ::redis::RedisError> {
    for dead in membership.dead_incarnations(con).await? {
        let removed = state.reap(con, &dead).await?;
        membership.forget(con, &dead).await?;
        tracing::warn!(incarnation = %dead, sockets = removed, "a node stopped beating; its sockets were removed from the cluster");
    }
    Ok(())
}
