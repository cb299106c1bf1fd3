//! The state every connection and request handler shares, behind one cheap-clone `Arc`.
//!
//! Fields are private: handlers read what they need through the methods, so what the state
//! holds can change without touching them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app_store::AppStore;
use crate::apps::{AppChanges, AppDirectory, Lookup, StoredApps};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::hooks::DecisionHooks;
use crate::limits::{BodyBudget, ConnectionLimit, FailureThrottle, WindowCounts};
use crate::metrics::Metrics;

/// Shared server state.
pub struct Shared {
    config: Config,
    apps: AppDirectory,
    metrics: Arc<Metrics>,
    cluster: Cluster,
    hooks: DecisionHooks,
    shutdown: CancellationToken,
    connections: TaskTracker,
    body_budget: BodyBudget,
    connection_limit: ConnectionLimit,
    console_token: Option<ConsoleToken>,
    console_guesses: FailureThrottle,
    draining: AtomicBool,
    windows: LocalWindows,
}

/// Rate-limit and quota windows counted in this process: all of them on a single node, and a
/// cluster node's while Redis cannot be reached.
pub struct LocalWindows {
    /// `rate_limiter.api_rate_limit`, per client address.
    pub api: WindowCounts<std::net::IpAddr>,
    /// `rate_limiter.websocket_rate_limit`, per client address.
    pub websocket: WindowCounts<std::net::IpAddr>,
    /// `max_backend_events_per_second`, per app id.
    pub events: WindowCounts<String>,
    /// `max_read_requests_per_second`, per app id.
    pub reads: WindowCounts<String>,
}

/// Client addresses each rate limit counts apart in this process; past them, new ones share.
const LIMITED_ADDRESSES: usize = 100_000;
/// Apps each quota counts apart in this process within one window; past them, new ones share.
const LIMITED_APPS: usize = 100_000;

impl LocalWindows {
    fn new(config: &Config) -> LocalWindows {
        let second = std::time::Duration::from_secs(1);
        let window = |limit: Option<crate::config::RateLimit>| limit.map_or(second, |l| l.window);
        let limits = config.rate_limiter.as_ref();
        LocalWindows {
            api: WindowCounts::new(window(limits.map(|l| l.api)), LIMITED_ADDRESSES),
            websocket: WindowCounts::new(window(limits.map(|l| l.websocket)), LIMITED_ADDRESSES),
            // Apps come and go with reloads: bounded like addresses, not by today's apps.
            events: WindowCounts::new(second, LIMITED_APPS),
            reads: WindowCounts::new(second, LIMITED_APPS),
        }
    }
}

/// Wrong console tokens one client address may send per [`CONSOLE_GUESS_WINDOW`]; past them it
/// gets 429 until the window ends. A few typing mistakes still get 401.
pub const CONSOLE_GUESSES: u32 = 10;
/// The window of [`CONSOLE_GUESSES`].
pub const CONSOLE_GUESS_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Addresses the console's throttle counts apart within a window (about 6 MiB at most); past
/// them, new ones share one count, so an attacker with this many addresses (or IPv6 /64s) a
/// minute can make new addresses wait; a browser holding its session cookie never waits.
const CONSOLE_GUESSERS: usize = 100_000;

/// The token that opens the console.
pub enum ConsoleToken {
    /// `console.token` or `$HERALD_CONSOLE_TOKEN`.
    Configured(String),
    /// Made at start-up, because none was configured: logged once with the console's URL.
    Generated(String),
}

impl ConsoleToken {
    /// The token itself.
    pub fn secret(&self) -> &str {
        match self {
            ConsoleToken::Configured(token) | ConsoleToken::Generated(token) => token,
        }
    }
}

/// 128 random bits in hex.
fn random_token() -> String {
    use rand::Rng;
    format!("{:032x}", rand::rng().random::<u128>())
}

/// The handle handlers receive.
pub type SharedState = Arc<Shared>;

/// The apps of `config`: its file's, or (with a database driver) its table's, looked up on
/// first use. The table must answer at start-up.
async fn app_directory(config: &Config) -> std::io::Result<AppDirectory> {
    let compress_above = config.compression.compress_above();
    let Some(store_config) = &config.app_store else {
        return Ok(AppDirectory::new(&config.apps, compress_above));
    };
    let section = store_config.driver.section();
    if matches!(config.cluster, crate::config::ClusterConfig::Redis(_)) {
        return Err(std::io::Error::other(format!(
            "app_manager.driver {section:?}: apps from a database run on a single node in this version (a cluster node's apps are fixed while it runs); use the memory driver in a cluster"
        )));
    }
    let defaults = config.app_defaults.clone();
    let store = AppStore::connect(store_config, defaults)
        .await
        .map_err(|e| std::io::Error::other(format!("{section}: {e}")))?;
    tracing::info!(table = %store_config.table, layout = ?store.layout(), "apps are read from the database ({section})");
    let stored = StoredApps::new(store, store_config.cache, store_config.pool_size);
    Ok(AppDirectory::stored(stored, compress_above))
}

impl Shared {
    /// The state of a server on `config`: its apps, metrics and the cluster stage it asks for
    /// (which starts the webhook pipelines; a cluster node connects to Redis and joins first).
    pub async fn start(config: Config) -> std::io::Result<SharedState> {
        let app_ids = config.apps.iter().map(|app| app.id.as_str());
        let console = config.console.enabled;
        let metrics = Arc::new(Metrics::with_console(
            &config.metrics.prefix,
            app_ids,
            console,
        ));
        let console_token = console.then(|| match &config.console.token {
            Some(token) => ConsoleToken::Configured(token.clone()),
            None => ConsoleToken::Generated(random_token()),
        });
        let apps = app_directory(&config).await?;
        let registry = apps.snapshot();
        let shutdown = CancellationToken::new();
        Ok(Arc::new(Shared {
            cluster: Cluster::start(&config, &registry, metrics.clone(), shutdown.clone()).await?,
            hooks: DecisionHooks::new(&registry, crate::webhooks::http_client(), metrics.clone()),
            apps,
            metrics,
            shutdown,
            connections: TaskTracker::new(),
            connection_limit: ConnectionLimit::new(config.max_connections),
            body_budget: BodyBudget::new(config.http.body_budget.max(config.http.request_limit)),
            console_token,
            console_guesses: FailureThrottle::new(
                CONSOLE_GUESSES,
                CONSOLE_GUESS_WINDOW,
                CONSOLE_GUESSERS,
            ),
            draining: AtomicBool::new(false),
            windows: LocalWindows::new(&config),
            config,
        }))
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The apps as they are now.
    pub fn apps(&self) -> &AppDirectory {
        &self.apps
    }

    /// The app whose key is `key` (a WebSocket connection's), looked up in the database when
    /// it is not known here yet.
    pub async fn app_by_key(&self, key: &str) -> Lookup {
        let lookup = self.apps.find_by_key(key, &|c| self.follow_apps(c)).await;
        self.after_lookup();
        lookup
    }

    /// The app whose id is `id` (a REST request's), as [`Shared::app_by_key`].
    pub async fn app_by_id(&self, id: &str) -> Lookup {
        let lookup = self.apps.find_by_id(id, &|c| self.follow_apps(c)).await;
        self.after_lookup();
        lookup
    }

    fn after_lookup(&self) {
        if let Some(up) = self.apps.database_up() {
            self.metrics.app_database_answered(up);
        }
    }

    /// Makes the stage and the decision hooks follow apps added, removed and changed (by a
    /// reload, or as read from the database); the directory calls it under its write lock.
    pub fn follow_apps(&self, changes: &AppChanges) {
        for app in changes
            .added
            .iter()
            .chain(changes.changed.iter().map(|(_, a)| a))
        {
            self.hooks.set_app(app);
        }
        for app in &changes.removed {
            self.hooks.remove_app(&app.id);
        }
        if self.cluster.apply(changes).is_err() {
            tracing::error!("a cluster node cannot change its apps while it runs");
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The stage every channel operation goes through.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The apps' decision hooks.
    pub fn hooks(&self) -> &DecisionHooks {
        &self.hooks
    }

    /// Cancelled when the server shuts down; every connection loop watches it.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Tracks connection tasks so shutdown can wait for them.
    pub fn connections(&self) -> &TaskTracker {
        &self.connections
    }

    /// Bytes of REST request bodies being read at once.
    pub fn body_budget(&self) -> &BodyBudget {
        &self.body_budget
    }

    /// The console's token; `None` when the console is off.
    pub fn console_token(&self) -> Option<&ConsoleToken> {
        self.console_token.as_ref()
    }

    /// From now on the server drains: readiness fails, upgrades and REST writes get 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the server is draining (a shutdown signal came).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The rate-limit and quota windows counted in this process.
    pub fn local_windows(&self) -> &LocalWindows {
        &self.windows
    }

    /// Wrong console tokens per client address.
    pub fn console_guesses(&self) -> &FailureThrottle {
        &self.console_guesses
    }

    /// Open WebSocket connections of the process, and `max_connections`.
    pub fn connection_limit(&self) -> &ConnectionLimit {
        &self.connection_limit
    }
}
