//! Where apps come from: `app_manager.driver` with `database.postgres` / `database.mysql` and
//! `app_manager.cache`, validated into an [`AppStoreConfig`] (Sockudo 5.2's keys, plus Herald's
//! `url`, `create_table` and `app_manager.cache.negative_ttl_ms`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::raw::RawConfig;
use super::sections::seconds;
use super::{lenient, redacted, ConfigError};

/// `database.postgres` / `database.mysql` as written (Sockudo's `DatabaseConnection`).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawDatabaseConnection {
    pub url: Option<String>,
    pub host: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub port: Option<u16>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub username: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub password: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub database: Option<String>,
    pub table_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub connection_pool_size: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub cache_ttl: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub create_table: Option<bool>,
}

/// `app_manager.cache` as written.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAppCache {
    #[serde(deserialize_with = "lenient::opt")]
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub ttl: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub negative_ttl_ms: Option<u64>,
}

/// Which database holds the apps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppStoreDriver {
    /// PostgreSQL (`app_manager.driver` `pgsql`, `postgres` or `postgresql`).
    Postgres,
    /// MySQL or MariaDB (`mysql`).
    MySql,
}

impl AppStoreDriver {
    /// The section of `database` this driver reads.
    pub fn section(self) -> &'static str {
        match self {
            AppStoreDriver::Postgres => "database.postgres",
            AppStoreDriver::MySql => "database.mysql",
        }
    }
}

/// How long apps read from the database are kept (`app_manager.cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppCacheConfig {
    /// `app_manager.cache.enabled` (default true).
    pub enabled: bool,
    /// How long a found app is kept: `database.<driver>.cache_ttl`, else
    /// `app_manager.cache.ttl` (default 300 s).
    pub ttl: Duration,
    /// How long "no such app" is kept, so unknown keys cannot hammer the database
    /// (`app_manager.cache.negative_ttl_ms`, default 5000; 0 keeps none).
    pub negative_ttl: Duration,
}

/// The database apps are read from and written to.
#[derive(Clone, PartialEq, Eq)]
pub struct AppStoreConfig {
    /// PostgreSQL or MySQL/MariaDB.
    pub driver: AppStoreDriver,
    /// Connection URL with credentials (`postgres://...` / `mysql://...`): `url` as written,
    /// or built from `host`, `port`, `username`, `password`, `database`. Never logged as is.
    pub url: String,
    /// The table (`table_name`, default `applications`): a plain identifier.
    pub table: String,
    /// Connections the pool keeps at most (`connection_pool_size`, default 10).
    pub pool_size: u32,
    /// Create the table (Sockudo's DDL) when it is missing (`create_table`, default true).
    pub create_table: bool,
    /// The app cache.
    pub cache: AppCacheConfig,
}

impl fmt::Debug for AppStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppStoreConfig")
            .field("driver", &self.driver)
            .field("url", &redacted(&self.url))
            .field("table", &self.table)
            .field("pool_size", &self.pool_size)
            .field("create_table", &self.create_table)
            .field("cache", &self.cache)
            .finish()
    }
}

/// Largest `connection_pool_size`: more would only queue in the database.
const MAX_POOL_SIZE: u64 = 1000;

/// The driver named by `app_manager.driver`: `None` for the file (`memory`/`array`/absent).
fn driver(raw: &RawConfig) -> Result<Option<AppStoreDriver>, ConfigError> {
    let Some(name) = raw.app_manager.driver.as_deref() else {
        return Ok(None);
    };
    match name.trim().to_ascii_lowercase().as_str() {
        "memory" | "array" => Ok(None),
        "pgsql" | "postgres" | "postgresql" => Ok(Some(AppStoreDriver::Postgres)),
        "mysql" => Ok(Some(AppStoreDriver::MySql)),
        _ => Err(ConfigError::invalid(
            "app_manager.driver",
            format!(
                "{name:?} is not supported: Herald reads apps from the file (\"memory\"), \
                 PostgreSQL (\"pgsql\") or MySQL/MariaDB (\"mysql\")"
            ),
        )),
    }
}

/// The app store of `app_manager.driver`, or `None` when apps come from the file.
pub(super) fn app_store(raw: &RawConfig) -> Result<Option<AppStoreConfig>, ConfigError> {
    let Some(driver) = driver(raw)? else {
        return Ok(None);
    };
    let section = driver.section();
    let connection = match driver {
        AppStoreDriver::Postgres => &raw.database.postgres,
        AppStoreDriver::MySql => &raw.database.mysql,
    };
    let key = |name: &str| format!("{section}.{name}");
    let cache = &raw.app_manager.cache;
    let ttl = match connection.cache_ttl {
        Some(ttl) => seconds(&key("cache_ttl"), Some(ttl), 300)?,
        None => seconds("app_manager.cache.ttl", cache.ttl, 300)?,
    };
    let negative_ttl = Duration::from_millis(cache.negative_ttl_ms.unwrap_or(5000));
    if negative_ttl > Duration::from_secs(86_400) {
        return Err(ConfigError::invalid(
            "app_manager.cache.negative_ttl_ms",
            "is over the limit of one day",
        ));
    }
    let pool_size = match connection.connection_pool_size.unwrap_or(10) {
        n @ 1..=MAX_POOL_SIZE => n as u32,
        n => {
            return Err(ConfigError::invalid(
                &key("connection_pool_size"),
                format!("must be between 1 and {MAX_POOL_SIZE}, got {n}"),
            ))
        }
    };
    Ok(Some(AppStoreConfig {
        driver,
        url: url(driver, connection)?,
        table: table_name(&key("table_name"), connection.table_name.as_deref())?,
        pool_size,
        create_table: connection.create_table.unwrap_or(true),
        cache: AppCacheConfig {
            enabled: cache.enabled.unwrap_or(true),
            ttl,
            negative_ttl,
        },
    }))
}

/// The table name, checked to be a plain identifier: it is written into SQL as is.
fn table_name(path: &str, value: Option<&str>) -> Result<String, ConfigError> {
    let name = value.unwrap_or("applications");
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(ConfigError::invalid(
            path,
            format!("{name:?} is not a plain table name (letters, digits and '_', at most 63)"),
        ));
    }
    Ok(name.to_owned())
}

/// The connection URL: `url` when given, else one built from the separate keys (Sockudo's
/// defaults: `root@localhost`, database `sockudo`; port 5432 or 3306). Checked by the driver's
/// own parser, so a bad URL stops start-up rather than the first lookup.
fn url(driver: AppStoreDriver, raw: &RawDatabaseConnection) -> Result<String, ConfigError> {
    let section = driver.section();
    let (schemes, port): (&[&str], u16) = match driver {
        AppStoreDriver::Postgres => (&["postgres", "postgresql"], 5432),
        AppStoreDriver::MySql => (&["mysql", "mariadb"], 3306),
    };
    let (path, url) = match &raw.url {
        Some(url) => (format!("{section}.url"), url.trim().to_owned()),
        None => {
            let encode = |text: &str| utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
            let host = raw.host.as_deref().unwrap_or("localhost");
            let host = match host.contains(':') && !host.starts_with('[') {
                true => format!("[{host}]"),
                false => host.to_owned(),
            };
            let url = format!(
                "{}://{}:{}@{host}:{}/{}",
                schemes[0],
                encode(raw.username.as_deref().unwrap_or("root")),
                encode(raw.password.as_deref().unwrap_or("")),
                raw.port.unwrap_or(port),
                encode(raw.database.as_deref().unwrap_or("sockudo")),
            );
            (format!("{section}.host"), url)
        }
    };
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !scheme.is_some_and(|scheme| schemes.contains(&scheme)) {
        return Err(ConfigError::invalid(
            &path,
            format!(
                "{:?} must start with {}://",
                redacted(&url),
                schemes.join(":// or ")
            ),
        ));
    }
    let parsed = match driver {
        AppStoreDriver::Postgres => sqlx::postgres::PgConnectOptions::from_str(&url).err(),
        AppStoreDriver::MySql => sqlx::mysql::MySqlConnectOptions::from_str(&url).err(),
    };
    match parsed {
        // The parser's message can quote the URL: only the redacted one is shown.
        Some(e) => Err(ConfigError::invalid(
            &path,
            format!("{:?} is not a valid connection URL ({})", redacted(&url), {
                let message = e.to_string();
                match message.contains(&url) {
                    true => "cannot be parsed".to_owned(),
                    false => message,
                }
            }),
        )),
        None => Ok(url),
    }
}
