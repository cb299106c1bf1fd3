//! PostgreSQL: the pool and the two ways a statement runs (rows back, or a count).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};

use super::cell::{self, Cell};

/// Sockudo's table, created when missing.
pub(super) const CREATE_TABLE: &str = include_str!("sql/postgres_applications.sql");
/// A table's columns.
pub(super) const COLUMNS: &str = include_str!("sql/postgres_columns.sql");

/// A bounded pool that gives up on a connection after `timeout`; the server also ends any
/// statement that runs longer than the store's operation bound.
pub(super) async fn connect(
    url: &str,
    pool_size: u32,
    timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let statement_timeout = super::OPERATION_TIMEOUT.as_millis().to_string();
    let options = PgConnectOptions::from_str(url)?
        .application_name("herald")
        .options([("statement_timeout", statement_timeout.as_str())])
        .disable_statement_logging();
    PgPoolOptions::new()
        .max_connections(pool_size)
        .min_connections(0)
        .acquire_timeout(timeout)
        .idle_timeout(Some(Duration::from_secs(180)))
        .connect_with(options)
        .await
}

/// Runs `sql` with `binds` ($1, $2, ...) and decodes every row.
pub(super) async fn fetch(
    pool: &PgPool,
    sql: &str,
    binds: &[Option<String>],
) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(bind.as_deref());
    }
    let rows = query.fetch_all(pool).await?;
    let cells =
        |row: &sqlx::postgres::PgRow| (0..row.len()).map(|i| cell::postgres(row, i)).collect();
    Ok(rows.iter().map(cells).collect())
}

/// Runs `sql` with `binds`; the rows it affected.
pub(super) async fn execute(
    pool: &PgPool,
    sql: &str,
    binds: &[Option<String>],
) -> Result<u64, sqlx::Error> {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(bind.as_deref());
    }
    Ok(query.execute(pool).await?.rows_affected())
}
