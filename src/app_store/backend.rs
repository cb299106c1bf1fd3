//! The database behind the store: the statements Herald runs on an app table, written once
//! for both dialects (quoting, placeholders, casts) and run on PostgreSQL or MySQL/MariaDB.

use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;

use super::cell::Cell;
use super::columns::{ColumnInfo, Table};
use super::draft::Values;
use super::{mysql, postgres, StoreError, CONNECT_TIMEOUT};
use crate::config::{AppStoreConfig, AppStoreDriver};

/// A pool on one of the two databases.
pub(super) enum Backend {
    Postgres(PgPool),
    MySql(MySqlPool),
}

impl Backend {
    /// Opens the pool (and one connection, to fail now rather than at the first lookup).
    pub async fn connect(config: &AppStoreConfig) -> Result<Backend, StoreError> {
        let (url, size) = (&config.url, config.pool_size);
        let unavailable = |e: sqlx::Error| StoreError::Unavailable(e.to_string());
        Ok(match config.driver {
            AppStoreDriver::Postgres => Backend::Postgres(
                postgres::connect(url, size, CONNECT_TIMEOUT)
                    .await
                    .map_err(unavailable)?,
            ),
            AppStoreDriver::MySql => Backend::MySql(
                mysql::connect(url, size, CONNECT_TIMEOUT)
                    .await
                    .map_err(unavailable)?,
            ),
        })
    }

    /// The app table and its columns, created first when missing (unless `create_table` is
    /// off). PostgreSQL folds an unquoted name to lower case, as Sockudo writes it.
    pub async fn open_table(&self, config: &AppStoreConfig) -> Result<Table, StoreError> {
        let name = match self {
            Backend::Postgres(_) => config.table.to_ascii_lowercase(),
            Backend::MySql(_) => config.table.clone(),
        };
        let mut found = self.columns(&name).await?;
        if found.is_empty() {
            if !config.create_table {
                return Err(StoreError::MissingTable { table: name });
            }
            let create = match self {
                Backend::Postgres(_) => postgres::CREATE_TABLE,
                Backend::MySql(_) => mysql::CREATE_TABLE,
            };
            self.execute(&create.replace("{table}", &name), &[]).await?;
            found = self.columns(&name).await?;
        }
        Table::new(&name, found)
    }

    async fn columns(&self, table: &str) -> Result<Vec<ColumnInfo>, StoreError> {
        let sql = match self {
            Backend::Postgres(_) => postgres::COLUMNS,
            Backend::MySql(_) => mysql::COLUMNS,
        };
        let rows = self.fetch(sql, &[Some(table.to_owned())]).await?;
        let text = |cell: &Cell| match cell {
            Cell::Text(text) => text.clone(),
            _ => String::new(),
        };
        let rows = rows.into_iter().map(|row| ColumnInfo {
            name: text(&row[0]),
            data_type: text(&row[1]),
            required: matches!(row[2], Cell::Bool(true) | Cell::Int(1..)),
        });
        Ok(rows.collect())
    }

    /// The known columns of every row, or of the rows whose `key` column equals `value`.
    pub async fn select(
        &self,
        table: &Table,
        filter: Option<(&str, &str)>,
    ) -> Result<Vec<Vec<Cell>>, StoreError> {
        let names: Vec<String> = table.columns.iter().map(|c| self.quote(&c.name)).collect();
        let mut sql = format!(
            "SELECT {} FROM {}",
            names.join(", "),
            self.table_name(table)
        );
        let mut binds = Vec::new();
        if let Some((key, value)) = filter {
            let column = table.column(key).expect("id and key columns exist");
            sql += &format!(
                " WHERE {} = {}",
                self.quote(&column.name),
                self.param(1, None)
            );
            binds.push(Some(value.to_owned()));
        }
        self.fetch(&sql, &binds).await
    }

    /// Adds a row.
    pub async fn insert(&self, table: &Table, values: &Values<'_>) -> Result<(), StoreError> {
        let names: Vec<String> = values.iter().map(|(c, _)| self.quote(&c.name)).collect();
        let params: Vec<String> = (values.iter().enumerate())
            .map(|(i, (c, _))| self.param(i + 1, Some(&c.data_type)))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.table_name(table),
            names.join(", "),
            params.join(", ")
        );
        let binds: Vec<Option<String>> = values.iter().map(|(_, v)| v.clone()).collect();
        self.execute(&sql, &binds).await.map(drop)
    }

    /// Sets `values` on the row `id`; false when there is none.
    pub async fn update(
        &self,
        table: &Table,
        id: &str,
        values: &Values<'_>,
    ) -> Result<bool, StoreError> {
        if values.is_empty() {
            return Ok(true);
        }
        let sets: Vec<String> = (values.iter().enumerate())
            .map(|(i, (c, _))| {
                let param = self.param(i + 1, Some(&c.data_type));
                format!("{} = {param}", self.quote(&c.name))
            })
            .collect();
        let id_column = table.column("id").expect("an id column exists");
        let sql = format!(
            "UPDATE {} SET {} WHERE {} = {}",
            self.table_name(table),
            sets.join(", "),
            self.quote(&id_column.name),
            self.param(values.len() + 1, None)
        );
        let mut binds: Vec<Option<String>> = values.iter().map(|(_, v)| v.clone()).collect();
        binds.push(Some(id.to_owned()));
        Ok(self.execute(&sql, &binds).await? > 0)
    }

    /// Deletes the row `id`; false when there was none.
    pub async fn delete(&self, table: &Table, id: &str) -> Result<bool, StoreError> {
        let id_column = table.column("id").expect("an id column exists");
        let sql = format!(
            "DELETE FROM {} WHERE {} = {}",
            self.table_name(table),
            self.quote(&id_column.name),
            self.param(1, None)
        );
        Ok(self.execute(&sql, &[Some(id.to_owned())]).await? > 0)
    }

    /// The table's name as written in a statement (already checked to be an identifier).
    fn table_name(&self, table: &Table) -> String {
        match self {
            Backend::Postgres(_) => table.name.clone(),
            Backend::MySql(_) => format!("`{}`", table.name),
        }
    }

    /// A column name, quoted (it is one the database itself listed).
    fn quote(&self, name: &str) -> String {
        match self {
            Backend::Postgres(_) => format!("\"{}\"", name.replace('"', "\"\"")),
            Backend::MySql(_) => format!("`{}`", name.replace('`', "``")),
        }
    }

    /// Placeholder `n` (from 1), cast from text to `data_type` where PostgreSQL needs it.
    fn param(&self, n: usize, data_type: Option<&str>) -> String {
        match (self, data_type) {
            (Backend::Postgres(_), Some(data_type)) => {
                format!("CAST(${n} AS {})", self.quote(data_type))
            }
            (Backend::Postgres(_), None) => format!("${n}"),
            (Backend::MySql(_), _) => "?".to_owned(),
        }
    }

    async fn fetch(
        &self,
        sql: &str,
        binds: &[Option<String>],
    ) -> Result<Vec<Vec<Cell>>, StoreError> {
        match self {
            Backend::Postgres(pool) => postgres::fetch(pool, sql, binds).await,
            Backend::MySql(pool) => mysql::fetch(pool, sql, binds).await,
        }
        .map_err(error)
    }

    async fn execute(&self, sql: &str, binds: &[Option<String>]) -> Result<u64, StoreError> {
        match self {
            Backend::Postgres(pool) => postgres::execute(pool, sql, binds).await,
            Backend::MySql(pool) => mysql::execute(pool, sql, binds).await,
        }
        .map_err(error)
    }
}

/// A failed statement: the database refused it, or could not be reached.
fn error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        sqlx::Error::Database(db) => StoreError::Database(db.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}
