//! Herald serving apps from a real PostgreSQL and a real MariaDB (the binary, a table written
//! while it runs): rows looked up on first use, changes within the cache TTL, the database
//! down and back, bad rows refused, a `policy` row's origins.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use herald::app_store::AppDraft;
use serde_json::{json, Value};

use super::mariadb_server::MariaDbServer;
use super::postgres_server::PostgresServer;
use super::probe_support::{connect_with, LoggedHerald, Outcome};
use super::receiver::Receiver;
use super::store_cases::{bounded, Db};
use super::support::*;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A database server the scenario can stop and start again.
trait Restartable {
    fn stop(&mut self);
    fn restart(&mut self);
}

impl Restartable for PostgresServer {
    fn stop(&mut self) {
        PostgresServer::stop(self)
    }
    fn restart(&mut self) {
        PostgresServer::restart(self)
    }
}

impl Restartable for MariaDbServer {
    fn stop(&mut self) {
        MariaDbServer::stop(self)
    }
    fn restart(&mut self) {
        MariaDbServer::restart(self)
    }
}

/// Herald's file for `db`: apps from its `applications` table, a 1 s cache, 300 ms for
/// unknown keys.
fn herald_config(db: &Db) -> Value {
    let section = if db.driver == "pgsql" {
        "postgres"
    } else {
        "mysql"
    };
    json!({
        "host": "127.0.0.1", "port": 0,
        "metrics": {"enabled": false},
        "webhooks": {"batching": {"enabled": false}},
        "app_manager": {"driver": db.driver, "cache": {"negative_ttl_ms": 300}},
        "database": {section: {"url": db.url, "cache_ttl": 1, "connection_pool_size": 2}},
    })
}

async fn outcome(herald: &LoggedHerald, key: &str, origin: Option<&str>) -> Outcome {
    let headers: Vec<(&'static str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
    connect_with(LOCAL, &herald.ws_url(key), &headers, WAIT).await
}

fn close_code(outcome: &Outcome) -> Option<u16> {
    match outcome {
        Outcome::Closed { code, .. } => *code,
        Outcome::Established => None,
    }
}

/// Retries `attempt` until it is true, for at most `bound` (a change lands within the TTL).
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(8);
    while !attempt().await {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A row written while Herald runs: connections, REST and webhooks signed with its secret, its
/// limits; then a new secret, `enabled: false` and a deleted row, each within the TTL.
async fn rows_take_effect_while_running(db: &Db) {
    let receiver = Receiver::start().await;
    let store = db.store("applications").await;
    let herald = LoggedHerald::start(&format!("stored-{}", db.driver), &herald_config(db));
    // An empty table: no app, not even the demo one.
    assert_eq!(
        close_code(&outcome(&herald, "app-key", None).await),
        Some(4001)
    );

    let hooks = json!([{"url": receiver.url("/w"), "event_types": ["channel_occupied"]}]);
    let app = AppDraft::new("app-1", "key-1", "secret-1")
        .with("max_connections", 2)
        .with("webhooks", hooks);
    store.insert(&app).await.unwrap();
    let mut first = Client::connect(&herald.ws_url("key-1")).await;
    first.subscribe("news").await;
    let delivered = receiver.wait_until(|got| !got.is_empty()).await;
    let request = &delivered[0];
    assert_eq!(request.header("x-pusher-key"), "key-1");
    let signature = hmac_hex("secret-1", &request.body);
    assert_eq!(request.header("x-pusher-signature"), signature);
    assert_eq!(
        trigger_as(&herald, "app-1", ("key-1", "secret-1"), "news").await,
        200
    );
    assert_eq!(first.recv_event("news").await["data"], "hello");
    // The row's limit: two connections.
    let _second = Client::connect(&herald.ws_url("key-1")).await;
    assert_eq!(
        close_code(&outcome(&herald, "key-1", None).await),
        Some(4004)
    );

    let rotated = AppDraft::changes().with("secret", "secret-2");
    assert!(store.update("app-1", &rotated).await.unwrap());
    eventually("the new secret", || async {
        trigger_as(&herald, "app-1", ("key-1", "secret-2"), "news").await == 200
    })
    .await;
    assert_eq!(first.recv_event("news").await["data"], "hello");
    assert_eq!(
        trigger_as(&herald, "app-1", ("key-1", "secret-1"), "news").await,
        401
    );
    // Webhooks are signed with the new secret too.
    first.subscribe("rotated").await;
    let rotated = |r: &crate::receiver::Received| r.body.contains("\"rotated\"");
    let delivered = receiver.wait_until(|got| got.iter().any(rotated)).await;
    let request = delivered.iter().find(|r| rotated(r)).unwrap();
    let signature = hmac_hex("secret-2", &request.body);
    assert_eq!(request.header("x-pusher-signature"), signature);

    let disabled = AppDraft::changes().with("enabled", false);
    assert!(store.update("app-1", &disabled).await.unwrap());
    assert_eq!(first.closed().await.code, Some(4003));
    let enabled = AppDraft::changes().with("enabled", true);
    assert!(store.update("app-1", &enabled).await.unwrap());
    eventually("the app enabled again", || async {
        matches!(outcome(&herald, "key-1", None).await, Outcome::Established)
    })
    .await;
    let again = Client::connect(&herald.ws_url("key-1")).await;
    assert!(store.remove("app-1").await.unwrap());
    assert_eq!(again.closed().await.code, Some(4003));
}

/// The database stopped: known apps keep working, unknown keys get 4100 and REST for an
/// unknown app 503; started again, new apps work.
async fn the_database_down_and_back(db: &Db, server: &mut dyn Restartable) {
    let store = db.store("applications").await;
    let herald = LoggedHerald::start(&format!("stored-down-{}", db.driver), &herald_config(db));
    store
        .insert(&AppDraft::new("app-3", "key-3", "secret-3"))
        .await
        .unwrap();
    Client::connect(&herald.ws_url("key-3"))
        .await
        .subscribe("a")
        .await;
    server.stop();
    // Past a refresh that finds the database gone: the app is still served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut known = Client::connect(&herald.ws_url("key-3")).await;
    known.subscribe("b").await;
    assert_eq!(
        trigger_as(&herald, "app-3", ("key-3", "secret-3"), "b").await,
        200
    );
    assert_eq!(known.recv_event("news").await["data"], "hello");
    assert_eq!(
        close_code(&outcome(&herald, "key-9", None).await),
        Some(4100)
    );
    assert_eq!(
        trigger_as(&herald, "app-9", ("key-9", "secret-9"), "b").await,
        503
    );

    server.restart();
    let store = db.store("applications").await;
    store
        .insert(&AppDraft::new("app-4", "key-4", "secret-4"))
        .await
        .unwrap();
    eventually("a new app after the database came back", || async {
        matches!(outcome(&herald, "key-4", None).await, Outcome::Established)
    })
    .await;
}

/// A row whose `webhooks` is not JSON is refused, logged with its app and column; a row whose
/// `policy` allows one origin (the flat column NULL) refuses the others.
async fn bad_rows_and_policy_rows(db: &Db) {
    db.store("applications").await;
    let herald = LoggedHerald::start(&format!("stored-rows-{}", db.driver), &herald_config(db));
    let (table, key) = (db.quote("applications"), db.quote("key"));
    let columns = format!("id, {key}, secret, max_connections, max_client_events_per_second");
    let policy = json!({"channels": {"allowed_origins": ["https://app.example"]}});
    // JSON (a JSONB column takes nothing else), but not webhooks: a URL must be a string.
    let bad_hooks = json!([{"url": 42}]);
    db.run(&[
        &format!("INSERT INTO {table} ({columns}, webhooks) VALUES ('app-5', 'key-5', 's', 0, 0, '{bad_hooks}')"),
        &format!("INSERT INTO {table} ({columns}, policy) VALUES ('app-6', 'key-6', 's', 0, 0, '{policy}')"),
    ])
    .await;
    assert_eq!(
        close_code(&outcome(&herald, "key-5", None).await),
        Some(4001)
    );
    let log = herald.log();
    assert!(log.contains("app-5") && log.contains("webhooks"), "{log}");
    let listed = outcome(&herald, "key-6", Some("https://app.example")).await;
    assert!(matches!(listed, Outcome::Established), "{listed:?}");
    let foreign = outcome(&herald, "key-6", Some("https://evil.example")).await;
    assert_eq!(close_code(&foreign), Some(4009));
}

mod postgres {
    use super::*;

    fn db(server: &PostgresServer) -> Db {
        super::super::store_postgres::db(server)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_apps_postgres_rows_take_effect_while_running() {
        let server = PostgresServer::start();
        bounded(rows_take_effect_while_running(&db(&server))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_apps_postgres_the_database_down_and_back() {
        let mut server = PostgresServer::start();
        let db = db(&server);
        bounded(the_database_down_and_back(&db, &mut server)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_apps_postgres_bad_rows_and_policy_rows() {
        let server = PostgresServer::start();
        bounded(bad_rows_and_policy_rows(&db(&server))).await;
    }
}

mod mariadb {
    use super::*;

    fn db(server: &MariaDbServer) -> Db {
        super::super::store_mariadb::db(server)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_apps_mariadb_rows_take_effect_while_running() {
        let server = MariaDbServer::start();
        bounded(rows_take_effect_while_running(&db(&server))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_apps_mariadb_the_database_down_and_back() {
        let mut server = MariaDbServer::start();
        let db = db(&server);
        bounded(the_database_down_and_back(&db, &mut server)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_apps_mariadb_bad_rows_and_policy_rows() {
        let server = MariaDbServer::start();
        bounded(bad_rows_and_policy_rows(&db(&server))).await;
    }
}

/// `herald apps` with `args`, on a config file holding `config`: (success, stdout + stderr).
fn herald_apps(dir: &std::path::Path, config: &Value, args: &[&str]) -> (bool, String) {
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--config")
        .arg(&path)
        .arg("apps")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("herald runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn stored_apps_cli_round_trip_on_postgres_and_a_refusal_with_the_memory_driver() {
    let server = PostgresServer::start();
    let db = super::store_postgres::db(&server);
    let config = herald_config(&db);
    let dir = std::env::temp_dir().join(format!("herald-apps-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let (ok, added) = herald_apps(&dir, &config, &["add", "app-7", "max_connections=5"]);
    assert!(ok, "{added}");
    let secret = added
        .lines()
        .find_map(|line| line.strip_prefix("secret (shown once): "))
        .expect("the secret is printed once")
        .to_owned();
    let (ok, listed) = herald_apps(&dir, &config, &["list"]);
    assert!(
        ok && listed.contains("app-7") && listed.contains("true"),
        "{listed}"
    );
    assert!(
        !listed.contains(&secret),
        "list never prints a secret: {listed}"
    );
    let (ok, set) = herald_apps(&dir, &config, &["set", "app-7", "enabled=false"]);
    assert!(ok, "{set}");
    let (_, listed) = herald_apps(&dir, &config, &["list"]);
    assert!(listed.contains("false"), "{listed}");
    let (ok, bad) = herald_apps(&dir, &config, &["set", "app-7", "max_connections=\"many\""]);
    assert!(!ok && bad.contains("max_connections"), "{bad}");
    let (ok, removed) = herald_apps(&dir, &config, &["remove", "app-7"]);
    assert!(ok, "{removed}");
    let (_, listed) = herald_apps(&dir, &config, &["list"]);
    assert!(!listed.contains("app-7"), "{listed}");

    let (ok, refused) = herald_apps(&dir, &base_config(), &["list"]);
    assert!(!ok && refused.contains("SIGHUP"), "{refused}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// soketi's variables alone pick a MariaDB app manager; soketi's `apps` table (its defaults:
/// table `apps`, -1 for unlimited) is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_apps_mariadb_soketi_variables_read_soketis_apps_table() {
    let server = MariaDbServer::start();
    let db = super::store_mariadb::db(&server);
    bounded(async {
        let columns = "id, `key`, secret, max_connections, enabled, enable_client_messages, \
            max_backend_events_per_sec, max_client_events_per_sec, max_read_req_per_sec, \
            enable_user_authentication";
        let insert = format!(
            "INSERT INTO `apps` ({columns}) VALUES ('soketi-app', 'soketi-key', 'soketi-secret', -1, 1, 1, -1, -1, -1, 0)"
        );
        db.run(&[db.soketi_ddl, &insert]).await;
        // mysql://user:password@127.0.0.1:port/database
        let rest = db.url.trim_start_matches("mysql://");
        let (credentials, place) = rest.split_once('@').unwrap();
        let (user, password) = credentials.split_once(':').unwrap();
        let (address, database) = place.split_once('/').unwrap();
        let port = address.rsplit_once(':').unwrap().1;
        let envs = [
            ("SOKETI_APP_MANAGER_DRIVER", "mysql"),
            ("SOKETI_DB_MYSQL_HOST", "127.0.0.1"),
            ("SOKETI_DB_MYSQL_PORT", port),
            ("SOKETI_DB_MYSQL_USERNAME", user),
            ("SOKETI_DB_MYSQL_PASSWORD", password),
            ("SOKETI_DB_MYSQL_DATABASE", database),
        ];
        let file = json!({"host": "127.0.0.1", "port": 0, "metrics": {"enabled": false}});
        let herald = LoggedHerald::start_with_env("soketi-mariadb", &file, &[], &envs);
        let mut client = Client::connect(&herald.ws_url("soketi-key")).await;
        client.subscribe("room").await;
        let credentials = ("soketi-key", "soketi-secret");
        assert_eq!(trigger_as(&herald, "soketi-app", credentials, "room").await, 200);
        assert_eq!(client.recv_event("news").await["data"], "hello");
    })
    .await;
}
