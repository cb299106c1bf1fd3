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

/// What applies a change to the rest of the server (the stages, the hooks, the metrics); it
/// runs under the directory's write lock and must not look apps up.
pub type Follow<'a> = &'a (dyn Fn(&AppChanges) + Sync);

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
    pub async fn find_by_key(&self, key: &str, follow: Follow<'_>) -> Lookup {
        self.find(Column::Key, key, follow).await
    }

    /// The app whose id is `id`, as [`AppDirectory::find_by_key`].
    pub async fn find_by_id(&self, id: &str, follow: Follow<'_>) -> Lookup {
        self.find(Column::Id, id, follow).await
    }

    async fn find(&self, column: Column, value: &str, follow: Follow<'_>) -> Lookup {
        let cached = match column {
            Column::Key => self.by_key(value),
            Column::Id => self.by_id(value),
        };
        let Some(stored) = &self.stored else {
            return cached.map_or(Lookup::Unknown, Lookup::Found);
        };
        if let (true, Some(app)) = (stored.cache.enabled, &cached) {
            return Lookup::Found(app.clone());
        }
        if cached.is_none() && stored.known_absent(column, value) {
            return Lookup::Unknown;
        }
        match stored.look_up(column, value).await {
            Found::App(config) => {
                stored.forget_absent(&config);
                let id = config.id.clone();
                self.upsert(*config, follow);
                self.by_id(&id).map_or(Lookup::Unknown, Lookup::Found)
            }
            // With the cache off, an app gone from the table goes from here too (looked up
            // by id: a key that changed is not a removed app).
            Found::Absent => {
                if let (Column::Id, Some(app)) = (column, cached) {
                    self.remove(&app.id, follow);
                }
                Lookup::Unknown
            }
            // The cache off and the database down: what is known keeps working.
            Found::Unavailable => cached.map_or(Lookup::Unavailable, Lookup::Found),
        }
    }

    /// Reads every app kept here again from the table: changed rows apply, deleted (or now
    /// refused) ones are removed. `None` when the database cannot answer (nothing changes).
    pub async fn refresh(&self, follow: Follow<'_>) -> Option<AppChanges> {
        let stored = self.stored.as_ref()?;
        let kept = self.snapshot();
        let mut read = Vec::with_capacity(kept.len());
        for app in kept.iter() {
            match stored.look_up(Column::Id, &app.id).await {
                Found::App(config) => read.push(*config),
                Found::Absent => {}
                Found::Unavailable => return None,
            }
        }
        let next = |current: &AppRegistry| {
            // Apps first seen while the table was being read stay (they are fresh).
            let fresh = current.iter().filter(|a| kept.by_id(&a.id).is_none());
            read.extend(fresh.map(|a| a.config.clone()));
            read
        };
        Some(self.edit(next, follow))
    }

    /// Adds or replaces one app (by id), dropping any other app that held its key.
    fn upsert(&self, config: AppConfig, follow: Follow<'_>) -> AppChanges {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut changes = AppChanges::default();
        let new = Arc::new(App::new(config, self.compress_above));
        match current.by_id(&new.id) {
            Some(old) if old.config == new.config => return changes,
            Some(old) => changes.changed.push((old.clone(), new.clone())),
            None => changes.added.push(new.clone()),
        }
        let holder = current
            .by_key(&new.key)
            .filter(|holder| holder.id != new.id);
        changes.removed.extend(holder.cloned());
        // The others are kept as they are (no copy of their configuration): a new app costs
        // one pass over the apps' handles.
        let others = current
            .iter()
            .filter(|a| a.id != new.id && a.key != new.key);
        let others: Vec<Arc<App>> = others.cloned().collect();
        let next = AppRegistry::of(others.into_iter().chain(std::iter::once(new)));
        self.commit(&mut current, next, changes, follow)
    }

    /// Removes one app (by id).
    fn remove(&self, id: &str, follow: Follow<'_>) -> AppChanges {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut changes = AppChanges::default();
        let Some(old) = current.by_id(id).cloned() else {
            return changes;
        };
        changes.removed.push(old);
        let next = AppRegistry::of(current.iter().filter(|a| a.id != id).cloned());
        self.commit(&mut current, next, changes, follow)
    }

    /// Makes `next` the apps, then (when something changed) has `follow` apply `changes`
    /// before the write lock is released.
    fn commit(
        &self,
        current: &mut Arc<AppRegistry>,
        next: AppRegistry,
        changes: AppChanges,
        follow: Follow<'_>,
    ) -> AppChanges {
        *current = Arc::new(next);
        if !changes.is_empty() {
            follow(&changes);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        changes
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
    pub fn replace(&self, configs: &[AppConfig], follow: Follow<'_>) -> AppChanges {
        self.edit(|_| configs.to_vec(), follow)
    }

    /// Replaces the apps with what `next` makes of the current ones and has `follow` apply
    /// the changes, all under the write lock: two edits at once (two new apps looked up
    /// together) both apply, the stages follow them in order, and nobody finds an app before
    /// its webhooks and decision hooks are in place.
    fn edit(
        &self,
        next: impl FnOnce(&AppRegistry) -> Vec<AppConfig>,
        follow: Follow<'_>,
    ) -> AppChanges {
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
        self.commit(&mut current, next, changes, follow)
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
        let changes = directory.replace(&[app("1", "k1"), changed, app("4", "k4")], &|_| {});
        let ids = |apps: &[Arc<App>]| apps.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&changes.added), ["4"]);
        assert_eq!(ids(&changes.removed), ["3"]);
        assert_eq!(changes.changed.len(), 1);
        assert_eq!(changes.changed[0].1.max_connections, Some(5));
        assert!(Arc::ptr_eq(&kept, &directory.by_id("1").unwrap()));
        assert!(directory.by_key("k3").is_none());
        assert_eq!(directory.by_key("k4").unwrap().id, "4");
        assert!(directory
            .replace(&[app("1", "k1"), app("4", "k4")], &|_| {})
            .changed
            .is_empty());
    }

    #[test]
    fn an_app_read_alone_is_added_changed_or_takes_its_key_from_another() {
        let directory = AppDirectory::new(&[app("1", "k1")], None);
        let counted = std::sync::atomic::AtomicUsize::new(0);
        let follow = |_: &AppChanges| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        assert_eq!(directory.upsert(app("2", "k2"), &follow).added.len(), 1);
        assert!(directory.upsert(app("2", "k2"), &follow).is_empty());
        let mut limited = app("2", "k2");
        limited.max_connections = Some(3);
        assert_eq!(directory.upsert(limited, &follow).changed.len(), 1);
        // The key moved to another id: the app that held it is gone.
        let moved = directory.upsert(app("3", "k1"), &follow);
        assert_eq!((moved.added.len(), moved.removed[0].id.as_str()), (1, "1"));
        assert_eq!(directory.by_key("k1").unwrap().id, "3");
        assert_eq!(directory.remove("2", &follow).removed.len(), 1);
        assert!(directory.remove("2", &follow).is_empty());
        assert_eq!(
            counted.into_inner(),
            4,
            "followed once per change, never for none"
        );
        assert_eq!(directory.snapshot().len(), 1);
    }

    #[test]
    fn a_new_secret_is_a_change_with_a_new_signer() {
        let directory = AppDirectory::new(&[app("1", "k1")], None);
        let mut rotated = app("1", "k1");
        rotated.secret = "rotated".into();
        let changes = directory.replace(&[rotated], &|_| {});
        assert_eq!(changes.changed.len(), 1);
        assert_eq!(directory.by_id("1").unwrap().secret, "rotated");
    }
}
