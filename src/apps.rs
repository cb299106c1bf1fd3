//! The configured apps, looked up by id (REST) and by key (WebSocket).
//!
//! An [`App`] is configuration only and never changes while the server runs; its live state
//! (channels, members, cache, connection count) belongs to the cluster stage.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

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
    index: usize,
}

impl Deref for App {
    type Target = AppConfig;

    fn deref(&self) -> &AppConfig {
        &self.config
    }
}

impl App {
    /// The app's position in the registry: stages keep per-app state in a list by it.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// All apps, by id and by key.
#[derive(Clone)]
pub struct AppRegistry {
    apps: Vec<Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
}

impl AppRegistry {
    /// Builds the registry; ids and keys were checked unique by the config. `compress_above`
    /// is the server's compression threshold, when compression is on.
    pub fn new(configs: &[AppConfig], compress_above: Option<usize>) -> AppRegistry {
        let apps: Vec<Arc<App>> = configs
            .iter()
            .enumerate()
            .map(|(index, config)| {
                Arc::new(App {
                    signer: Signer::new(&config.secret),
                    config: config.clone(),
                    compress_above,
                    index,
                })
            })
            .collect();
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

    /// Every app, in [`App::index`] order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.iter()
    }
}
