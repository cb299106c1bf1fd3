//! The single-node implementation: this node's engine state is the whole truth, the grace
//! period is held in this process, and broadcasts reach this node's sockets only.

mod app;
mod counts;
mod grace;
mod steps;
#[cfg(test)]
mod tests;
mod webhook_sink;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use app::AppChannels;

use super::figures::{FigureSource, NodeFigures, QueueFigures};
use super::recipient::Recipient;
use super::watchlist::Watching;
use super::Subscription;
use crate::apps::{App, AppChanges, AppRegistry};
use crate::config::Config;
use crate::engine::{CachedEvent, ChannelCache, ChannelSummary};
use crate::metrics::{Metrics, WebhookHealth};
use crate::outbound::Outbound;
use crate::protocol::channel::user_channel;
use crate::protocol::codes::SocketError;
use crate::protocol::{ChannelType, SocketId};
use crate::webhooks::Webhooks;
use counts::CountThrottle;
use webhook_sink::WebhookSink;

/// The stage of a server that runs alone.
pub struct LocalCluster {
    /// Per app, by id: made on the app's first use, so an app a reload adds needs nothing more.
    apps: Arc<RwLock<AppStates>>,
    /// What a new app's state is made with.
    making: AppMaking,
    webhooks: Arc<Webhooks>,
    /// Cancelled at shutdown: the grace tasks release what they hold.
    close: CancellationToken,
    grace_tasks: TaskTracker,
    /// Line runs and count announcements on tasks of their own.
    line_tasks: TaskTracker,
    /// The figures the console shows.
    figures: RwLock<FigureSource>,
}

/// Each app's state on this node, by app id.
type AppStates = HashMap<String, Arc<AppChannels<Outbound>>>;

/// How long a removed app's webhook pipeline, metrics and state outlive it: its sockets have
/// closed and their last events (vacates, removals) were admitted by then.
const RETIREMENT_DELAY: Duration = Duration::from_secs(5);

/// The settings and handles every app's state is made with.
struct AppMaking {
    cache_ttl: Duration,
    count_interval: Duration,
    grace_period: Duration,
    metrics: Arc<Metrics>,
    /// The server's shutdown: each app's closing token is a child of it.
    shutdown: CancellationToken,
}

impl LocalCluster {
    /// The stage of `apps`, with their webhook pipelines; sockets also close when `shutdown`
    /// is cancelled.
    pub fn start(
        config: &Config,
        apps: &AppRegistry,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> LocalCluster {
        let webhooks = Arc::new(Webhooks::start(
            &config.apps,
            &config.webhooks,
            metrics.clone(),
        ));
        let stage = LocalCluster {
            apps: Arc::default(),
            making: AppMaking {
                cache_ttl: config.channel_cache_ttl,
                count_interval: config.subscription_count_interval,
                grace_period: config.webhooks.grace_period,
                metrics: metrics.clone(),
                shutdown,
            },
            webhooks,
            close: CancellationToken::new(),
            grace_tasks: TaskTracker::new(),
            line_tasks: TaskTracker::new(),
            figures: RwLock::new(FigureSource::new(apps, &metrics)),
        };
        apps.iter().for_each(|app| drop(stage.app(app)));
        stage
    }

    /// The live state of `app`, made on first use.
    pub fn app(&self, app: &App) -> Arc<AppChannels<Outbound>> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = apps.get(&app.id) {
            return state.clone();
        }
        drop(apps);
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let state = apps.entry(app.id.clone()).or_insert_with(|| {
            let making = &self.making;
            // Its own copy of the app: a reload hands it the directory's (`reconfigure`).
            let copy = Arc::new(App::new(app.config.clone(), app.compress_above));
            let state = AppChannels::new(
                copy,
                ChannelCache::new(making.cache_ttl),
                CountThrottle::new(making.count_interval),
                None,
                making.metrics.app(&app.id),
                (self.line_tasks.clone(), making.shutdown.clone()),
            );
            Arc::new(state)
        });
        self.give_webhook_sink(state, &app.id);
        state.clone()
    }

    /// Gives the app's state its webhook sink once the app has endpoints (a grace task).
    fn give_webhook_sink(&self, state: &AppChannels<Outbound>, app_id: &str) {
        if state.webhooks.get().is_some() || !self.webhooks.has_endpoints(app_id) {
            return;
        }
        let sink = WebhookSink::start(
            app_id,
            self.webhooks.clone(),
            self.making.grace_period,
            self.close.clone(),
            &self.grace_tasks,
        );
        let _ = state.webhooks.set(Box::new(sink));
    }

    /// Follows a reload: added apps get their webhook pipeline, changed ones their new
    /// configuration, removed ones lose their pipeline (what it queued is still delivered)
    /// and their sockets close with 4003.
    pub fn apply(&self, changes: &AppChanges) {
        let mut figures = self.figures.write().unwrap_or_else(|e| e.into_inner());
        figures.follow(changes, &self.making.metrics);
        drop(figures);
        for app in &changes.added {
            self.webhooks.set_app(app);
            let state = self.app(app);
            // A removed app added again: its state (and sockets' closing token) carries over.
            state.revive();
            state.reconfigure(app.clone());
            // Its state may have been made (by a connection) before its pipeline was.
            self.give_webhook_sink(&state, &app.id);
        }
        for (_, app) in &changes.changed {
            self.webhooks.set_app(app);
            let state = self.app(app);
            state.reconfigure(app.clone());
            self.give_webhook_sink(&state, &app.id);
        }
        for app in &changes.removed {
            let state = self.app(app);
            let retirement = state.retire();
            self.retire_later(&app.id, state, retirement);
        }
    }

    /// After [`RETIREMENT_DELAY`], unless the app came back: drops its webhook pipeline (what
    /// it queued is still delivered), its metric series, and its state once no socket is left.
    fn retire_later(&self, app_id: &str, state: Arc<AppChannels<Outbound>>, retirement: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (apps, webhooks) = (self.apps.clone(), self.webhooks.clone());
        let (metrics, app_id) = (self.making.metrics.clone(), app_id.to_owned());
        runtime.spawn(async move {
            tokio::time::sleep(RETIREMENT_DELAY).await;
            if !state.still_retired(retirement) {
                return;
            }
            webhooks.remove_app(&app_id);
            metrics.forget_app(&app_id);
            let mut apps = apps.write().unwrap_or_else(|e| e.into_inner());
            let current = apps.get(&app_id).is_some_and(|s| Arc::ptr_eq(s, &state));
            if current && state.open_connections() == 0 {
                apps.remove(&app_id);
            }
        });
    }

    /// Cancelled when a socket of `app` must close: the app was removed or disabled, or the
    /// server shuts down.
    pub fn closing(&self, app: &App) -> CancellationToken {
        self.app(app).closing()
    }

    /// Records that `socket` signed in as `user_id`, and adds it to the user's own channel
    /// (whose occupancy is the user's online status).
    pub fn sign_in(&self, app: &App, user_id: &Arc<str>, socket: SocketId, outbound: Outbound) {
        let state = self.app(app);
        state.users.add(user_id, socket, outbound.clone());
        let channel = user_channel(user_id);
        let request = Subscription::to_user_channel(&channel, socket, &outbound);
        // Not a presence channel, so never full; nobody waits for it (no reply goes out).
        let _ = state.subscribe(request);
    }

    /// Forgets `socket`'s sign-in.
    pub fn sign_out(&self, app: &App, user_id: &str, socket: SocketId) {
        let state = self.app(app);
        state.users.remove(user_id, socket);
        state.leave(&user_channel(user_id), socket);
    }

    /// Registers `socket` as watching `ids` and sends it their initial status.
    pub fn watch(
        &self,
        app: &App,
        socket: SocketId,
        outbound: Outbound,
        ids: &[String],
    ) -> Arc<Watching<Outbound>> {
        let state = self.app(app);
        let watching = state.watchlists.watch(socket, outbound, ids);
        let online = |id: &str| state.channels.summary(&user_channel(id)).is_some();
        state.watchlists.start(&watching, online);
        Arc::new(watching)
    }

    /// Forgets a socket's watchlist.
    pub fn unwatch(&self, app: &App, watching: &Watching<Outbound>) {
        self.app(app).watchlists.unwatch(watching);
    }

    /// The user's signed-in connections.
    pub fn user_connections(&self, app: &App, user_id: &str) -> u64 {
        let summary = self.app(app).channels.summary(&user_channel(user_id));
        summary.map_or(0, |s| s.subscription_count as u64)
    }

    /// The channel's counts; `None` when unoccupied.
    pub fn channel(&self, app: &App, channel: &str) -> Option<ChannelSummary> {
        self.app(app).channels.summary(channel)
    }

    /// Every occupied channel whose name starts with `prefix` (a user's own channel is no
    /// client's: not listed).
    pub fn channels(&self, app: &App, prefix: &str) -> Vec<ChannelSummary> {
        let mut summaries = self.app(app).channels.summaries(prefix);
        summaries.retain(|s| !ChannelType::of(&s.name).is_user());
        summaries
    }

    /// The user ids present in a presence channel.
    pub fn users(&self, app: &App, channel: &str) -> Vec<Arc<str>> {
        self.app(app).channels.user_ids(channel)
    }

    /// The channel's cached event, if one is live.
    pub fn cached(&self, app: &App, channel: &str) -> Option<CachedEvent> {
        self.app(app).cache.get(channel)
    }

    /// Closes every connection signed in as the user with 4009; returns how many.
    pub fn terminate_connections(&self, app: &App, user_id: &str) -> usize {
        let connections = self.app(app).users.connections(user_id);
        for outbound in &connections {
            Recipient::close(
                outbound,
                SocketError::Unauthorized("connections terminated by the server".into()),
            );
        }
        connections.len()
    }

    /// Drops expired cache entries of every app.
    pub fn purge_caches(&self) {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner()).clone();
        apps.values().for_each(|app| app.cache.purge_expired());
    }

    /// The state of an app's webhook queues, when it has endpoints.
    pub fn webhook_health(&self, app_id: &str) -> Option<WebhookHealth> {
        self.webhooks.health(app_id)
    }

    /// The node's figures as they are now, its webhook queues included.
    pub fn figures(&self) -> NodeFigures {
        let queue = |app_id: &str| self.webhook_health(app_id).map(QueueFigures::from);
        let figures = self.figures.read().unwrap_or_else(|e| e.into_inner());
        figures.read(None, queue)
    }

    /// Waits for lines still being carried out (the sockets' last leaves), releases held
    /// webhook events at once, then flushes the webhook queues, all within `bound`.
    pub async fn flush(&self, bound: Duration) {
        self.line_tasks.close();
        if tokio::time::timeout(bound, self.line_tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("channel lines still busy when the shutdown grace period ran out");
        }
        self.close.cancel();
        self.grace_tasks.close();
        self.grace_tasks.wait().await;
        self.webhooks.flush(bound).await;
    }
}
