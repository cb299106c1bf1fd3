//! The stage of a node in a cluster on Redis: where the truth is Redis, and this node holds
//! only its own sockets.
//!
//! Started tasks: one worker per line per app ([`super::worker`]), the intake of broadcasts
//! from Redis into the lines, the node's duties ([`super::liveness`]), the webhook delivery
//! of the partitions this node holds ([`super::webhook_rounds`]) and, with the console on, the
//! writer of this node's figures ([`super::node_figures`]).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{RedisConnection, RedisTarget};

use super::app::RedisApp;
use super::availability::Availability;
use super::channel_state::{partition_of, ChannelState};
use super::connection_counts::ConnectionCounts;
use super::fanout::{Broadcast, BroadcastBody, Fanout, Received};
use super::fencing::Rejoin;
use super::line::Step;
use super::link::NodeLink;
use super::liveness::Liveness;
use super::node::{check_eviction_policy, cluster_epoch, NodeMembership};
use super::recovery::Supervisor;
use super::subscriber::PubSubTarget;
use super::webhook_rounds;
use super::webhook_stream::WebhookStreams;
use super::window_counts::SharedWindows;
use crate::apps::{App, AppRegistry};
use crate::cluster::figures::{FigureSource, NodeFigures};
use crate::cluster::{CachedEvent, ChannelSummary, Unavailable};
use crate::config::{Config, RedisConfig};
use crate::metrics::Metrics;
use crate::protocol::channel::user_channel;
use crate::protocol::{ChannelKind, ChannelType};
use crate::webhooks::StreamEndpoint;

/// A node of a cluster on Redis.
pub struct RedisCluster {
    pub(super) link: Arc<NodeLink>,
    /// The current incarnation's membership (replaced when the node rejoins after a fence).
    membership: Arc<Mutex<Arc<NodeMembership>>>,
    /// Per app, by id. A cluster node's apps are those it started with.
    apps: HashMap<String, Arc<RedisApp>>,
    close: CancellationToken,
    tasks: TaskTracker,
    /// Publishes and line runs, waited for at shutdown before the workers stop.
    app_tasks: TaskTracker,
    streams: Arc<WebhookStreams>,
    /// This node's figures for the console.
    figures: Arc<FigureSource>,
    /// The rate limits' and quotas' windows, shared by every node.
    pub(super) windows: SharedWindows,
    /// The apps' connections, counted for the cluster.
    pub(super) connection_counts: Arc<ConnectionCounts>,
    /// The server's shutdown: sockets close when it is cancelled.
    shutdown: CancellationToken,
}

fn start_error(what: &str, error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!(
        "cluster mode (adapter.driver \"redis\" or \"redis-cluster\"): {what}: {error}"
    ))
}

/// The incarnation a node's membership holds now.
fn current(membership: &Mutex<Arc<NodeMembership>>) -> Arc<NodeMembership> {
    membership.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The command connection: to the Redis Cluster, or to the one Redis (the primary the sentinels
/// name now).
async fn open_connection(redis: &RedisConfig) -> io::Result<RedisConnection> {
    if let Some(cluster) = &redis.cluster {
        return RedisConnection::open_cluster(&cluster.nodes, cluster.sharded_pubsub)
            .await
            .map_err(|e| start_error("cannot connect to the Redis Cluster", e));
    }
    let url = RedisTarget::of(redis)
        .resolve()
        .await
        .map_err(|e| start_error("cannot find the primary", e))?;
    super::connect(&url)
        .await
        .map_err(|e| start_error("cannot connect to Redis", e))
}

/// Connects to Redis and joins the cluster under the node's id.
async fn connect_and_join(
    redis: &RedisConfig,
) -> io::Result<(RedisConnection, Arc<NodeMembership>)> {
    let mut con = open_connection(redis).await?;
    check_eviction_policy(&mut con).await;
    let membership = NodeMembership::join(&mut con, redis)
        .await
        .map_err(|e| start_error("cannot join the cluster", e))?;
    let incarnation = membership.incarnation();
    tracing::info!(node = %incarnation, prefix = %redis.prefix, "joined the cluster");
    Ok((con, Arc::new(membership)))
}

/// What the node needs to join again after a fence: which apps fill the webhook streams and
/// announce counts, and the grace period.
fn rejoin_rules(config: &Config, redis: &RedisConfig) -> Rejoin {
    let ids = |keep: fn(&crate::config::AppConfig) -> bool| {
        config
            .apps
            .iter()
            .filter(|app| keep(app))
            .map(|app| app.id.clone())
            .collect()
    };
    Rejoin {
        redis: redis.clone(),
        hooked: ids(|app| !app.webhooks.is_empty()),
        counted: ids(|app| app.enable_subscription_count),
        count_window: config.subscription_count_interval,
        grace_ms: config.webhooks.grace_period.as_millis() as u64,
    }
}

/// The channel scripts of this incarnation, under the cluster's epoch (written to every
/// partition, so a lost state is noticed).
async fn shared_state(
    con: &mut RedisConnection,
    rejoin: &Rejoin,
    incarnation: &str,
) -> io::Result<Arc<ChannelState>> {
    let epoch = cluster_epoch(con, &rejoin.redis.prefix)
        .await
        .map_err(|e| start_error("cannot read the cluster's epoch", e))?;
    let state = Arc::new(rejoin.state(incarnation, &epoch));
    state
        .write_epochs(con)
        .await
        .map_err(|e| start_error("cannot write the cluster's epoch", e))?;
    Ok(state)
}

/// The pub/sub connection and the node's link to Redis, with the broadcasts it receives.
async fn open_link(
    config: &Config,
    redis: &RedisConfig,
    apps: &AppRegistry,
    metrics: &Arc<Metrics>,
    (con, state, incarnation): (RedisConnection, Arc<ChannelState>, &str),
) -> io::Result<(Arc<NodeLink>, Received)> {
    let sharded = matches!(
        con.pubsub_target(),
        PubSubTarget::Cluster { sharded: true, .. }
    );
    let availability = Arc::new(Availability::new(sharded));
    let (fanout, received) = Fanout::start(
        &redis.prefix,
        apps.iter().map(|app| app.id.to_string()),
        incarnation,
        (con.clone(), availability.clone()),
        redis.heartbeat_interval,
    )
    .await
    .map_err(|e| start_error("cannot open the pub/sub connection", e))?;
    let endpoints: Arc<[StreamEndpoint]> =
        StreamEndpoint::all(&config.apps, metrics.clone()).into();
    fanout.report_to(metrics.clone());
    let ttl = (config.channel_cache_ttl, availability);
    let link = NodeLink::new(con, state, fanout, endpoints, ttl);
    Ok((Arc::new(link), received))
}

/// Each app's state on this node with a worker per line, listening to its user-wide topic.
async fn start_apps(
    apps: &AppRegistry,
    link: &Arc<NodeLink>,
    metrics: &Metrics,
    app_tasks: &TaskTracker,
    tasks: &TaskTracker,
    close: &CancellationToken,
) -> io::Result<Vec<Arc<RedisApp>>> {
    let mut node_apps = Vec::new();
    for app in apps.iter() {
        let (redis_app, queues) = RedisApp::new(
            app.clone(),
            link.clone(),
            metrics.app(&app.id),
            app_tasks.clone(),
        );
        for (line, queue) in queues.into_iter().enumerate() {
            let close = close.clone();
            tasks.spawn(super::worker::run(redis_app.clone(), line, queue, close));
        }
        link.fanout
            .listen_users(&app.id)
            .await
            .map_err(|e| start_error("cannot listen to the cluster's commands", e))?;
        node_apps.push(redis_app);
    }
    Ok(node_apps)
}

/// The webhook streams as this incarnation holds them, delivered when any app has endpoints.
fn start_webhook_rounds(
    redis: &RedisConfig,
    incarnation: &str,
    link: &Arc<NodeLink>,
    tasks: &TaskTracker,
    close: &CancellationToken,
) -> Arc<WebhookStreams> {
    let lease_ms = redis.node_timeout.as_millis() as u64;
    let streams = Arc::new(WebhookStreams::new(&redis.prefix, incarnation, lease_ms));
    if !link.endpoints.is_empty() {
        let rounds = webhook_rounds::run(link.clone(), streams.clone(), close.clone());
        tasks.spawn(rounds);
    }
    streams
}

impl RedisCluster {
    /// Connects to Redis, joins the cluster under the node's id and starts the node's tasks.
    pub async fn start(
        config: &Config,
        redis: &RedisConfig,
        apps: &AppRegistry,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> io::Result<RedisCluster> {
        let (mut con, membership) = connect_and_join(redis).await?;
        let incarnation = membership.incarnation().to_owned();
        let rejoin = rejoin_rules(config, redis);
        let state = shared_state(&mut con, &rejoin, &incarnation).await?;
        let linking = (con.clone(), state.clone(), incarnation.as_str());
        let (link, received) = open_link(config, redis, apps, &metrics, linking).await?;
        let close = CancellationToken::new();
        let (tasks, app_tasks) = (TaskTracker::new(), TaskTracker::new());
        let node_apps = start_apps(apps, &link, &metrics, &app_tasks, &tasks, &close).await?;
        let by_id: HashMap<String, Arc<RedisApp>> = (node_apps.iter())
            .map(|node_app| (node_app.app.id.clone(), node_app.clone()))
            .collect();
        let intake = intake(received.broadcasts, by_id.clone(), close.clone());
        tasks.spawn(intake);
        let membership = Arc::new(Mutex::new(membership));
        let every_beat = (redis.heartbeat_interval, close.clone(), &tasks);
        let connection_counts =
            counting_connections(&con, redis, &membership, &node_apps, every_beat);
        let every_beat = (redis.heartbeat_interval, close.clone(), &tasks);
        let figures = writing_figures(config, apps, &metrics, &con, &membership, every_beat);
        let duties = Liveness::start(
            con.clone(),
            current(&membership),
            (state, link.availability.clone()),
            redis.heartbeat_interval,
            close.clone(),
        );
        let watching = (close.clone(), metrics.clone());
        let node = (&node_apps[..], &membership);
        tasks.spawn(Supervisor::new(duties, &link, node, rejoin, watching).run());
        following_sentinel(redis, &link, &metrics, (&tasks, &close));
        let reporting = (&con, &link.availability, &metrics);
        super::primaries_report::start(reporting, (&tasks, &close));
        let streams = start_webhook_rounds(redis, &incarnation, &link, &tasks, &close);
        Ok(RedisCluster {
            windows: SharedWindows::new(link.con(), &redis.prefix),
            connection_counts,
            link,
            membership,
            apps: by_id,
            close,
            tasks,
            app_tasks,
            streams,
            figures,
            shutdown,
        })
    }

    /// Refuses a read of the channel while its partition is down (its shard is out). Once it is
    /// back, reads answer at once, while its lines still resync (as after a Redis outage).
    fn readable(&self, app: &App, channel: &str) -> Result<(), Unavailable> {
        let partition = partition_of(&app.id, channel);
        match self.link.availability.is_down(partition) {
            true => Err(Unavailable),
            false => Ok(()),
        }
    }

    /// The server's shutdown token.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The live state of `app` on this node.
    pub fn app(&self, app: &App) -> &Arc<RedisApp> {
        // Every `App` a cluster node is handed is one it started with: its apps are fixed.
        (self.apps.get(&app.id)).expect("a cluster node's apps are those it started with")
    }

    /// The channel's counts across the cluster; `None` when unoccupied.
    pub async fn channel(
        &self,
        app: &App,
        channel: &str,
    ) -> Result<Option<ChannelSummary>, Unavailable> {
        self.readable(app, channel)?;
        let counts = bounded(
            self.link
                .state()
                .counts(&mut self.link.con(), &app.id, channel),
        )
        .await;
        Ok(counts
            .map_err(unavailable)?
            .map(|c| summary(c.name, c.subscription_count, c.user_count)))
    }

    /// Every occupied channel of the cluster whose name starts with `prefix`.
    pub async fn channels(
        &self,
        app: &App,
        prefix: &str,
    ) -> Result<Vec<ChannelSummary>, Unavailable> {
        // A shard out: its channels' counts are not known.
        if self.link.availability.down() != 0 {
            return Err(Unavailable);
        }
        let occupied = bounded(
            self.link
                .state()
                .occupied(&mut self.link.con(), &app.id, prefix),
        )
        .await;
        Ok(occupied
            .map_err(unavailable)?
            .into_iter()
            .map(|c| summary(c.name, c.subscription_count, c.user_count))
            .collect())
    }

    /// The user's signed-in connections, on every node.
    pub async fn user_connections(&self, app: &App, user_id: &str) -> Result<u64, Unavailable> {
        self.readable(app, &user_channel(user_id))?;
        let connections = bounded(self.app(app).user_connections(user_id)).await;
        connections.map_err(unavailable)
    }

    /// The user ids present in a presence channel, on every node.
    pub async fn users(&self, app: &App, channel: &str) -> Result<Vec<Arc<str>>, Unavailable> {
        self.readable(app, channel)?;
        let ids = bounded(
            self.link
                .state()
                .user_ids(&mut self.link.con(), &app.id, channel),
        )
        .await;
        Ok(ids
            .map_err(unavailable)?
            .into_iter()
            .map(Arc::from)
            .collect())
    }

    /// The channel's cached event, if one is live.
    pub async fn cached(
        &self,
        app: &App,
        channel: &str,
    ) -> Result<Option<CachedEvent>, Unavailable> {
        self.readable(app, channel)?;
        let cached = bounded(
            self.link
                .state()
                .cached(&mut self.link.con(), &app.id, channel),
        )
        .await;
        Ok(cached
            .map_err(unavailable)?
            .map(|(frame, ttl)| CachedEvent::new(Arc::from(frame), ttl)))
    }

    /// The current incarnation of this node.
    pub fn incarnation(&self) -> String {
        self.membership().incarnation().to_owned()
    }

    /// This node's figures as they are now (its webhook queues are the shared streams).
    pub fn own_figures(&self) -> NodeFigures {
        self.figures.read(Some(self.incarnation()), |_| None)
    }

    /// Every live node's figures as it last wrote them, this node's as they are now.
    pub async fn node_figures(&self) -> Result<Vec<NodeFigures>, Unavailable> {
        let (membership, own, mut con) = (self.membership(), self.own_figures(), self.link.con());
        let read = super::node_figures::read(&mut con, &membership, own);
        bounded(read).await.map_err(unavailable)
    }

    fn membership(&self) -> Arc<NodeMembership> {
        let membership = self.membership.lock().unwrap_or_else(|e| e.into_inner());
        membership.clone()
    }

    /// Asks every node to close the user's connections.
    pub async fn terminate_connections(&self, app: &App, user_id: &str) -> Result<(), Unavailable> {
        let asked = bounded(self.link.fanout.terminate(&app.id, user_id)).await;
        asked.map_err(unavailable)?;
        Ok(())
    }

    /// Waits (within `bound`) for the sockets' leaves to reach Redis, where their grace periods
    /// run (another node releases or cancels them), then delivers what this node holds of the
    /// webhook streams and leaves the cluster.
    pub async fn flush(&self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        let drained = tokio::time::timeout_at(deadline, async {
            self.app_tasks.close();
            self.app_tasks.wait().await;
            self.link.ops_idle().await;
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!("subscription changes still reaching Redis when the shutdown grace period ran out; the cluster reaps them");
        }
        if !self.link.endpoints.is_empty() {
            let round = webhook_rounds::round(&self.link, &self.streams);
            if tokio::time::timeout_at(deadline, round).await.is_err() {
                tracing::warn!(
                    "webhook batches still being delivered at shutdown; another node resends them"
                );
            }
        }
        self.close.cancel();
        if drained {
            if let Err(error) = self.membership().leave(&mut self.link.con()).await {
                tracing::warn!(%error, "cannot leave the cluster; the node will be taken for dead");
            }
        }
        self.tasks.close();
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), self.tasks.wait()).await;
    }
}

/// How long a REST query waits for Redis before it answers 503: well below a client's patience,
/// while the connection's own timeouts (reconnecting with back-off) run longer.
const QUERY_BOUND: Duration = Duration::from_secs(2);

/// A query of the shared state, bounded by [`QUERY_BOUND`].
/// The apps' connections counted for the cluster, with their correction every heartbeat
/// running on `tasks` until `close`.
fn counting_connections(
    con: &RedisConnection,
    redis: &RedisConfig,
    membership: &Arc<Mutex<Arc<NodeMembership>>>,
    apps: &[Arc<RedisApp>],
    (interval, close, tasks): (Duration, CancellationToken, &TaskTracker),
) -> Arc<ConnectionCounts> {
    let counts = ConnectionCounts::new(con.clone(), &redis.prefix, membership.clone());
    tasks.spawn(counts.clone().run(apps.to_vec(), interval, close));
    counts
}

/// With Sentinel, hears its `+switch-master` (the node then follows the new primary).
fn following_sentinel(
    redis: &RedisConfig,
    link: &Arc<NodeLink>,
    metrics: &Arc<Metrics>,
    (tasks, close): (&TaskTracker, &CancellationToken),
) {
    if let Some(sentinel) = &redis.sentinel {
        let (link, metrics) = (link.clone(), metrics.clone());
        let follow =
            super::sentinel::follow_switches(sentinel.clone(), link, metrics, close.clone());
        tasks.spawn(follow);
    }
}

/// This node's figures for the console, written to Redis every heartbeat when the console is on
/// (so any node's overview counts the whole cluster).
fn writing_figures(
    config: &Config,
    apps: &AppRegistry,
    metrics: &Metrics,
    con: &RedisConnection,
    membership: &Arc<Mutex<Arc<NodeMembership>>>,
    (interval, close, tasks): (Duration, CancellationToken, &TaskTracker),
) -> Arc<FigureSource> {
    let figures = Arc::new(FigureSource::new(apps, metrics));
    if config.console.enabled {
        let writer = super::node_figures::Writer {
            con: con.clone(),
            membership: membership.clone(),
            source: figures.clone(),
        };
        tasks.spawn(writer.run(interval, close));
    }
    figures
}

pub(super) async fn bounded<T>(
    query: impl std::future::Future<Output = Result<T, ::redis::RedisError>>,
) -> Result<T, ::redis::RedisError> {
    tokio::time::timeout(QUERY_BOUND, query)
        .await
        .unwrap_or_else(|_| {
            Err(::redis::RedisError::from((
                ::redis::ErrorKind::Io,
                "no answer from Redis in time",
            )))
        })
}

fn unavailable(error: ::redis::RedisError) -> Unavailable {
    tracing::warn!(%error, "a cluster-wide query could not reach Redis");
    Unavailable
}

fn summary(name: String, subscriptions: u64, users: u64) -> ChannelSummary {
    let presence = ChannelType::of(&name).kind == ChannelKind::Presence;
    ChannelSummary {
        name: Arc::from(name),
        subscription_count: subscriptions as usize,
        user_count: presence.then_some(users as usize),
    }
}

/// Puts every broadcast from Redis into its channel's line, in the order Redis sent them.
async fn intake(
    mut broadcasts: mpsc::Receiver<Broadcast>,
    apps: HashMap<String, Arc<RedisApp>>,
    close: CancellationToken,
) {
    // The apps hold the reader that feeds `broadcasts`: only `close` ends this at shutdown.
    while let Some(broadcast) = tokio::select! {
        broadcast = broadcasts.recv() => broadcast,
        _ = close.cancelled() => return,
    } {
        let Some(app) = apps.get(&broadcast.app) else {
            continue;
        };
        match &broadcast.body {
            BroadcastBody::Terminate { user_id } => {
                app.terminate_here(user_id);
                continue;
            }
            BroadcastBody::Watchlist { user_id, online } => {
                app.watchlists.changed(user_id, *online);
                continue;
            }
            _ => {}
        }
        let line = app.line_of(&broadcast.channel);
        let _ = app.push(line, Step::Received(broadcast));
    }
    tracing::error!(
        "the cluster's pub/sub connection ended; this node hears nothing from the others"
    );
}
