//! The background duties of a cluster node, once per heartbeat interval: renew its heartbeat
//! (and notice when it has been fenced), reap the sockets of nodes found dead, and release the
//! grace-period holds that fell due. Any node may reap or sweep; the scripts make doing it twice,
//! or on two nodes at once, harmless.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::channel_state::{ChannelState, PARTITIONS};
use super::node::{Beat, NodeMembership};

/// Holds released per partition per sweep; the rest wait for the next one.
const SWEEP_LIMIT: usize = 500;

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
}

/// The node's duties, run on a task until `close` is cancelled or the node is fenced.
pub struct Liveness {
    /// The task.
    pub task: JoinHandle<()>,
    /// The node's health, as the last round found it.
    pub health: watch::Receiver<NodeHealth>,
}

impl Liveness {
    /// Starts the duties of `membership` every `interval`.
    pub fn start(
        mut con: ConnectionManager,
        membership: Arc<NodeMembership>,
        state: Arc<ChannelState>,
        interval: Duration,
        close: CancellationToken,
    ) -> Liveness {
        let (report, health) = watch::channel(NodeHealth::Alive);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = close.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let now = round(&mut con, &membership, &state).await;
                report.send_if_modified(|health| std::mem::replace(health, now) != now);
                if now == NodeHealth::Fenced {
                    tracing::error!(
                        node = membership.incarnation(),
                        "this node was taken for dead by the cluster (fenced)"
                    );
                    return;
                }
            }
        });
        Liveness { task, health }
    }
}

/// One round of duties; an error other than fencing leaves the node alive locally.
async fn round(
    con: &mut ConnectionManager,
    membership: &NodeMembership,
    state: &ChannelState,
) -> NodeHealth {
    match membership.beat(con).await {
        Ok(Beat::Alive) => {}
        Ok(Beat::Fenced) => return NodeHealth::Fenced,
        Err(error) => {
            tracing::warn!(%error, "cannot renew the node heartbeat in Redis");
            return NodeHealth::RedisDown;
        }
    }
    if let Err(error) = reap_dead(con, membership, state).await {
        tracing::warn!(%error, "cannot reap dead nodes");
    }
    for partition in 0..PARTITIONS {
        if let Err(error) = state.sweep(con, partition, SWEEP_LIMIT).await {
            tracing::warn!(%error, partition, "cannot release due grace-period holds");
            break;
        }
    }
    NodeHealth::Alive
}

/// Removes the sockets of every incarnation whose heartbeat stopped, then forgets it.
async fn reap_dead(
    con: &mut ConnectionManager,
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
