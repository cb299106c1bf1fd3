//! The app store against a private MariaDB (the scenarios are in `store_cases`).

use super::mariadb_server::MariaDbServer;
use super::store_cases::{self, bounded, Db};

/// Sockudo 5.2.0's `CREATE TABLE` (`sockudo-app/src/mysql_app_manager.rs`).
const SOCKUDO_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS `{table}` (
    id VARCHAR(255) CHARACTER SET ascii COLLATE ascii_general_ci PRIMARY KEY,
    `key` VARCHAR(255) CHARACTER SET ascii COLLATE ascii_general_ci UNIQUE NOT NULL,
    secret VARCHAR(255) NOT NULL,
    max_connections INT UNSIGNED NOT NULL,
    enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    max_backend_events_per_second INT UNSIGNED NULL,
    max_client_events_per_second INT UNSIGNED NOT NULL,
    max_read_requests_per_second INT UNSIGNED NULL,
    max_presence_members_per_channel INT UNSIGNED NULL,
    max_presence_member_size_in_kb INT UNSIGNED NULL,
    max_channel_name_length INT UNSIGNED NULL,
    max_event_channels_at_once INT UNSIGNED NULL,
    max_event_name_length INT UNSIGNED NULL,
    max_event_payload_in_kb INT UNSIGNED NULL,
    max_event_batch_size INT UNSIGNED NULL,
    enable_user_authentication BOOLEAN NULL,
    enable_watchlist_events BOOLEAN NULL,
    policy JSON NULL,
    webhooks JSON NULL,
    allowed_origins JSON NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"#;

/// Sockudo 2.5's `CREATE TABLE`: no `policy`, `webhooks`, `allowed_origins` or watchlist.
const OLDER_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS `{table}` (
    id VARCHAR(255) PRIMARY KEY,
    `key` VARCHAR(255) UNIQUE NOT NULL,
    secret VARCHAR(255) NOT NULL,
    max_connections INT UNSIGNED NOT NULL,
    enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    max_backend_events_per_second INT UNSIGNED NULL,
    max_client_events_per_second INT UNSIGNED NOT NULL,
    max_read_requests_per_second INT UNSIGNED NULL,
    max_presence_members_per_channel INT UNSIGNED NULL,
    max_presence_member_size_in_kb INT UNSIGNED NULL,
    max_channel_name_length INT UNSIGNED NULL,
    max_event_channels_at_once INT UNSIGNED NULL,
    max_event_name_length INT UNSIGNED NULL,
    max_event_payload_in_kb INT UNSIGNED NULL,
    max_event_batch_size INT UNSIGNED NULL,
    enable_user_authentication BOOLEAN NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"#;

/// soketi's `apps` (`tests/fixtures/mysql_schema.sql` of its last commit).
const SOKETI_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS `apps` (
    `id` varchar(255) NOT NULL,
    `key` varchar(255) NOT NULL,
    `secret` varchar(255) NOT NULL,
    `max_connections` integer(10) NOT NULL,
    `enabled` tinyint(1) NOT NULL,
    `enable_client_messages` tinyint(1) NOT NULL,
    `max_backend_events_per_sec` integer(10) NOT NULL,
    `max_client_events_per_sec` integer(10) NOT NULL,
    `max_read_req_per_sec` integer(10) NOT NULL,
    `webhooks` json,
    `max_presence_members_per_channel` tinyint(1) NULL,
    `max_presence_member_size_in_kb` tinyint(1) NULL,
    `max_channel_name_length` tinyint(1) NULL,
    `max_event_channels_at_once` tinyint(1) NULL,
    `max_event_name_length` tinyint(1) NULL,
    `max_event_payload_in_kb` tinyint(1) NULL,
    `max_event_batch_size` tinyint(1) NULL,
    `enable_user_authentication` tinyint(1) NOT NULL,
    PRIMARY KEY (`id`)
)"#;

pub fn db(server: &MariaDbServer) -> Db {
    Db {
        driver: "mysql",
        url: server.url(),
        sockudo_ddl: SOCKUDO_DDL,
        older_ddl: OLDER_DDL,
        soketi_ddl: SOKETI_DDL,
    }
}

#[tokio::test]
async fn creates_the_table_then_writes_and_reads_apps() {
    let server = MariaDbServer::start();
    bounded(store_cases::creates_the_table_then_writes_and_reads_apps(
        &db(&server),
    ))
    .await;
}

#[tokio::test]
async fn reads_sockudo_older_and_soketi_tables() {
    let server = MariaDbServer::start();
    bounded(store_cases::reads_sockudo_older_and_soketi_tables(&db(
        &server,
    )))
    .await;
}

#[tokio::test]
async fn lookups_fail_fast_once_the_server_is_stopped() {
    let mut server = MariaDbServer::start();
    let db = db(&server);
    bounded(store_cases::lookups_fail_fast_once_the_server_is_stopped(
        &db,
        || server.stop(),
    ))
    .await;
}
