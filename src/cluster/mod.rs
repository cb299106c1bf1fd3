//! The stage between the engine and the outside world.
//!
//! Every subscribe, leave, broadcast, client event, cache lookup, member list, channel query,
//! user query and `terminate_connections` goes through [`Cluster`], from the transport and the
//! REST API alike. It alone turns engine transitions into the joiner's `subscription_succeeded`,
//! member notices to the others, subscription counts and webhook events (with the grace period),
//! in one ordered line per channel ([`sequence`]): a change's place is fixed under the channel's
//! lock and it is carried out after the lock is released, so carrying it out may wait (on Redis,
//! in a cluster) without holding a lock.
//!
//! `local` (one node) and `redis` (a node of a cluster sharing one Redis) are the
//! implementations. Queries are `async` and may fail with [`Unavailable`] because the Redis one
//! waits on Redis.

mod delivery;
pub mod figures;
mod local;
mod pending;
mod recipient;
pub mod redis;
pub mod sequence;
mod watchlist;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use crate::engine::{CachedEvent, ChannelSummary};
pub use local::LocalCluster;
pub use pending::{Outcome, Pending, Refusal};
pub use redis::arrival_order::PublishOrder;
pub use watchlist::Watching;

use crate::apps::{App, AppChanges, AppRegistry};
use crate::config::{ClusterConfig, Config};
use crate::engine::{ChannelFull, PresenceMember};
use crate::metrics::{Metrics, WebhookHealth};
use crate::outbound::{Outbound, WireFrame};
use crate::protocol::SocketId;
use figures::NodeFigures;
use redis::RedisCluster;

/// A socket's subscription request, authorized already (`R`: the socket's handle).
pub struct Subscription<'a, R = Outbound> {
    /// The channel name, validated.
    pub channel: &'a str,
    /// The subscribing socket.
    pub socket: SocketId,
    /// Its outbound side, kept as the channel's handle to it.
    pub outbound: &'a R,
    /// The member it joins as, on presence channels.
    pub member: Option<&'a PresenceMember>,
    /// A cache channel: the joiner gets the last event or `pusher:cache_miss`.
    pub cached: bool,
}

impl<'a, R> Subscription<'a, R> {
    /// A signed-in socket's place in its user's own channel (`user_channel(id)`), which no
    /// client sees.
    pub fn to_user_channel(channel: &'a str, socket: SocketId, outbound: &'a R) -> Self {
        Subscription {
            channel,
            socket,
            outbound,
            member: None,
            cached: false,
        }
    }
}

/// A subscription made.
pub struct Subscribed {
    /// The socket was not subscribed before.
    pub newly: bool,
    /// Set when the joiner's reply is not sent yet (another thread is carrying out the
    /// channel's line): the socket waits for it before it handles anything else, so its own
    /// frames keep their order.
    pub pending: Option<Pending>,
}

/// A client event that passed the socket's checks.
pub struct ClientEvent<'a> {
    /// The channel, which the sender is subscribed to.
    pub channel: &'a str,
    /// The event name (`client-...`).
    pub name: &'a str,
    /// The data as the client sent it.
    pub data: &'a serde_json::value::RawValue,
    /// The sender, which does not get it back.
    pub socket: SocketId,
    /// The sender's presence user id, on presence channels.
    pub user_id: Option<&'a str>,
}

/// A cluster node keeps the apps it started with: a reload's app changes need a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppsFixed;

/// The cluster-wide state cannot be read (Redis is unreachable): a REST query answers 503
/// rather than a partial answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// A window counted for the whole cluster: a rate limit's, per client address, or a quota's,
/// per app.
#[derive(Debug, Clone, Copy)]
pub enum WindowKey<'a> {
    /// A rate limit (`api`, `ws`) of one client address.
    Address {
        /// Which limit.
        limit: &'static str,
        /// The client.
        address: std::net::IpAddr,
    },
    /// A quota (`events`, `reads`) of one app.
    App {
        /// Which quota.
        quota: &'static str,
        /// The app's id.
        app: &'a str,
    },
}

/// Whether a new connection fits its app's `max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted; in a cluster, `counted_in_cluster` says whether Redis counted it too (not while
    /// Redis is unreachable), and so whether its end must be uncounted there.
    Admitted {
        /// Redis counted it.
        counted_in_cluster: bool,
    },
    /// The app is at its `max_connections`: nothing counted.
    Full,
}

/// The stage in use.
pub enum Cluster {
    /// A single node: local state is the whole truth.
    Local(LocalCluster),
    /// A node of a cluster: Redis holds the truth, this node its own sockets.
    Redis(RedisCluster),
}

impl Cluster {
    /// The stage `config.cluster` asks for: a cluster node connects to Redis and joins first.
    /// Alone, it starts the apps' webhook pipelines; `shutdown` closes every socket.
    pub async fn start(
        config: &Config,
        apps: &AppRegistry,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Cluster> {
        match &config.cluster {
            ClusterConfig::Local => Ok(Cluster::Local(LocalCluster::start(
                config, apps, metrics, shutdown,
            ))),
            ClusterConfig::Redis(redis) => {
                let node = RedisCluster::start(config, redis, apps, metrics, shutdown).await?;
                Ok(Cluster::Redis(node))
            }
        }
    }

    /// Follows a reload's app changes; `Err` on a cluster node, whose apps are fixed while it
    /// runs (every node would have to follow at once).
    pub fn apply(&self, changes: &AppChanges) -> Result<(), AppsFixed> {
        match self {
            Cluster::Local(local) => {
                local.apply(changes);
                Ok(())
            }
            Cluster::Redis(_) => Err(AppsFixed),
        }
    }

    /// Cancelled when a socket of `app` must close: the server shuts down or (alone) the app
    /// was removed or disabled.
    pub fn closing(&self, app: &App) -> CancellationToken {
        match self {
            Cluster::Local(local) => local.closing(app),
            Cluster::Redis(node) => node.shutdown().clone(),
        }
    }

    /// This node's incarnation in a cluster (`None` alone): the console says whose log it shows.
    pub fn node_name(&self) -> Option<String> {
        match self {
            Cluster::Local(_) => None,
            Cluster::Redis(node) => Some(node.incarnation()),
        }
    }

    /// Counts a new connection against the app's quota (for the whole cluster in a cluster).
    pub async fn admit_connection(&self, app: &App) -> Admission {
        match self {
            Cluster::Local(local) => match local.app(app).try_add_connection() {
                true => Admission::Admitted {
                    counted_in_cluster: false,
                },
                false => Admission::Full,
            },
            // Boxed: the Redis call's future is large, and an unboxed one would be part of every
            // connection task's state for the connection's whole life.
            Cluster::Redis(node) => Box::pin(node.admit_connection(app)).await,
        }
    }

    /// Releases a connection counted by [`Cluster::admit_connection`] as `counted_in_cluster`.
    pub fn remove_connection(&self, app: &App, counted_in_cluster: bool) {
        match self {
            Cluster::Local(local) => local.app(app).remove_connection(),
            Cluster::Redis(node) => node.release_connection(app, counted_in_cluster),
        }
    }

    /// Subscribes a socket. The joiner's `subscription_succeeded` and every notice follow in
    /// the channel's line.
    pub fn subscribe(
        &self,
        app: &App,
        request: Subscription<'_>,
    ) -> Result<Subscribed, ChannelFull> {
        match self {
            Cluster::Local(local) => local.app(app).subscribe(request),
            Cluster::Redis(node) => Ok(node.app(app).subscribe(request)),
        }
    }

    /// Unsubscribes a socket: the one path of unsubscribe, disconnect, terminate and shutdown.
    /// False when it was not subscribed.
    pub fn leave(&self, app: &App, channel: &str, socket: SocketId) -> bool {
        match self {
            Cluster::Local(local) => local.app(app).leave(channel, socket),
            Cluster::Redis(node) => node.app(app).leave(channel, socket),
        }
    }

    /// Delivers a serialized frame to every subscriber of `channel` except `except`; `cache` is
    /// kept as the last event of a cache channel. Never waits on a subscriber. `Some` when the
    /// channel's line is busy on another thread: wait for it before publishing anything else or
    /// answering, so events keep their order across channels and a read sees the write.
    /// `order` is the request's, when it publishes several items (a Redis Cluster keeps their
    /// order across its shards with it).
    pub fn publish(
        &self,
        app: &App,
        channel: &str,
        frame: WireFrame,
        except: Option<SocketId>,
        cache: Option<Arc<str>>,
        order: Option<&mut PublishOrder>,
    ) -> Option<Pending> {
        match self {
            Cluster::Local(local) => local.app(app).publish(channel, frame, except, cache),
            Cluster::Redis(node) => node.app(app).publish(channel, frame, except, cache, order),
        }
    }

    /// Relays a client event (and its webhook); see [`Cluster::publish`] for the `Pending`.
    pub fn client_event(&self, app: &App, event: ClientEvent<'_>) -> Option<Pending> {
        match self {
            Cluster::Local(local) => local.app(app).client_event(event),
            Cluster::Redis(node) => node.app(app).client_event(event),
        }
    }

    /// Records that `socket` signed in as `user_id`.
    pub fn sign_in(&self, app: &App, user_id: &Arc<str>, socket: SocketId, outbound: Outbound) {
        match self {
            Cluster::Local(local) => local.sign_in(app, user_id, socket, outbound),
            Cluster::Redis(node) => node.app(app).sign_in(user_id, socket, outbound),
        }
    }

    /// Forgets `socket`'s sign-in as `user_id`.
    pub fn sign_out(&self, app: &App, user_id: &str, socket: SocketId) {
        match self {
            Cluster::Local(local) => local.sign_out(app, user_id, socket),
            Cluster::Redis(node) => node.app(app).sign_out(user_id, socket),
        }
    }

    /// Registers a signed-in socket as watching `ids` (at most 100): it gets their initial
    /// status, then every change, as `pusher_internal:watchlist_events`.
    pub fn watch(
        &self,
        app: &App,
        socket: SocketId,
        outbound: Outbound,
        ids: &[String],
    ) -> Arc<Watching<Outbound>> {
        match self {
            Cluster::Local(local) => local.watch(app, socket, outbound, ids),
            Cluster::Redis(node) => node.app(app).watch(socket, outbound, ids),
        }
    }

    /// Forgets a socket's watchlist (it closed).
    pub fn unwatch(&self, app: &App, watching: &Watching<Outbound>) {
        match self {
            Cluster::Local(local) => local.unwatch(app, watching),
            Cluster::Redis(node) => node.app(app).unwatch(watching),
        }
    }

    /// The user's signed-in connections (on every node, in a cluster).
    pub async fn user_connections(&self, app: &App, user_id: &str) -> Result<u64, Unavailable> {
        match self {
            Cluster::Local(local) => Ok(local.user_connections(app, user_id)),
            Cluster::Redis(node) => node.user_connections(app, user_id).await,
        }
    }

    /// The channel's counts; `None` when unoccupied.
    pub async fn channel(
        &self,
        app: &App,
        channel: &str,
    ) -> Result<Option<ChannelSummary>, Unavailable> {
        match self {
            Cluster::Local(local) => Ok(local.channel(app, channel)),
            Cluster::Redis(node) => node.channel(app, channel).await,
        }
    }

    /// Every occupied channel whose name starts with `prefix`.
    pub async fn channels(
        &self,
        app: &App,
        prefix: &str,
    ) -> Result<Vec<ChannelSummary>, Unavailable> {
        match self {
            Cluster::Local(local) => Ok(local.channels(app, prefix)),
            Cluster::Redis(node) => node.channels(app, prefix).await,
        }
    }

    /// The user ids present in a presence channel.
    pub async fn users(&self, app: &App, channel: &str) -> Result<Vec<Arc<str>>, Unavailable> {
        match self {
            Cluster::Local(local) => Ok(local.users(app, channel)),
            Cluster::Redis(node) => node.users(app, channel).await,
        }
    }

    /// The channel's cached event, if one is live.
    pub async fn cached(
        &self,
        app: &App,
        channel: &str,
    ) -> Result<Option<CachedEvent>, Unavailable> {
        match self {
            Cluster::Local(local) => Ok(local.cached(app, channel)),
            Cluster::Redis(node) => node.cached(app, channel).await,
        }
    }

    /// Closes every connection signed in as the user with 4009, on every node.
    pub async fn terminate_connections(&self, app: &App, user_id: &str) -> Result<(), Unavailable> {
        match self {
            Cluster::Local(local) => {
                local.terminate_connections(app, user_id);
                Ok(())
            }
            Cluster::Redis(node) => node.terminate_connections(app, user_id).await,
        }
    }

    /// Drops expired cache entries.
    pub fn purge_caches(&self) {
        match self {
            Cluster::Local(local) => local.purge_caches(),
            Cluster::Redis(_) => {}
        }
    }

    /// The state of an app's webhook queues, when it has endpoints.
    pub fn webhook_health(&self, app_id: &str) -> Option<WebhookHealth> {
        match self {
            Cluster::Local(local) => local.webhook_health(app_id),
            Cluster::Redis(_) => None,
        }
    }

    /// This node's figures for the console, as they are now.
    pub fn own_figures(&self) -> NodeFigures {
        match self {
            Cluster::Local(local) => local.figures(),
            Cluster::Redis(node) => node.own_figures(),
        }
    }

    /// Every live node's figures (read from the shared state, never asked of the nodes).
    pub async fn node_figures(&self) -> Result<Vec<NodeFigures>, Unavailable> {
        match self {
            Cluster::Local(local) => Ok(vec![local.figures()]),
            Cluster::Redis(node) => node.node_figures().await,
        }
    }

    /// Adds `amount` hits to the cluster-wide window of `key`: its count and when it ends;
    /// `Ok(None)` on a single node, which counts in its own memory.
    pub async fn hit_window(
        &self,
        key: &WindowKey<'_>,
        window: Duration,
        amount: u32,
    ) -> Result<Option<(u64, Duration)>, Unavailable> {
        match self {
            Cluster::Local(_) => Ok(None),
            Cluster::Redis(node) => node.hit_window(key, window, amount).await.map(Some),
        }
    }

    /// Releases held webhook events and flushes the webhook queues within `bound`; call once
    /// the sockets are drained, so their vacate/remove events are included.
    pub async fn flush(&self, bound: Duration) {
        match self {
            Cluster::Local(local) => local.flush(bound).await,
            Cluster::Redis(node) => node.flush(bound).await,
        }
    }
}
