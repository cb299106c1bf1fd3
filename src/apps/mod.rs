//! The configured apps, looked up by id (REST) and by key (WebSocket).
//!
//! An [`App`] is configuration only and never changes; a reload replaces it with a new one in
//! the [`AppDirectory`]. Its live state (channels, members, cache, connection count) belongs
//! to the cluster stage, keyed by the app's id.

mod directory;
mod stored;

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

pub use directory::{AppChanges, AppDirectory, Lookup};
pub use stored::StoredApps;

use crate::config::AppConfig;
use crate::protocol::signing::Signer;

/// One app: its configuration and the HMAC keyed with its secret.
pub struct App {
    /// The app's configuration and limits.
    pub config: AppConfig,
    /// HMAC keyed with the app secret, for every signature check.
    pub signer: Signer,
    /// Broadcasts and client events with a payload this long or longer go compressed to
    /// sockets that negotiated `permessage-deflate` (`websocket.compression`); `None`: never.
    pub compress_above: Option<usize>,
}

impl Deref for App {
    type Target = AppConfig;

    fn deref(&self) -> &AppConfig {
        &self.config
    }
}

impl App {
    /// The app of `config`; `compress_above` is the server's compression threshold, when
    /// compression is on.
    pub fn new(config: AppConfig, compress_above: Option<usize>) -> App {
        App {
            signer: Signer::new(&config.secret),
            config,
            compress_above,
        }
    }
}

/// All apps at one moment, by id and by key.
#[derive(Clone, Default)]
pub struct AppRegistry {
    apps: Vec<Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
}

impl AppRegistry {
    /// Builds the registry; ids and keys were checked unique by the config. `compress_above`
    /// is the server's compression threshold, when compression is on.
    pub fn new(configs: &[AppConfig], compress_above: Option<usize>) -> AppRegistry {
        let apps = configs.iter().cloned();
        AppRegistry::of(apps.map(|config| Arc::new(App::new(config, compress_above))))
    }

    /// The registry of these apps, in this order.
    fn of(apps: impl Iterator<Item = Arc<App>>) -> AppRegistry {
        let apps: Vec<Arc<App>> = apps.collect();
        let by_id = apps.iter().map(|a| (a.id.clone(), a.clone())).collect();
        let by_key = apps.iter().map(|a| (a.key.clone(), a.clone())).collect();
        AppRegistry {
            apps,
            by_id,
            by_key,
        }
    }

    /// The app with this id.
    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id)
    }

    /// The app with this key.
    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key)
    }

    /// Every app, in the configuration's order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.iter()
    }

    /// How many apps there are.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether there is no app at all.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
}
