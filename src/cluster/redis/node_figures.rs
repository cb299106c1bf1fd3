//! Every node's figures for the console's overview, shared through Redis rather than asked of
//! the other nodes: each node with the console on writes its own once per heartbeat (one `SET`
//! with a TTL of the node timeout, so a dead node's figures go when it would be taken for dead),
//! and an overview reads the live incarnations' in two round trips.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::connection::RedisConnection;
use ::redis::RedisError;
use tokio_util::sync::CancellationToken;

use super::node::NodeMembership;
use crate::cluster::figures::{FigureSource, NodeFigures};

/// The writer of this node's figures.
pub struct Writer {
    /// Its connection.
    pub con: RedisConnection,
    /// The node's current membership (replaced when the node rejoins after a fence).
    pub membership: Arc<Mutex<Arc<NodeMembership>>>,
    /// The node's figures.
    pub source: Arc<FigureSource>,
}

impl Writer {
    /// Writes the figures every `interval` until `close`, under whichever incarnation the node
    /// is at the time.
    pub async fn run(mut self, interval: Duration, close: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = close.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let membership = self
                .membership
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let figures = self
                .source
                .read(Some(membership.incarnation().to_owned()), |_| None);
            // Quietly: the heartbeat already warns when Redis is unreachable.
            if let Err(error) = write(&mut self.con, &membership, &figures).await {
                tracing::debug!(%error, "cannot write this node's console figures to Redis");
            }
        }
    }
}

async fn write(
    con: &mut RedisConnection,
    membership: &NodeMembership,
    figures: &NodeFigures,
) -> Result<(), RedisError> {
    let json = serde_json::to_string(figures).unwrap_or_default();
    ::redis::cmd("SET")
        .arg(membership.figures_key(membership.incarnation()))
        .arg(json)
        .arg("PX")
        .arg(membership.timeout().as_millis() as u64)
        .query_async(con)
        .await
}

/// The figures of every live incarnation that wrote any within the node timeout, with `own`
/// (this node's, fresher than what it wrote) in place of its own, ordered by incarnation.
pub async fn read(
    con: &mut RedisConnection,
    membership: &NodeMembership,
    own: NodeFigures,
) -> Result<Vec<NodeFigures>, RedisError> {
    let others: Vec<String> = membership
        .live_incarnations(con)
        .await?
        .into_iter()
        .filter(|i| own.node.as_deref() != Some(i.as_str()))
        .map(|i| membership.figures_key(&i))
        .collect();
    let mut nodes = vec![own];
    if !others.is_empty() {
        let written: Vec<Option<String>> =
            ::redis::cmd("MGET").arg(&others).query_async(con).await?;
        nodes.extend(written.into_iter().flatten().filter_map(parse));
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(nodes)
}

fn parse(json: String) -> Option<NodeFigures> {
    serde_json::from_str(&json)
        .inspect_err(|error| tracing::debug!(%error, "unreadable console figures in Redis"))
        .ok()
}
