//! MySQL and MariaDB: the pool and the two ways a statement runs (rows back, or a count).

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions, Row};

use super::cell::{self, Cell};

/// Sockudo's table, created when missing.
pub(super) const CREATE_TABLE: &str = include_str!("sql/mysql_applications.sql");
/// A table's columns.
pub(super) const COLUMNS: &str = include_str!("sql/mysql_columns.sql");

/// A bounded pool (MySQL 8's `caching_sha2_password` and MariaDB's native passwords alike).
pub(super) async fn connect(
    url: &str,
    pool_size: u32,
    timeout: Duration,
) -> Result<MySqlPool, sqlx::Error> {
    let options = MySqlConnectOptions::from_str(url)?.disable_statement_logging();
    MySqlPoolOptions::new()
        .max_connections(pool_size)
        .min_connections(0)
        .acquire_timeout(timeout)
        .idle_timeout(Some(Duration::from_secs(180)))
        .connect_with(options)
        .await
}

/// Runs `sql` with `binds` (?, ?, ...) and decodes every row.
pub(super) async fn fetch(
    pool: &MySqlPool,
    sql: &str,
    binds: &[Option<String>],
) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(bind.as_deref());
    }
    let rows = query.fetch_all(pool).await?;
    let cells = |row: &sqlx::mysql::MySqlRow| (0..row.len()).map(|i| cell::mysql(row, i)).collect();
    Ok(rows.iter().map(cells).collect())
}

/// Runs `sql` with `binds`; the rows it affected.
pub(super) async fn execute(
    pool: &MySqlPool,
    sql: &str,
    binds: &[Option<String>],
) -> Result<u64, sqlx::Error> {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(bind.as_deref());
    }
    Ok(query.execute(pool).await?.rows_affected())
}
