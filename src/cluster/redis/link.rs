//! A node's link to Redis, shared by its apps: the command connection, the channel scripts, the
//! fan-out, and the counts shutdown and the webhook task watch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::connection::RedisConnection;
use ::redis::RedisError;
use tokio::sync::Notify;

use super::arrival_order::Stamp;
use super::availability::{only, Availability};
use super::channel_state::{partition_of, ChannelState, CountAnnouncement, Transition};
use super::fanout::Fanout;
use super::liveness::SWEEP_LIMIT;
use crate::config::EventKind;
use crate::outbound::WireFrame;
use crate::webhooks::{StreamEndpoint, WebhookEvent};

/// What every app of a cluster node reaches Redis through.
pub struct NodeLink {
    con: RedisConnection,
    /// The channel scripts of the current incarnation (replaced when the node rejoins).
    state: RwLock<Arc<ChannelState>>,
    /// Pub/sub fan-out.
    pub fanout: Arc<Fanout>,
    /// Every webhook endpoint of every app.
    pub endpoints: Arc<[StreamEndpoint]>,
    cache_ttl: Duration,
    /// Operations queued and not finished yet.
    ops: AtomicUsize,
    idle: Notify,
    /// Woken when a script of this node appended webhook events.
    pub webhooks_due: Notify,
    /// What of the shared state the node may use now.
    pub availability: Arc<Availability>,
}

impl NodeLink {
    /// The link over `con`.
    pub fn new(
        con: RedisConnection,
        state: Arc<ChannelState>,
        fanout: Arc<Fanout>,
        endpoints: Arc<[StreamEndpoint]>,
        (cache_ttl, availability): (Duration, Arc<Availability>),
    ) -> NodeLink {
        NodeLink {
            con,
            state: RwLock::new(state),
            fanout,
            endpoints,
            cache_ttl,
            ops: AtomicUsize::new(0),
            idle: Notify::new(),
            webhooks_due: Notify::new(),
            availability,
        }
    }

    /// Whether the node uses Redis for the app's channel (its partition is not down).
    pub fn is_online_for(&self, app: &str, channel: &str) -> bool {
        self.availability.is_online_in(partition_of(app, channel))
    }

    /// Something on the app's channel failed: its partition (the whole node, on one Redis) is
    /// served locally until resynced.
    pub fn failed_for(&self, app: &str, channel: &str, why: &dyn std::fmt::Display) {
        let partition = only(partition_of(app, channel));
        self.availability.went_offline_in(partition, why);
    }

    /// The channel scripts of the current incarnation.
    pub fn state(&self) -> Arc<ChannelState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes on behalf of a new incarnation from now on (the node rejoined after a fence).
    pub fn replace_state(&self, state: Arc<ChannelState>) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// A handle on the command connection (cheap: one multiplexed connection).
    pub fn con(&self) -> RedisConnection {
        self.con.clone()
    }

    /// After a join or leave of this node: wakes the webhook deliverer when the script appended
    /// events, and sweeps the channel's partition when the count announcement it held falls
    /// due (the heartbeats' sweeps would too, but up to a heartbeat later).
    pub fn changed(self: &Arc<Self>, app: &str, channel: &str, transition: &Transition) {
        if transition.appended_events() {
            self.webhooks_due.notify_one();
        }
        let CountAnnouncement::Held(after) = transition.count else {
            return;
        };
        let (link, partition) = (self.clone(), partition_of(app, channel));
        tokio::spawn(async move {
            // Redis's clock says when the hold is due: a little later is safe, earlier is not.
            tokio::time::sleep(after + Duration::from_millis(5)).await;
            let (state, mut con) = (link.state(), link.con());
            match state.sweep(&mut con, partition, SWEEP_LIMIT).await {
                Ok(0) => {}
                Ok(_) => link.webhooks_due.notify_one(),
                Err(error) => {
                    tracing::debug!(%error, partition, "a held subscription count waits for the heartbeat's sweep")
                }
            }
        });
    }

    /// Whether any endpoint of the app takes events of this kind.
    pub fn wants(&self, app: &str, kind: EventKind) -> bool {
        self.endpoints.iter().any(|e| e.wants(app, kind))
    }

    /// Publishes an event's frame; on cache channels it becomes the channel's cached event (and
    /// a stamp is not carried: the cached event's version orders it).
    pub async fn publish(
        &self,
        app: &str,
        channel: &str,
        frame: &WireFrame,
        except: Option<&str>,
        cache: Option<&str>,
        stamp: Option<&Stamp>,
    ) -> Result<(), RedisError> {
        match cache {
            Some(text) => {
                let mut con = self.con();
                let target = (app, channel);
                self.state()
                    .publish_cached(
                        &mut con,
                        &self.fanout,
                        target,
                        (text, frame),
                        except,
                        self.cache_ttl,
                    )
                    .await
                    .map(drop)
            }
            None => self
                .fanout
                .publish(app, channel, except, frame, stamp)
                .await
                .map(drop),
        }
    }

    /// Appends a webhook event this node saw, if an endpoint wants its kind.
    pub async fn append(&self, app: &str, event: &WebhookEvent) {
        if !self.wants(app, event.kind()) {
            return;
        }
        match self.state().append(&mut self.con(), app, event).await {
            Ok(()) => self.webhooks_due.notify_one(),
            Err(error) => {
                tracing::warn!(%error, app, "a webhook event could not be appended to its Redis stream; lost")
            }
        }
    }

    /// One more operation is queued.
    pub fn ops_begun(&self) {
        self.ops.fetch_add(1, Ordering::AcqRel);
    }

    /// An operation finished.
    pub fn ops_ended(&self) {
        if self.ops.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Resolves once no operation is queued or running.
    pub async fn ops_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.ops.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}
