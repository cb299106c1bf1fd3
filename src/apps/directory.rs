//! The apps as they are now: a snapshot that a reload replaces whole, and what the
//! replacement changed, so the stages can follow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::stored::{Column, Found, StoredApps};
use super::{App, AppRegistry};
use crate::config::AppConfig;

/// The current apps. Readers take the snapshot (an `Arc` clone under a read lock held for no
/// more than that); a reload swaps it.
pub struct AppDirectory {
    current: RwLock<Arc<AppRegistry>>,
    compress_above: Option<usize>,
    /// Counts replacements that changed something (from 1), so a socket can tell with one
    /// atomic read whether its app may have changed.
    generation: AtomicU64,
    /// With a database driver: the table the apps come from (the snapshot is then its cache).
    stored: Option<StoredApps>,
}

/// What a lookup found.
pub enum Lookup {
    /// The app, as it is now.
    Found(Arc<App>),
    /// No such app.
    Unknown,
    /// The app database cannot answer and the app is not known here: try again later.
    Unavailable,
}

/// What a reload changed, app by app (by id).
#[derive(Default)]
pub struct AppChanges {
    /// Apps whose id is new.
    pub added: Vec<Arc<App>>,
    /// Apps whose id is gone.
    pub removed: Vec<Arc<App>>,
    /// Apps whose configuration changed: (before, after).
    pub changed: Vec<(Arc<App>, Arc<App>)>,
}

impl AppChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl AppDirectory {
    /// The directory of `configs`; `compress_above` is the server's compression threshold.
    pub fn new(configs: &[AppConfig], compress_above: Option<usize>) -> AppDirectory {
        AppDirectory {
            current: RwLock::new(Arc::new(AppRegistry::new(configs, compress_above))),
            compress_above,
            generation: AtomicU64::new(1),
            stored: None,
        }
    }

    /// A directory of the apps in a database table, empty until they are looked up.
    pub fn stored(stored: StoredApps, compress_above: Option<usize>) -> AppDirectory {
        AppDirectory {
            stored: Some(stored),
            ..AppDirectory::new(&[], compress_above)
        }
    }

    /// Whether the app database answered its last query (`None`: apps come from the file).
    pub fn database_up(&self) -> Option<bool> {
        self.stored.as_ref().map(StoredApps::is_up)
    }

    /// Whether the apps come from a database (a reload of the file leaves them alone).
    pub fn is_stored(&self) -> bool {
        self.stored.is_some()
    }

    /// How often [`AppDirectory::refresh`] should run: the cache TTL (`None`: never, the apps
    /// come from the file).
    pub fn refresh_interval(&self) -> Option<std::time::Duration> {
        self.stored.as_ref().map(StoredApps::refresh_interval)
    }

    /// The app whose key is `key`; what the lookup changed (a database app seen for the first
    /// time, or changed since) for the stages to follow.
    pub async fn find_by_key(&self, key: &str) -> (Lookup, AppChanges) {
        self.find(Column::Key, key).await
    }

    /// The app whose id is `id`, as [`AppDirectory::find_by_key`].
    pub async fn find_by_id(&self, id: &str) -> (Lookup, AppChanges) {
        self.find(Column::Id, id).await
    }

    async fn find(&self, column: Column, value: &str) -> (Lookup, AppChanges) {
        let cached = match column {
            Column::Key => self.by_key(value),
            Column::Id => self.by_id(value),
        };
        let unchanged = AppChanges::default();
        let Some(stored) = &self.stored else {
            return (cached.map_or(Lookup::Unknown, Lookup::Found), unchanged);
        };
        if stored.cache.enabled {
            if let Some(app) = cached {
                return (Lookup::Found(app), unchanged);
            }
            if stored.known_absent(column, value) {
                return (Lookup::Unknown, unchanged);
            }
        }
        match stored.look_up(column, value).await {
            Found::App(config) => {
                stored.forget_absent(&config);
                let changes = self.upsert(*config.clone());
                let app = self
                    .by_id(&config.id)
                    .map_or(Lookup::Unknown, Lookup::Found);
                (app, changes)
            }
            // With the cache off, an app gone from the table goes from here too.
            Found::Absent => match cached {
                Some(app) => (Lookup::Unknown, self.remove(&app.id)),
                None => (Lookup::Unknown, unchanged),
            },
            // The cache off and the database down: what is known keeps working.
            Found::Unavailable => (cached.map_or(Lookup::Unavailable, Lookup::Found), unchanged),
        }
    }

    /// Reads every app kept here again from the table: changed rows apply, deleted (or now
    /// refused) ones are removed. `None` when the database cannot answer (nothing changes).
    pub async fn refresh(&self) -> Option<AppChanges> {
        let stored = self.stored.as_ref()?;
        let kept = self.snapshot();
        let mut next = Vec::with_capacity(kept.len());
        for app in kept.iter() {
            match stored.look_up(Column::Id, &app.id).await {
                Found::App(config) => next.push(*config),
                Found::Absent => {}
                Found::Unavailable => return None,
            }
        }
        Some(self.edit(|current| {
            // Apps first seen while the table was being read stay (they are fresh).
            let fresh = current.iter().filter(|a| kept.by_id(&a.id).is_none());
            next.extend(fresh.map(|a| a.config.clone()));
            next
        }))
    }

    /// Adds or replaces one app (by id), dropping any other app that held its key.
    fn upsert(&self, config: AppConfig) -> AppChanges {
        self.edit(|current| {
            let others = current.iter().map(|a| &a.config);
            let others = others.filter(|a| a.id != config.id && a.key != config.key);
            let mut next: Vec<AppConfig> = others.cloned().collect();
            next.push(config);
            next
        })
    }

    /// Removes one app (by id).
    fn remove(&self, id: &str) -> AppChanges {
        self.edit(|current| {
            let others = current.iter().filter(|a| a.id != id);
            others.map(|a| a.config.clone()).collect()
        })
    }

    /// Goes up with every replacement that changed an app.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every app as it is now.
    pub fn snapshot(&self) -> Arc<AppRegistry> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The app with this id, as it is now.
    pub fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.snapshot().by_id(id).cloned()
    }

    /// The app with this key, as it is now.
    pub fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.snapshot().by_key(key).cloned()
    }

    /// Replaces the apps with `configs` (ids and keys checked unique by the config). An app
    /// whose configuration did not change keeps its `App`, so whoever holds it holds the
    /// current one.
    pub fn replace(&self, configs: &[AppConfig]) -> AppChanges {
        self.edit(|_| configs.to_vec())
    }

    /// Replaces the apps with what `next` makes of the current ones, under the write lock, so
    /// two edits at once (two new apps looked up together) both apply.
    fn edit(&self, next: impl FnOnce(&AppRegistry) -> Vec<AppConfig>) -> AppChanges {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let configs = next(&current);
        let mut changes = AppChanges::default();
        let apps = configs
            .iter()
            .map(|config| match current.by_id(&config.id) {
                Some(old) if old.config == *config => old.clone(),
                Some(old) => {
                    let new = Arc::new(App::new(config.clone(), self.compress_above));
                    changes.changed.push((old.clone(), new.clone()));
                    new
                }
                None => {
                    let new = Arc::new(App::new(config.clone(), self.compress_above));
                    changes.added.push(new.clone());
                    new
                }
            });
        let next = AppRegistry::of(apps.collect::<Vec<_>>().into_iter());
        changes.removed = (current.iter())
            .filter(|app| next.by_id(&app.id).is_none())
            .cloned()
            .collect();
        *current = Arc::new(next);
        if !changes.is_empty() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, key: &str) -> AppConfig {
        AppConfig::with_credentials(id, key, "secret")
    }

    #[test]
    fn a_replacement_reports_added_removed_and_changed_apps_and_keeps_unchanged_ones() {
        let directory = AppDirectory::new(&[app("1", "k1"), app("2", "k2"), app("3", "k3")], None);
        let kept = directory.by_id("1").unwrap();
        let mut changed = app("2", "k2");
        changed.max_connections = Some(5);
        let changes = directory.replace(&[app("1", "k1"), changed, app("4", "k4")]);
        let ids = |apps: &[Arc<App>]| apps.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&changes.added), ["4"]);
        assert_eq!(ids(&changes.removed), ["3"]);
        assert_eq!(changes.changed.len(), 1);
        assert_eq!(changes.changed[0].1.max_connections, Some(5));
        assert!(Arc::ptr_eq(&kept, &directory.by_id("1").unwrap()));
        assert!(directory.by_key("k3").is_none());
        assert_eq!(directory.by_key("k4").unwrap().id, "4");
        assert!(directory
            .replace(&[app("1", "k1"), app("4", "k4")])
            .changed
            .is_empty());
    }

    #[test]
    fn a_new_secret_is_a_change_with_a_new_signer() {
        let directory = AppDirectory::new(&[app("1", "k1")], None);
        let mut rotated = app("1", "k1");
        rotated.secret = "rotated".into();
        let changes = directory.replace(&[rotated]);
        assert_eq!(changes.changed.len(), 1);
        assert_eq!(directory.by_id("1").unwrap().secret, "rotated");
    }
}
