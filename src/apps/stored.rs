//! Apps read from a database table: looked up by key (WebSocket) and id (REST) on first use,
//! kept for the cache TTL and read again by [`super::AppDirectory::refresh`]; unknown keys are
//! remembered as absent for a while, so a flood of unknown keys is not a flood of queries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::app_store::{AppStore, StoreError, CONNECT_TIMEOUT};
use crate::config::{AppCacheConfig, AppConfig};

/// Keys (or ids) remembered as absent at once; past it, the expired ones go, then all.
const ABSENT_CAPACITY: usize = 10_000;

/// Keys and ids longer than this are no app's: refused without a query (they come from
/// anonymous clients).
pub const MAX_LOOKUP_LEN: usize = 255;

/// The table and what is remembered of it.
pub struct StoredApps {
    store: AppStore,
    /// How long apps are kept (see [`AppCacheConfig`]).
    pub cache: AppCacheConfig,
    /// Lookups that found nothing, until when they are believed.
    absent: Mutex<HashMap<(Column, String), Instant>>,
    /// Whether the database answered the last query.
    up: AtomicBool,
    /// Lookups at once: half the pool, so a flood of unknown keys leaves connections for the
    /// refresh and for keys that exist.
    in_flight: Semaphore,
}

/// Which column a lookup is by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    /// The app key (WebSocket connections, REST without an id).
    Key,
    /// The app id (REST).
    Id,
}

/// What the table says about one lookup.
pub enum Found {
    /// This app.
    App(Box<AppConfig>),
    /// No app (or a row refused, logged).
    Absent,
    /// The database cannot answer now.
    Unavailable,
}

impl StoredApps {
    /// The apps of `store`, kept as `cache` says.
    pub fn new(store: AppStore, cache: AppCacheConfig, pool_size: u32) -> StoredApps {
        StoredApps {
            store,
            cache,
            absent: Mutex::new(HashMap::new()),
            up: AtomicBool::new(true),
            in_flight: Semaphore::new((pool_size as usize / 2).max(1)),
        }
    }

    /// Whether `value` was found absent less than the negative TTL ago.
    pub fn known_absent(&self, column: Column, value: &str) -> bool {
        let absent = self.absent.lock().unwrap_or_else(|e| e.into_inner());
        let until = absent.get(&(column, value.to_owned()));
        until.is_some_and(|until| Instant::now() < *until)
    }

    /// Asks the table for the app whose `column` is `value`.
    pub async fn look_up(&self, column: Column, value: &str) -> Found {
        if value.len() > MAX_LOOKUP_LEN {
            return Found::Absent;
        }
        let permit = tokio::time::timeout(CONNECT_TIMEOUT, self.in_flight.acquire()).await;
        let Ok(Ok(_permit)) = permit else {
            tracing::warn!("too many app lookups waiting for the database; refused for now");
            return Found::Unavailable;
        };
        let found = match column {
            Column::Key => self.store.by_key(value).await,
            Column::Id => self.store.by_id(value).await,
        };
        let up = !matches!(found, Err(StoreError::Unavailable(_)));
        self.up.store(up, Ordering::Relaxed);
        match found {
            Ok(Some(app)) => Found::App(Box::new(app)),
            Ok(None) => {
                self.remember_absent(column, value);
                Found::Absent
            }
            Err(StoreError::Refused(refusal)) => {
                tracing::error!(app = %refusal.app_id, column = %refusal.column, "app refused: {}", refusal.message);
                self.remember_absent(column, value);
                Found::Absent
            }
            Err(error) => {
                tracing::warn!(%error, "app lookup failed");
                Found::Unavailable
            }
        }
    }

    fn remember_absent(&self, column: Column, value: &str) {
        if self.cache.negative_ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut absent = self.absent.lock().unwrap_or_else(|e| e.into_inner());
        if absent.len() >= ABSENT_CAPACITY {
            absent.retain(|_, until| now < *until);
            if absent.len() >= ABSENT_CAPACITY {
                absent.clear();
            }
        }
        absent.insert((column, value.to_owned()), now + self.cache.negative_ttl);
    }

    /// Forgets that `id` and `key` were absent (the app exists now).
    pub fn forget_absent(&self, app: &AppConfig) {
        let mut absent = self.absent.lock().unwrap_or_else(|e| e.into_inner());
        absent.remove(&(Column::Id, app.id.clone()));
        absent.remove(&(Column::Key, app.key.clone()));
    }

    /// Whether the database answered the last query.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// How often the apps kept are read again.
    pub fn refresh_interval(&self) -> Duration {
        self.cache.ttl.max(Duration::from_secs(1))
    }
}
