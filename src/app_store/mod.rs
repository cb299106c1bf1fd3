//! Apps kept in a database table (PostgreSQL or MySQL/MariaDB): Sockudo's `applications`
//! table, an older one without `policy`, or soketi's `apps`, told apart by their columns.
//!
//! A row becomes an [`AppConfig`] through the same validation as `config.json`'s apps: it is
//! turned into a JSON object of that shape ([`row`]) and checked with the file's global
//! defaults ([`AppDefaults`]). A row that fails is refused whole ([`RowRefusal`]), never half
//! read. Every operation is bounded in time: a database that is down gives
//! [`StoreError::Unavailable`] within [`OPERATION_TIMEOUT`], never a wait without end.

mod backend;
mod cell;
mod columns;
mod draft;
mod mysql;
mod postgres;
mod row;

use std::future::Future;
use std::time::Duration;

use crate::config::{AppConfig, AppDefaults, AppStoreConfig, ConfigError};

use backend::Backend;
pub use columns::Layout;
use columns::Table;
pub use draft::AppDraft;

/// The longest any one store operation may take, connection included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the pool tries to hand out a connection (connecting and retrying included) before
/// the database counts as down: shorter than [`OPERATION_TIMEOUT`], so a lookup during an
/// outage fails in this time, not in the operation's.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a row is not an app: the app's id (as stored), the column at fault and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("app {app_id:?}: column {column}: {message}")]
pub struct RowRefusal {
    /// The row's `id`.
    pub app_id: String,
    /// The column holding the bad value.
    pub column: String,
    /// What is wrong with it (with the key path inside a JSON column).
    pub message: String,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or did not answer in time: try again later.
    #[error("the app database is unavailable: {0}")]
    Unavailable(String),
    /// The row exists but is not a valid app.
    #[error("refused a row: {0}")]
    Refused(RowRefusal),
    /// The table is missing and `create_table` is false.
    #[error("the table {table:?} does not exist (and create_table is false)")]
    MissingTable {
        /// The table's name.
        table: String,
    },
    /// The table exists but cannot hold apps (no `id`, `key` or `secret` column).
    #[error("the table {table:?} is not an app table: {message}")]
    NotAnAppTable {
        /// The table's name.
        table: String,
        /// What is missing.
        message: String,
    },
    /// An app to write is not valid (as it would be refused in `config.json`).
    #[error("invalid app: {0}")]
    Invalid(ConfigError),
    /// An app to write has the id or key of another.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database refused a statement for another reason (permissions, ...).
    #[error("the app database refused: {0}")]
    Database(String),
}

/// Every row of the table: the apps, and the rows refused.
#[derive(Debug, Default)]
pub struct Listing {
    /// The valid apps.
    pub apps: Vec<AppConfig>,
    /// The rows that are not valid apps, each refused whole.
    pub refused: Vec<RowRefusal>,
}

/// The app table of one database: a bounded pool and the table's columns, read once.
pub struct AppStore {
    backend: Backend,
    table: Table,
    defaults: AppDefaults,
}

impl std::fmt::Debug for AppStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStore")
            .field("table", &self.table.name)
            .field("layout", &self.table.layout)
            .finish_non_exhaustive()
    }
}

impl AppStore {
    /// Connects, creates the table (Sockudo's DDL, plus Herald's `decision_hooks`) when it is
    /// missing and `create_table` is on, and reads which columns it has. `defaults` are the
    /// file's global app defaults ([`crate::config::Config::app_defaults`]).
    pub async fn connect(
        config: &AppStoreConfig,
        defaults: AppDefaults,
    ) -> Result<AppStore, StoreError> {
        let backend = bounded(Backend::connect(config)).await?;
        let table = bounded(backend.open_table(config)).await?;
        Ok(AppStore {
            backend,
            table,
            defaults,
        })
    }

    /// The table's layout (Sockudo's or soketi's), as detected at connect.
    pub fn layout(&self) -> Layout {
        self.table.layout
    }

    /// The app whose key is `key` (exactly: a case-insensitive collation is not trusted).
    pub async fn by_key(&self, key: &str) -> Result<Option<AppConfig>, StoreError> {
        self.one("key", key).await
    }

    /// The app whose id is `id` (exactly).
    pub async fn by_id(&self, id: &str) -> Result<Option<AppConfig>, StoreError> {
        self.one("id", id).await
    }

    /// Every row of the table.
    pub async fn all(&self) -> Result<Listing, StoreError> {
        let rows = bounded(self.backend.select(&self.table, None)).await?;
        let mut listing = Listing::default();
        for cells in rows {
            match row::app(&self.table, cells, &self.defaults) {
                Ok(app) => listing.apps.push(app),
                Err(refusal) => listing.refused.push(refusal),
            }
        }
        Ok(listing)
    }

    /// Adds an app, validated first as a `config.json` app would be.
    pub async fn insert(&self, app: &AppDraft) -> Result<(), StoreError> {
        self.defaults
            .app_from_json("app", app.to_value())
            .map_err(StoreError::Invalid)?;
        let values = draft::insert_values(&self.table, app)?;
        bounded(self.backend.insert(&self.table, &values)).await
    }

    /// Changes the keys `changes` sets (a `null` clears one) of the app `id`; the app as
    /// changed is validated first. False when there is no such app. An app defined by its
    /// `policy` column can only have its `key`, `secret`, `enabled` and `decision_hooks`
    /// changed this way.
    pub async fn update(&self, id: &str, changes: &AppDraft) -> Result<bool, StoreError> {
        let rows = bounded(self.backend.select(&self.table, Some(("id", id)))).await?;
        let Some(current) = row::exact(&self.table, rows, "id", id) else {
            return Ok(false);
        };
        let merged = draft::merged(&self.table, current, changes)?;
        let path = "app";
        self.defaults
            .app_from_json(path, merged)
            .map_err(StoreError::Invalid)?;
        let values = draft::update_values(&self.table, changes)?;
        bounded(self.backend.update(&self.table, id, &values)).await
    }

    /// Deletes the app `id`; false when there was none.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        bounded(self.backend.delete(&self.table, id)).await
    }

    async fn one(&self, column: &str, value: &str) -> Result<Option<AppConfig>, StoreError> {
        let rows = bounded(self.backend.select(&self.table, Some((column, value)))).await?;
        let Some(cells) = row::exact(&self.table, rows, column, value) else {
            return Ok(None);
        };
        row::app(&self.table, cells, &self.defaults)
            .map(Some)
            .map_err(StoreError::Refused)
    }
}

/// `operation`, or [`StoreError::Unavailable`] once [`OPERATION_TIMEOUT`] has passed.
async fn bounded<T>(
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {} s",
            OPERATION_TIMEOUT.as_secs()
        ))),
    }
}
