//! An app's `max_connections` for the whole cluster: each incarnation's count of the app's
//! connections in one Redis hash per app (`{prefix}:{pN}:conns:{app}`, N from the app's id),
//! checked and bumped by one script when a connection arrives, lowered when it leaves.
//!
//! Every heartbeat each node writes its exact counts and drops the counts of incarnations that
//! are no longer live, so a dead node's connections stop counting once it is reaped, and an
//! increment or decrement lost to an outage is corrected within a heartbeat (meanwhile the
//! cluster may be off by the lost ones). A node that cannot reach Redis admits against its own
//! count only, and says so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::connection::RedisConnection;
use ::redis::{RedisError, Script};
use tokio_util::sync::CancellationToken;

use super::app::RedisApp;
use super::channel_state::{fnv1a, PARTITIONS};
use super::node::NodeMembership;

const ADMIT: &str = include_str!("lua/connection_admit.lua");
const SYNC: &str = include_str!("lua/connection_sync.lua");

/// The cluster's connection counts, as this node changes them.
pub struct ConnectionCounts {
    con: RedisConnection,
    prefix: String,
    membership: Arc<Mutex<Arc<NodeMembership>>>,
    admit: Script,
    sync: Script,
}

impl ConnectionCounts {
    /// The counts under `prefix`, changed on behalf of the node's current incarnation.
    pub fn new(
        con: RedisConnection,
        prefix: &str,
        membership: Arc<Mutex<Arc<NodeMembership>>>,
    ) -> Arc<ConnectionCounts> {
        Arc::new(ConnectionCounts {
            con,
            prefix: prefix.to_owned(),
            membership,
            admit: Script::new(ADMIT),
            sync: Script::new(SYNC),
        })
    }

    pub(super) fn key(&self, app: &str) -> String {
        let partition = fnv1a(&[app]) % u64::from(PARTITIONS);
        format!("{}:{{p{partition}}}:conns:{app}", self.prefix)
    }

    fn incarnation(&self) -> Arc<NodeMembership> {
        self.membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts a connection of `app` unless the cluster has `max` already; false when full.
    pub async fn admit(&self, app: &str, max: usize) -> Result<bool, RedisError> {
        let mut con = self.con.clone();
        let added: i64 = self
            .admit
            .key(self.key(app))
            .arg(self.incarnation().incarnation())
            .arg(max)
            .invoke_async(&mut con)
            .await?;
        Ok(added == 1)
    }

    /// Uncounts a connection of `app` (in the background: a connection's end never waits).
    pub fn release(self: &Arc<Self>, app: &str) {
        let (counts, key) = (self.clone(), self.key(app));
        tokio::spawn(async move {
            let mut con = counts.con.clone();
            let incarnation = counts.incarnation();
            let lowered: Result<i64, RedisError> = ::redis::cmd("HINCRBY")
                .arg(key)
                .arg(incarnation.incarnation())
                .arg(-1)
                .query_async(&mut con)
                .await;
            // Lost: the next heartbeat's correction counts it right.
            if let Err(error) = lowered {
                tracing::debug!(%error, "a connection's end could not be counted in Redis");
            }
        });
    }

    /// Every `interval` until `close`, writes this node's counts of the apps that have a
    /// `max_connections` and forgets the incarnations that left.
    pub async fn run(
        self: Arc<Self>,
        apps: Vec<Arc<RedisApp>>,
        interval: Duration,
        close: CancellationToken,
    ) {
        let apps: Vec<_> = apps
            .into_iter()
            .filter(|a| a.app.max_connections.is_some())
            .collect();
        if apps.is_empty() {
            return;
        }
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = close.cancelled() => return,
                _ = ticks.tick() => {}
            }
            // Quietly: the heartbeat already warns when Redis is unreachable.
            if let Err(error) = self.sync(&apps).await {
                tracing::debug!(%error, "cannot correct this node's connection counts in Redis");
            }
        }
    }

    async fn sync(&self, apps: &[Arc<RedisApp>]) -> Result<(), RedisError> {
        let mut con = self.con.clone();
        let membership = self.incarnation();
        let live = membership.live_incarnations(&mut con).await?;
        for app in apps {
            let mut invocation = self.sync.key(self.key(&app.app.id));
            invocation
                .arg(membership.incarnation())
                .arg(app.open_connections());
            for incarnation in &live {
                invocation.arg(incarnation);
            }
            invocation.invoke_async::<i64>(&mut con).await?;
        }
        Ok(())
    }
}
