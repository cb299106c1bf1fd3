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
//! `local` (one node) is the only implementation so far; `redis` joins it behind this enum.
//! Queries are `async` because the Redis one will wait on Redis.

mod local;
pub mod redis;
pub mod sequence;

use std::sync::Arc;
use std::time::Duration;

pub use crate::engine::{CachedEvent, ChannelSummary};
pub use local::LocalCluster;

use crate::apps::{App, AppRegistry};
use crate::config::Config;
use crate::engine::{ChannelFull, PresenceMember};
use crate::metrics::{Metrics, WebhookHealth};
use crate::outbound::{Outbound, WireFrame};
use crate::protocol::SocketId;

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

/// A subscription made.
pub struct Subscribed {
    /// The socket was not subscribed before.
    pub newly: bool,
    /// Set when the joiner's reply is not sent yet (another thread is carrying out the
    /// channel's line): the socket waits for it before it handles anything else, so its own
    /// frames keep their order.
    pub pending: Option<Pending>,
}

/// A step of the caller's still to be carried out in its channel's line (another thread is
/// carrying the line out): a joiner's reply, a published event, a client event. The caller
/// waits for it before it goes on, so what it does next cannot overtake it.
#[must_use = "the caller must not go on before the step is carried out"]
pub struct Pending(tokio::sync::oneshot::Receiver<()>);

impl Pending {
    fn new(done: tokio::sync::oneshot::Receiver<()>) -> Pending {
        Pending(done)
    }

    /// Whether the step has been carried out by now.
    pub fn is_done(&mut self) -> bool {
        use tokio::sync::oneshot::error::TryRecvError;
        !matches!(self.0.try_recv(), Err(TryRecvError::Empty))
    }

    /// Resolves once the step has been carried out (cancel-safe: wait again after a drop).
    pub async fn done(&mut self) {
        let _ = (&mut self.0).await;
    }

    /// Waits for `pending`, if there is one.
    pub async fn wait(pending: Option<Pending>) {
        if let Some(mut pending) = pending {
            pending.done().await;
        }
    }
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

/// The stage in use.
pub enum Cluster {
    /// A single node: local state is the whole truth.
    Local(LocalCluster),
}

impl Cluster {
    /// A single-node stage for the configured apps (starts their webhook pipelines).
    pub fn local(config: &Config, apps: &AppRegistry, metrics: Arc<Metrics>) -> Cluster {
        Cluster::Local(LocalCluster::start(config, apps, metrics))
    }

    /// Counts a new connection against the app's quota; false (nothing counted) when full.
    pub fn try_add_connection(&self, app: &App) -> bool {
        match self {
            Cluster::Local(local) => local.app(app).try_add_connection(),
        }
    }

    /// Releases a connection counted by [`Cluster::try_add_connection`].
    pub fn remove_connection(&self, app: &App) {
        match self {
            Cluster::Local(local) => local.app(app).remove_connection(),
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
        }
    }

    /// Unsubscribes a socket: the one path of unsubscribe, disconnect, terminate and shutdown.
    /// False when it was not subscribed.
    pub fn leave(&self, app: &App, channel: &str, socket: SocketId) -> bool {
        match self {
            Cluster::Local(local) => local.app(app).leave(channel, socket),
        }
    }

    /// Delivers a serialized frame to every subscriber of `channel` except `except`; `cache` is
    /// kept as the last event of a cache channel. Never waits on a subscriber. `Some` when the
    /// channel's line is busy on another thread: wait for it before publishing anything else or
    /// answering, so events keep their order across channels and a read sees the write.
    pub fn publish(
        &self,
        app: &App,
        channel: &str,
        frame: WireFrame,
        except: Option<SocketId>,
        cache: Option<Arc<str>>,
    ) -> Option<Pending> {
        match self {
            Cluster::Local(local) => local.app(app).publish(channel, frame, except, cache),
        }
    }

    /// Relays a client event (and its webhook); see [`Cluster::publish`] for the `Pending`.
    pub fn client_event(&self, app: &App, event: ClientEvent<'_>) -> Option<Pending> {
        match self {
            Cluster::Local(local) => local.app(app).client_event(event),
        }
    }

    /// Records that `socket` signed in as `user_id`.
    pub fn sign_in(&self, app: &App, user_id: &Arc<str>, socket: SocketId, outbound: Outbound) {
        match self {
            Cluster::Local(local) => local.sign_in(app, user_id, socket, outbound),
        }
    }

    /// Forgets `socket`'s sign-in as `user_id`.
    pub fn sign_out(&self, app: &App, user_id: &str, socket: SocketId) {
        match self {
            Cluster::Local(local) => local.sign_out(app, user_id, socket),
        }
    }

    /// The channel's counts; `None` when unoccupied.
    pub async fn channel(&self, app: &App, channel: &str) -> Option<ChannelSummary> {
        match self {
            Cluster::Local(local) => local.channel(app, channel),
        }
    }

    /// Every occupied channel whose name starts with `prefix`.
    pub async fn channels(&self, app: &App, prefix: &str) -> Vec<ChannelSummary> {
        match self {
            Cluster::Local(local) => local.channels(app, prefix),
        }
    }

    /// The user ids present in a presence channel.
    pub async fn users(&self, app: &App, channel: &str) -> Vec<Arc<str>> {
        match self {
            Cluster::Local(local) => local.users(app, channel),
        }
    }

    /// The channel's cached event, if one is live.
    pub async fn cached(&self, app: &App, channel: &str) -> Option<CachedEvent> {
        match self {
            Cluster::Local(local) => local.cached(app, channel),
        }
    }

    /// Closes every connection signed in as the user with 4009; returns how many.
    pub async fn terminate_connections(&self, app: &App, user_id: &str) -> usize {
        match self {
            Cluster::Local(local) => local.terminate_connections(app, user_id),
        }
    }

    /// Drops expired cache entries.
    pub fn purge_caches(&self) {
        match self {
            Cluster::Local(local) => local.purge_caches(),
        }
    }

    /// The state of an app's webhook queues, when it has endpoints.
    pub fn webhook_health(&self, app_id: &str) -> Option<WebhookHealth> {
        match self {
            Cluster::Local(local) => local.webhook_health(app_id),
        }
    }

    /// Releases held webhook events and flushes the webhook queues within `bound`; call once
    /// the sockets are drained, so their vacate/remove events are included.
    pub async fn flush(&self, bound: Duration) {
        match self {
            Cluster::Local(local) => local.flush(bound).await,
        }
    }
}
