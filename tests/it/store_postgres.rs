//! The app store against a private PostgreSQL (the scenarios are in `store_cases`).

use herald::app_store::{AppDraft, StoreError};

use super::postgres_server::PostgresServer;
use super::store_cases::{self, bounded, Db};
use super::tls_support::Certs;

/// Sockudo 5.2.0's `CREATE TABLE` (`sockudo-app/src/pg_app_manager.rs`).
const SOCKUDO_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS {table} (
    id VARCHAR(255) PRIMARY KEY,
    key VARCHAR(255) UNIQUE NOT NULL,
    secret VARCHAR(255) NOT NULL,
    max_connections INTEGER NOT NULL,
    enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    max_backend_events_per_second INTEGER,
    max_client_events_per_second INTEGER NOT NULL,
    max_read_requests_per_second INTEGER,
    max_presence_members_per_channel INTEGER,
    max_presence_member_size_in_kb INTEGER,
    max_channel_name_length INTEGER,
    max_event_channels_at_once INTEGER,
    max_event_name_length INTEGER,
    max_event_payload_in_kb INTEGER,
    max_event_batch_size INTEGER,
    enable_user_authentication BOOLEAN,
    enable_watchlist_events BOOLEAN,
    policy JSONB,
    webhooks JSONB,
    allowed_origins JSONB,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)"#;

/// Sockudo 2.5's `CREATE TABLE`: no `policy`, `webhooks` or `allowed_origins`.
const OLDER_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS {table} (
    id VARCHAR(255) PRIMARY KEY,
    key VARCHAR(255) UNIQUE NOT NULL,
    secret VARCHAR(255) NOT NULL,
    max_connections INTEGER NOT NULL,
    enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    max_backend_events_per_second INTEGER,
    max_client_events_per_second INTEGER NOT NULL,
    max_read_requests_per_second INTEGER,
    max_presence_members_per_channel INTEGER,
    max_presence_member_size_in_kb INTEGER,
    max_channel_name_length INTEGER,
    max_event_channels_at_once INTEGER,
    max_event_name_length INTEGER,
    max_event_payload_in_kb INTEGER,
    max_event_batch_size INTEGER,
    enable_user_authentication BOOLEAN,
    enable_watchlist_events BOOLEAN,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)"#;

/// soketi's `apps` (`tests/fixtures/postgres_schema.sql` of its last commit).
const SOKETI_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS apps (
    id varchar(255) PRIMARY KEY,
    "key" varchar(255) NOT NULL,
    secret varchar(255) NOT NULL,
    max_connections integer NOT NULL,
    enable_client_messages smallint NOT NULL,
    "enabled" smallint NOT NULL,
    max_backend_events_per_sec integer NOT NULL,
    max_client_events_per_sec integer NOT NULL,
    max_read_req_per_sec integer NOT NULL,
    webhooks json,
    max_presence_members_per_channel integer DEFAULT NULL,
    max_presence_member_size_in_kb integer DEFAULT NULL,
    max_channel_name_length integer DEFAULT NULL,
    max_event_channels_at_once integer DEFAULT NULL,
    max_event_name_length integer DEFAULT NULL,
    max_event_payload_in_kb integer DEFAULT NULL,
    max_event_batch_size integer DEFAULT NULL,
    enable_user_authentication smallint NOT NULL
)"#;

pub fn db(server: &PostgresServer) -> Db {
    Db {
        driver: "pgsql",
        url: server.url(),
        sockudo_ddl: SOCKUDO_DDL,
        older_ddl: OLDER_DDL,
        soketi_ddl: SOKETI_DDL,
    }
}

#[tokio::test]
async fn creates_the_table_then_writes_and_reads_apps() {
    let server = PostgresServer::start();
    bounded(store_cases::creates_the_table_then_writes_and_reads_apps(
        &db(&server),
    ))
    .await;
}

#[tokio::test]
async fn reads_sockudo_older_and_soketi_tables() {
    let server = PostgresServer::start();
    bounded(store_cases::reads_sockudo_older_and_soketi_tables(&db(
        &server,
    )))
    .await;
}

#[tokio::test]
async fn lookups_fail_fast_once_the_server_is_stopped() {
    let mut server = PostgresServer::start();
    let db = db(&server);
    bounded(store_cases::lookups_fail_fast_once_the_server_is_stopped(
        &db,
        || server.stop(),
    ))
    .await;
}

/// TLS to the database through the URL's query: `verify-full` against the test CA works,
/// `require` works, and `verify-full` without the CA is refused as unavailable.
#[tokio::test]
async fn tls_to_the_database_is_set_in_the_url() {
    let certs = Certs::make("store-postgres");
    let server = PostgresServer::start_tls(&certs);
    bounded(async {
        let ca = certs.path("ca.pem");
        let mut db = db(&server);
        db.url = format!("{}?sslmode=verify-full&sslrootcert={ca}", server.url());
        let store = db.store("applications").await;
        store
            .insert(&AppDraft::new("tls", "tls-key", "s"))
            .await
            .unwrap();
        db.url = format!("{}?sslmode=require", server.url());
        let store = db.store("applications").await;
        assert!(store.by_key("tls-key").await.unwrap().is_some());
        db.url = format!("{}?sslmode=verify-full", server.url());
        let config = db.config("applications", true);
        let refused = herald::app_store::AppStore::connect(
            config.app_store.as_ref().unwrap(),
            config.app_defaults.clone(),
        )
        .await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
    })
    .await;
}
