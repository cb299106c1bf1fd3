//! `adapter` and `database.redis`: whether this node runs alone or as one of a cluster on Redis.
//!
//! Sockudo's keys: `adapter.driver` (`local`, `redis` or `redis-cluster`), `adapter.redis.prefix`
//! (`adapter.cluster.prefix` on Redis Cluster), the connection from `database.redis` or
//! `adapter.redis.url` (the URL wins), Sentinel (`sentinel.rs`) or Redis Cluster
//! (`redis_cluster.rs`). Any other driver stops start-up: N nodes that each believed they were
//! alone would each send every webhook.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::app_store::RawDatabaseConnection;
use super::redis_cluster::{
    redis_cluster_config, ClusterKeys, RawAdapterCluster, RawClusterNode, RawDatabaseCluster,
    RedisClusterConfig,
};
use super::sentinel::{self, sentinel_config, RawRedisTls, RawSentinel, SentinelKeys};
use super::{lenient, redacted, ConfigError, SentinelConfig};

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAdapter {
    pub driver: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub node_id: Option<String>,
    pub redis: RawAdapterRedis,
    pub cluster: RawAdapterCluster,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAdapterRedis {
    pub url: Option<String>,
    pub prefix: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub heartbeat_interval_ms: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub node_timeout_ms: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub cluster_mode: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawDatabase {
    pub redis: RawDatabaseRedis,
    pub postgres: RawDatabaseConnection,
    pub mysql: RawDatabaseConnection,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawDatabaseRedis {
    pub host: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub port: Option<u16>,
    #[serde(deserialize_with = "lenient::opt")]
    pub db: Option<u32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub username: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub password: Option<String>,
    pub sentinels: Vec<RawSentinel>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sentinel_username: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sentinel_password: Option<String>,
    pub sentinel_tls: RawRedisTls,
    pub master_tls: RawRedisTls,
    pub cluster: RawDatabaseCluster,
    pub cluster_nodes: Vec<RawClusterNode>,
}

/// How this node shares its state.
// Built once at start-up and read in place: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterConfig {
    /// One node: its memory is the whole truth (`adapter.driver` absent or `local`).
    Local,
    /// One of several nodes sharing one Redis, Sentinel-managed or not (`adapter.driver`
    /// `redis`), or a Redis Cluster (`redis-cluster`).
    Redis(RedisConfig),
}

/// The Redis a cluster shares, and this node's place in it.
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS) with credentials and database; empty with Sentinel or
    /// Redis Cluster.
    pub url: String,
    /// The sentinels that name the primary (`database.redis.sentinels`), instead of `url`.
    pub sentinel: Option<SentinelConfig>,
    /// A Redis Cluster (`adapter.driver: "redis-cluster"`), instead of `url`.
    pub cluster: Option<RedisClusterConfig>,
    /// Prefix of every key and pub/sub channel (`adapter.redis.prefix`, or
    /// `adapter.cluster.prefix` on Redis Cluster; default `herald`).
    pub prefix: String,
    /// This node's id (`adapter.node_id` / `HERALD_NODE_ID`); generated when absent.
    pub node_id: Option<String>,
    /// How often the node renews its heartbeat (`adapter.redis.heartbeat_interval_ms`).
    pub heartbeat_interval: Duration,
    /// A node silent this long is dead: its sockets are removed by the others
    /// (`adapter.redis.node_timeout_ms`).
    pub node_timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted(&self.url))
            .field("sentinel", &self.sentinel)
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("node_id", &self.node_id)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("node_timeout", &self.node_timeout)
            .finish()
    }
}

/// The `adapter` section, with the connection from `database.redis` when it has no URL.
pub(super) fn cluster_config(
    adapter: &RawAdapter,
    database: &RawDatabase,
) -> Result<ClusterConfig, ConfigError> {
    if adapter.redis.cluster_mode == Some(true) {
        return Err(ConfigError::invalid(
            "adapter.redis.cluster_mode",
            "is not supported: for a Redis Cluster set adapter.driver to \"redis-cluster\" (with adapter.cluster.nodes)",
        ));
    }
    match adapter.driver.as_deref().unwrap_or("local") {
        "local" => Ok(ClusterConfig::Local),
        "redis" => redis_config(adapter, database, None).map(ClusterConfig::Redis),
        "redis-cluster" => {
            let cluster = cluster_of(adapter, database)?;
            redis_config(adapter, database, Some(cluster)).map(ClusterConfig::Redis)
        }
        other => Err(ConfigError::invalid(
            "adapter.driver",
            format!(
                "{other:?} is not supported: Herald runs alone (\"local\") or as a cluster on Redis (\"redis\", \"redis-cluster\"); \
                 nodes that each ran alone would each send every webhook"
            ),
        )),
    }
}

fn redis_config(
    adapter: &RawAdapter,
    database: &RawDatabase,
    cluster: Option<RedisClusterConfig>,
) -> Result<RedisConfig, ConfigError> {
    let (sentinel, url, prefix_key, prefix) = match &cluster {
        None => {
            let sentinel = sentinel_of(&database.redis)?;
            let url = single_url(adapter, database, sentinel.is_some())?;
            let prefix = adapter.redis.prefix.clone();
            (sentinel, url, "adapter.redis.prefix", prefix)
        }
        Some(_) => {
            let prefix = adapter.cluster.prefix.clone();
            let prefix = prefix.or_else(|| adapter.redis.prefix.clone());
            (None, String::new(), "adapter.cluster.prefix", prefix)
        }
    };
    let prefix = checked_prefix(prefix_key, prefix.unwrap_or_else(|| "herald".to_owned()))?;
    if let Some(id) = &adapter.node_id {
        check_node_id("adapter.node_id", id)?;
    }
    let millis = |path: &str, value: Option<u64>, default: u64| match value {
        Some(0) => Err(ConfigError::invalid(path, "must be above 0")),
        value => Ok(Duration::from_millis(value.unwrap_or(default))),
    };
    let heartbeat_interval = millis(
        "adapter.redis.heartbeat_interval_ms",
        adapter.redis.heartbeat_interval_ms,
        1000,
    )?;
    let node_timeout = millis(
        "adapter.redis.node_timeout_ms",
        adapter.redis.node_timeout_ms,
        8000,
    )?;
    if node_timeout < heartbeat_interval * 3 {
        return Err(ConfigError::invalid(
            "adapter.redis.node_timeout_ms",
            format!(
                "{} ms must be at least three heartbeats ({} ms): a node one late heartbeat away would be taken for dead",
                node_timeout.as_millis(),
                heartbeat_interval.as_millis() * 3
            ),
        ));
    }
    Ok(RedisConfig {
        url,
        sentinel,
        cluster,
        prefix,
        node_id: adapter.node_id.clone(),
        heartbeat_interval,
        node_timeout,
    })
}

/// The prefix of every key and topic: braces would change the hash tags Herald's keys rely on.
fn checked_prefix(path: &str, prefix: String) -> Result<String, ConfigError> {
    if prefix.is_empty() || prefix.contains(|c: char| c.is_whitespace() || "{}".contains(c)) {
        return Err(ConfigError::invalid(
            path,
            format!("{prefix:?} must be non-empty, without spaces or braces (braces mark Redis hash tags)"),
        ));
    }
    Ok(prefix)
}

/// A node id names keys and logs: short, and of characters that need no quoting.
pub(super) fn check_node_id(path: &str, id: &str) -> Result<(), ConfigError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if id.is_empty() || id.len() > 64 || !id.chars().all(allowed) {
        return Err(ConfigError::invalid(
            path,
            format!("{id:?} must be 1 to 64 letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// The one Redis's URL: `adapter.redis.url`, else `database.redis`'s; empty with Sentinel, which
/// names the primary itself (a URL beside sentinels is refused).
fn single_url(
    adapter: &RawAdapter,
    database: &RawDatabase,
    sentinel: bool,
) -> Result<String, ConfigError> {
    match (&adapter.redis.url, sentinel) {
        (Some(_), true) => Err(ConfigError::invalid(
            "adapter.redis.url",
            "cannot be given with database.redis.sentinels: the sentinels name the primary (remove one of the two)",
        )),
        (Some(url), false) if !(url.starts_with("redis://") || url.starts_with("rediss://")) => {
            Err(ConfigError::invalid(
                "adapter.redis.url",
                format!("{:?} must start with redis:// or rediss://", redacted(url)),
            ))
        }
        // TLS asked for and a plain URL: refused rather than connecting in the clear.
        (Some(url), false)
            if database.redis.master_tls.enabled == Some(true) && url.starts_with("redis://") =>
        {
            Err(ConfigError::invalid(
                "adapter.redis.url",
                "is a redis:// URL while database.redis.master_tls.enabled is true: use rediss:// for TLS (or turn master_tls off)",
            ))
        }
        (Some(url), false) => Ok(url.clone()),
        (None, true) => Ok(String::new()),
        (None, false) => url_of(&database.redis),
    }
}

/// Redis Cluster's seeds; what belongs to one Redis beside them is refused, naming both keys.
fn cluster_of(
    adapter: &RawAdapter,
    database: &RawDatabase,
) -> Result<RedisClusterConfig, ConfigError> {
    let redis = &database.redis;
    if adapter.redis.url.is_some() {
        return Err(ConfigError::invalid(
            "adapter.redis.url",
            "names one Redis, but adapter.driver is \"redis-cluster\": list the cluster's nodes in adapter.cluster.nodes",
        ));
    }
    if !redis.sentinels.is_empty() {
        return Err(ConfigError::invalid(
            "database.redis.sentinels",
            "cannot be used with adapter.driver \"redis-cluster\": Sentinel manages one primary (use adapter.driver \"redis\")",
        ));
    }
    if redis.db.is_some_and(|db| db != 0) {
        return Err(ConfigError::invalid(
            "database.redis.db",
            "must be 0 with adapter.driver \"redis-cluster\": Redis Cluster has database 0 only",
        ));
    }
    redis_cluster_config(&ClusterKeys {
        adapter: &adapter.cluster,
        database: &redis.cluster,
        legacy_nodes: &redis.cluster_nodes,
        username: redis.username.as_deref(),
        password: redis.password.as_deref(),
        master_tls: &redis.master_tls,
    })
}

/// Sentinel mode from `database.redis`, when it lists sentinels.
fn sentinel_of(redis: &RawDatabaseRedis) -> Result<Option<SentinelConfig>, ConfigError> {
    sentinel_config(&SentinelKeys {
        sentinels: &redis.sentinels,
        name: redis.name.as_deref(),
        sentinel_username: redis.sentinel_username.as_deref(),
        sentinel_password: redis.sentinel_password.as_deref(),
        sentinel_tls: &redis.sentinel_tls,
        master_tls: &redis.master_tls,
        username: redis.username.as_deref(),
        password: redis.password.as_deref(),
        db: redis.db.unwrap_or(0),
    })
}

/// `redis[s]://[user[:password]@]host:port/db` from Sockudo's `database.redis` (`master_tls`
/// secures the direct connection too, as in Sockudo).
fn url_of(redis: &RawDatabaseRedis) -> Result<String, ConfigError> {
    let tls = sentinel::tls("database.redis.master_tls", &redis.master_tls)?;
    let credentials = sentinel::credentials(redis.username.as_deref(), redis.password.as_deref());
    let host = sentinel::host(
        "database.redis.host",
        redis.host.as_deref().unwrap_or("127.0.0.1"),
    )?;
    Ok(format!(
        "{}://{credentials}{host}:{}/{}{}",
        tls.scheme(),
        redis.port.unwrap_or(6379),
        redis.db.unwrap_or(0),
        tls.fragment()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cluster(json: &str) -> Result<ClusterConfig, ConfigError> {
        Config::from_json(json).map(|c| c.cluster)
    }

    fn redis(json: &str) -> RedisConfig {
        match cluster(json).unwrap() {
            ClusterConfig::Redis(redis) => redis,
            ClusterConfig::Local => panic!("not a cluster: {json}"),
        }
    }

    #[test]
    fn no_adapter_or_local_is_one_node() {
        assert_eq!(cluster("{}").unwrap(), ClusterConfig::Local);
        assert_eq!(
            cluster(r#"{"adapter":{"driver":"local"}}"#).unwrap(),
            ClusterConfig::Local
        );
    }

    #[test]
    fn other_drivers_stop_start_up() {
        for driver in ["nats", "Redis", "redis-sentinel"] {
            let json = format!(r#"{{"adapter":{{"driver":"{driver}"}}}}"#);
            let error = cluster(&json).unwrap_err();
            assert_eq!(error.path, "adapter.driver", "{driver}");
            assert!(error.to_string().contains("every webhook"), "{error}");
        }
    }

    #[test]
    fn the_connection_comes_from_database_redis_unless_a_url_is_given() {
        let config = redis(r#"{"adapter":{"driver":"redis","redis":{"prefix":"sockudo"}}}"#);
        assert_eq!(config.url, "redis://127.0.0.1:6379/0");
        assert_eq!(config.prefix, "sockudo");
        assert_eq!(
            (config.heartbeat_interval, config.node_timeout),
            (Duration::from_secs(1), Duration::from_secs(8))
        );
        let config = redis(
            r#"{"adapter":{"driver":"redis"},"database":{"redis":{"host":"cache.local","port":"6380","db":2,"username":"herald","password":"p@ss:word"}}}"#,
        );
        assert_eq!(
            config.url,
            "redis://herald:p%40ss%3Aword@cache.local:6380/2"
        );
        assert_eq!(config.prefix, "herald");
        assert!(
            !format!("{config:?}").contains("p%40ss"),
            "the password stays out of logs"
        );
        let config = redis(
            r#"{"adapter":{"driver":"redis","redis":{"url":"rediss://u:secret@r.example:6390/1"}},"database":{"redis":{"host":"ignored"}}}"#,
        );
        assert_eq!(config.url, "rediss://u:secret@r.example:6390/1");
        assert_eq!(redacted(&config.url), "rediss://u:***@r.example:6390/1");
        assert_eq!(
            redacted("u:secret@host"),
            "u:***@host",
            "no scheme: still redacted"
        );
        let config = redis(r#"{"adapter":{"driver":"redis"},"database":{"redis":{"host":"::1"}}}"#);
        assert_eq!(config.url, "redis://[::1]:6379/0");
    }

    #[test]
    fn wrong_values_name_their_key() {
        for (json, path) in [
            (
                r#"{"adapter":{"driver":"redis","redis":{"url":"http://x"}}}"#,
                "adapter.redis.url",
            ),
            (
                r#"{"adapter":{"driver":"redis","redis":{"prefix":"a{b}"}}}"#,
                "adapter.redis.prefix",
            ),
            (
                r#"{"adapter":{"driver":"redis","node_id":"a b"}}"#,
                "adapter.node_id",
            ),
            (
                r#"{"adapter":{"driver":"redis","redis":{"node_timeout_ms":2000}}}"#,
                "adapter.redis.node_timeout_ms",
            ),
            (
                r#"{"adapter":{"driver":"redis","redis":{"heartbeat_interval_ms":0}}}"#,
                "adapter.redis.heartbeat_interval_ms",
            ),
        ] {
            assert_eq!(cluster(json).unwrap_err().path, path, "{json}");
        }
        let config = redis(r#"{"adapter":{"driver":"redis","node_id":"node-1.eu"}}"#);
        assert_eq!(config.node_id.as_deref(), Some("node-1.eu"));
    }

    #[test]
    fn sentinels_name_the_primary_with_sockudos_keys() {
        let config = redis(
            r#"{"adapter":{"driver":"redis"},"database":{"redis":{"db":1,"password":"p w","sentinels":[{"host":"10.0.0.1","port":26379},{"host":"s2"}],"name":"main","sentinel_password":"sp","master_tls":{"enabled":true,"accept_invalid_certs":true}}}}"#,
        );
        let sentinel = config.sentinel.expect("sentinel mode");
        assert_eq!(
            sentinel.sentinels,
            ["redis://:sp@10.0.0.1:26379", "redis://:sp@s2:26379"]
        );
        assert_eq!(sentinel.master_name, "main");
        assert_eq!(
            sentinel.primary_url("10.0.0.9", 6380),
            "rediss://:p%20w@10.0.0.9:6380/1#insecure"
        );
        assert!(
            !format!("{sentinel:?}").contains("sp@"),
            "passwords stay out of logs"
        );
        let both = r#"{"adapter":{"driver":"redis","redis":{"url":"redis://x:1"}},"database":{"redis":{"sentinels":[{"host":"s"}]}}}"#;
        let error = cluster(both).unwrap_err();
        assert_eq!(error.path, "adapter.redis.url");
        assert!(
            error.to_string().contains("database.redis.sentinels"),
            "{error}"
        );
        let plain = r#"{"adapter":{"driver":"redis","redis":{"url":"redis://x:1"}},"database":{"redis":{"master_tls":{"enabled":true}}}}"#;
        let error = cluster(plain).unwrap_err();
        assert_eq!(error.path, "adapter.redis.url");
        assert!(error.to_string().contains("master_tls"), "{error}");
        let config = redis(
            r#"{"adapter":{"driver":"redis"},"database":{"redis":{"sentinels":[{"port":26380}],"master_tls":{"enabled":false,"ca_path":"/ca.pem"}}}}"#,
        );
        let sentinel = config.sentinel.expect("sentinel mode");
        assert_eq!(
            sentinel.sentinels,
            ["redis://localhost:26380"],
            "Sockudo's default host; a CA for TLS that is off asks for nothing"
        );
        let ca = r#"{"adapter":{"driver":"redis"},"database":{"redis":{"sentinels":[{"host":"s"}],"sentinel_tls":{"enabled":true,"ca_path":"/ca.pem"}}}}"#;
        assert_eq!(
            cluster(ca).unwrap_err().path,
            "database.redis.sentinel_tls.ca_path"
        );
    }

    #[test]
    fn a_redis_host_is_a_name_or_an_address() {
        for host in ["cache:6380", "fe80::1%eth0", "", "a b"] {
            let json = format!(
                r#"{{"adapter":{{"driver":"redis"}},"database":{{"redis":{{"host":"{host}"}}}}}}"#
            );
            assert_eq!(
                cluster(&json).unwrap_err().path,
                "database.redis.host",
                "{host:?}"
            );
        }
    }
}
