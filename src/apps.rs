//! The configured apps and their live state, looked up by id (REST) and by key (WebSocket).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::AppConfig;
use crate::engine::{ChannelCache, ChannelRegistry, UserRegistry};
use crate::protocol::signing::Signer;
use crate::transport::{CountThrottle, Outbound};

/// One app: its configuration plus the engine state of its channels and users.
pub struct App {
    /// The app's configuration and limits.
    pub config: AppConfig,
    /// Live channels and their subscribers.
    pub channels: ChannelRegistry<Outbound>,
    /// Signed-in users and their connections.
    pub users: UserRegistry<Outbound>,
    /// Last events of cache channels.
    pub cache: ChannelCache,
    /// HMAC keyed with the app secret, for every signature check.
    pub signer: Signer,
    /// When each channel's next subscription count may be announced.
    pub subscription_counts: CountThrottle,
    connections: AtomicUsize,
}

impl Deref for App {
    type Target = AppConfig;

    fn deref(&self) -> &AppConfig {
        &self.config
    }
}

impl App {
    fn new(config: AppConfig, cache_ttl: Duration, count_interval: Duration) -> App {
        App {
            subscription_counts: CountThrottle::new(count_interval),
            signer: Signer::new(&config.secret),
            config,
            channels: ChannelRegistry::default(),
            users: UserRegistry::default(),
            cache: ChannelCache::new(cache_ttl),
            connections: AtomicUsize::new(0),
        }
    }

    /// Counts a new connection against the quota; false (and nothing counted) when it is full.
    pub fn try_add_connection(&self) -> bool {
        let max = self.config.max_connections.unwrap_or(usize::MAX);
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Releases a connection counted by [`App::try_add_connection`].
    pub fn remove_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Open connections of this app.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }
}

/// All apps, by id and by key.
pub struct AppRegistry {
    by_id: HashMap<String, Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
}

impl AppRegistry {
    /// Builds the registry; ids and keys were checked unique by the config.
    pub fn new(apps: &[AppConfig], cache_ttl: Duration, count_interval: Duration) -> AppRegistry {
        let mut by_id = HashMap::new();
        let mut by_key = HashMap::new();
        for config in apps {
            let app = Arc::new(App::new(config.clone(), cache_ttl, count_interval));
            by_id.insert(config.id.clone(), app.clone());
            by_key.insert(config.key.clone(), app);
        }
        AppRegistry { by_id, by_key }
    }

    /// The app with this id.
    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id)
    }

    /// The app with this key.
    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key)
    }

    /// Every app.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.by_id.values()
    }
}
