//! The app store's scenarios, run against a real PostgreSQL (`store_postgres`) and a real
//! MariaDB (`store_mariadb`): each database supplies its DDL; the expectations are the same.

use std::future::Future;
use std::time::{Duration, Instant};

use herald::app_store::{AppDraft, AppStore, Layout, StoreError, CONNECT_TIMEOUT};
use herald::config::{AppConfig, Config, WebhookTarget};
use serde_json::json;
use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;

/// One database under test: how to reach it, and its dialect's DDL.
pub struct Db {
    /// `pgsql` or `mysql`.
    pub driver: &'static str,
    pub url: String,
    /// Sockudo 5.2.0's exact `applications` DDL, `{table}` for the name.
    pub sockudo_ddl: &'static str,
    /// Sockudo's older DDL, without `policy` (nor the later JSON columns).
    pub older_ddl: &'static str,
    /// soketi's `apps` DDL.
    pub soketi_ddl: &'static str,
}

/// No scenario runs longer than this.
const TEST_BOUND: Duration = Duration::from_secs(60);

pub async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_BOUND, test)
        .await
        .expect("the test finished within its bound");
}

impl Db {
    /// The file that points Herald at this database's `table`.
    pub fn config(&self, table: &str, create_table: bool) -> Config {
        let section = match self.driver {
            "pgsql" => "postgres",
            _ => "mysql",
        };
        let file = json!({
            "presence": {"max_members_per_channel": 42},
            "app_manager": {"driver": self.driver},
            "database": {section: {"url": self.url, "table_name": table,
                                   "create_table": create_table, "connection_pool_size": 2}},
        });
        Config::from_json(&file.to_string()).expect("a valid config")
    }

    pub async fn store(&self, table: &str) -> AppStore {
        let config = self.config(table, true);
        let store = config.app_store.as_ref().unwrap();
        AppStore::connect(store, config.app_defaults.clone())
            .await
            .expect("the store connects")
    }

    /// Runs SQL statements directly (fixtures), one per `;`-free string.
    pub async fn run(&self, statements: &[&str]) {
        match self.driver {
            "pgsql" => {
                let pool = PgPool::connect(&self.url).await.expect("connect");
                for sql in statements {
                    sqlx::query(sql).execute(&pool).await.expect(sql);
                }
                pool.close().await;
            }
            _ => {
                let pool = MySqlPool::connect(&self.url).await.expect("connect");
                for sql in statements {
                    sqlx::query(sql).execute(&pool).await.expect(sql);
                }
                pool.close().await;
            }
        }
    }

    /// `name` quoted as an identifier in this dialect.
    pub fn quote(&self, name: &str) -> String {
        match self.driver {
            "pgsql" => format!("\"{name}\""),
            _ => format!("`{name}`"),
        }
    }
}

fn url_of(app: &AppConfig, i: usize) -> &str {
    match &app.webhooks[i].target {
        WebhookTarget::Url(url) => url,
        other => panic!("not a URL target: {other:?}"),
    }
}

/// `create_table: false` on a missing table is a clear error; then the table is created, and
/// apps go in, read back as they went in, change, and go.
pub async fn creates_the_table_then_writes_and_reads_apps(db: &Db) {
    let config = db.config("applications", false);
    let store = config.app_store.as_ref().unwrap();
    let missing = AppStore::connect(store, config.app_defaults.clone()).await;
    match missing {
        Err(StoreError::MissingTable { table }) => assert_eq!(table, "applications"),
        other => panic!("expected MissingTable, got {other:?}"),
    }

    let store = db.store("applications").await;
    assert_eq!(store.layout(), Layout::Sockudo);
    assert!(store.all().await.unwrap().apps.is_empty());
    let webhooks = json!([{"url": "https://hooks.example/in", "event_types": ["channel_occupied"],
                           "filter": {"channel_prefix": "private-"}}]);
    let app = AppDraft::new("app-1", "key-1", "secret-1")
        .with("max_connections", 100)
        .with("enable_client_messages", true)
        .with("max_client_events_per_second", 7)
        .with("max_event_payload_in_kb", 4)
        .with("webhooks", webhooks)
        .with("allowed_origins", json!(["https://a.example"]))
        .with(
            "decision_hooks",
            json!({"url": "https://hooks.example/decide", "events": ["connection_starting"]}),
        );
    store.insert(&app).await.expect("insert");
    let again = store
        .insert(&AppDraft::new("app-2", "key-1", "other"))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let bad = store
        .insert(&AppDraft::new("app-3", "key-3", "s").with("max_event_batch_size", 0))
        .await;
    match bad {
        Err(StoreError::Invalid(e)) => assert_eq!(e.path, "app.max_event_batch_size"),
        other => panic!("expected Invalid, got {other:?}"),
    }

    let read = store.by_key("key-1").await.unwrap().expect("the app");
    assert_eq!(
        (read.id.as_str(), read.secret.as_str()),
        ("app-1", "secret-1")
    );
    assert!(read.enabled && read.enable_client_messages);
    assert_eq!(read.max_connections, Some(100));
    assert_eq!(read.max_client_events_per_second, Some(7));
    assert_eq!(read.max_event_payload, 4 * 1024);
    assert_eq!(
        read.max_presence_members_per_channel, 42,
        "the file's default"
    );
    assert_eq!(url_of(&read, 0), "https://hooks.example/in");
    assert_eq!(read.webhooks[0].channel_prefix.as_deref(), Some("private-"));
    assert!(read.allowed_origins.allows(Some("https://a.example")));
    assert!(!read.allowed_origins.allows(Some("https://b.example")));
    assert!(read.decision_hooks.is_some());
    assert!(
        store.by_key("KEY-1").await.unwrap().is_none(),
        "keys match exactly"
    );
    assert!(store.by_key("nope").await.unwrap().is_none());
    assert_eq!(store.by_id("app-1").await.unwrap().unwrap().key, "key-1");

    let changes = AppDraft::changes()
        .with("max_connections", 5)
        .with("allowed_origins", serde_json::Value::Null)
        .with("enabled", false);
    assert!(store.update("app-1", &changes).await.unwrap());
    assert!(!store.update("ghost", &changes).await.unwrap());
    let read = store.by_id("app-1").await.unwrap().unwrap();
    assert_eq!(read.max_connections, Some(5));
    assert!(!read.enabled);
    assert!(
        read.allowed_origins.allows(Some("https://b.example")),
        "NULL allows any"
    );
    assert_eq!(read.webhooks.len(), 1, "untouched columns stay");

    assert!(store.remove("app-1").await.unwrap());
    assert!(!store.remove("app-1").await.unwrap());
    assert!(store.by_key("key-1").await.unwrap().is_none());
}

/// Rows in tables made with Sockudo 5.2.0's DDL, its older one without `policy`, and soketi's
/// `apps`, read as they are; a bad row is refused whole, naming its id and column.
pub async fn reads_sockudo_older_and_soketi_tables(db: &Db) {
    let key = db.quote("key");
    db.run(&[
        &db.sockudo_ddl.replace("{table}", "applications"),
        &format!(
            "INSERT INTO applications (id, {key}, secret, max_connections, enable_client_messages, \
             enabled, max_client_events_per_second, max_presence_members_per_channel, \
             max_event_payload_in_kb, enable_user_authentication, webhooks, allowed_origins) \
             VALUES ('flat', 'flat-key', 'flat-secret', 50, TRUE, TRUE, 0, 3, 8, TRUE, \
             '[{{\"url\": \"https://h.example/a\", \"event_types\": [\"member_added\"]}}]', \
             '[\"https://flat.example\"]')"
        ),
        &format!(
            "INSERT INTO applications (id, {key}, secret, max_connections, \
             max_client_events_per_second, policy) \
             VALUES ('pol', 'pol-key', 'pol-secret', 1, 1, \
             '{{\"limits\": {{\"max_connections\": 9}}, \
               \"channels\": {{\"allowed_origins\": [\"https://policy.example\"]}}}}')"
        ),
        &format!(
            "INSERT INTO applications (id, {key}, secret, max_connections, \
             max_client_events_per_second, webhooks) \
             VALUES ('bad', 'bad-key', 'bad-secret', 1, 1, '[{{\"url\": 12}}]')"
        ),
    ])
    .await;
    let store = db.store("applications").await;
    let listing = store.all().await.unwrap();
    let mut ids: Vec<&str> = listing.apps.iter().map(|a| a.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["flat", "pol"], "the good rows load beside a bad one");
    assert_eq!(listing.refused.len(), 1);
    assert_eq!(listing.refused[0].app_id, "bad");
    assert_eq!(listing.refused[0].column, "webhooks");
    assert!(
        listing.refused[0].message.contains("[0].url"),
        "{:?}",
        listing.refused
    );
    match store.by_key("bad-key").await {
        Err(StoreError::Refused(refusal)) => assert_eq!(refusal.column, "webhooks"),
        other => panic!("expected Refused, got {other:?}"),
    }
    let flat = store.by_key("flat-key").await.unwrap().unwrap();
    assert_eq!(flat.max_connections, Some(50));
    assert_eq!(flat.max_client_events_per_second, None, "0 is unlimited");
    assert_eq!(flat.max_presence_members_per_channel, 3);
    assert_eq!(flat.max_event_payload, 8 * 1024);
    assert!(flat.enable_user_authentication && flat.enable_client_messages);
    assert_eq!(url_of(&flat, 0), "https://h.example/a");
    assert!(flat.allowed_origins.allows(Some("https://flat.example")));
    assert!(!flat.allowed_origins.allows(Some("https://other.example")));
    let policy = store.by_key("pol-key").await.unwrap().unwrap();
    assert_eq!(
        policy.max_connections,
        Some(9),
        "the policy, not the flat column"
    );
    assert!(policy
        .allowed_origins
        .allows(Some("https://policy.example")));
    assert!(!policy.allowed_origins.allows(Some("https://other.example")));

    db.run(&[
        &db.older_ddl.replace("{table}", "old_apps"),
        &format!(
            "INSERT INTO old_apps (id, {key}, secret, max_connections, enable_client_messages, \
             enabled, max_client_events_per_second) VALUES ('old', 'old-key', 's', 10, FALSE, TRUE, 20)"
        ),
    ])
    .await;
    let old = db.store("old_apps").await;
    let app = old.by_key("old-key").await.unwrap().unwrap();
    assert_eq!(app.max_connections, Some(10));
    assert_eq!(app.max_client_events_per_second, Some(20));
    assert!(app.allowed_origins.allows(Some("https://any.example")));

    let enabled = db.quote("enabled");
    let soketi_row = |id: &str, webhooks: &str| {
        format!(
            "INSERT INTO apps (id, {key}, secret, max_connections, {enabled}, enable_client_messages, \
             max_backend_events_per_sec, max_client_events_per_sec, max_read_req_per_sec, webhooks, \
             max_presence_members_per_channel, enable_user_authentication) \
             VALUES ('{id}', '{id}-key', '{id}-secret', 200, 1, 1, -1, -1, 5, '{webhooks}', NULL, 0)"
        )
    };
    db.run(&[
        db.soketi_ddl,
        &soketi_row(
            "soketi",
            r#"[{"url": "https://h.example/s", "event_types": ["channel_vacated"], "filter": {"channel_name_starts_with": "presence-"}}]"#,
        ),
        &soketi_row(
            "suffix",
            r#"[{"url": "https://h.example/s", "event_types": ["channel_vacated"], "filter": {"channel_name_ends_with": "-x"}}]"#,
        ),
    ])
    .await;
    let soketi = db.store("apps").await;
    assert_eq!(soketi.layout(), Layout::Soketi);
    let app = soketi.by_key("soketi-key").await.unwrap().unwrap();
    assert_eq!(app.max_connections, Some(200));
    assert!(app.enabled && app.enable_client_messages && !app.enable_user_authentication);
    assert_eq!(app.max_backend_events_per_second, None, "-1 is unlimited");
    assert_eq!(app.max_client_events_per_second, None);
    assert_eq!(app.max_read_requests_per_second, Some(5));
    assert_eq!(app.max_presence_members_per_channel, 42);
    assert_eq!(app.webhooks[0].channel_prefix.as_deref(), Some("presence-"));
    match soketi.by_key("suffix-key").await {
        Err(StoreError::Refused(refusal)) => {
            assert_eq!(refusal.column, "webhooks");
            assert!(
                refusal.message.contains("channel_name_ends_with"),
                "{refusal}"
            );
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

/// With the database gone, a lookup fails as Unavailable within the operation bound.
pub async fn lookups_fail_fast_once_the_server_is_stopped(db: &Db, stop: impl FnOnce()) {
    let store = db.store("applications").await;
    store
        .insert(&AppDraft::new("a", "k", "s"))
        .await
        .expect("insert");
    assert!(store.by_key("k").await.unwrap().is_some());
    stop();
    for _ in 0..2 {
        let started = Instant::now();
        let result = store.by_key("k").await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(started.elapsed() <= CONNECT_TIMEOUT + Duration::from_secs(1));
    }
    let config = db.config("applications", true);
    let started = Instant::now();
    let result = AppStore::connect(config.app_store.as_ref().unwrap(), config.app_defaults).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() <= CONNECT_TIMEOUT + Duration::from_secs(1));
}
