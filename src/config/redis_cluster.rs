//! Redis Cluster (`adapter.driver: "redis-cluster"`) with Sockudo 5.2's keys: the seed nodes
//! from `adapter.cluster.nodes` (`"host:port"` or a URL), else `database.redis.cluster.nodes`
//! (`[{"host", "port"}]`), else the legacy `database.redis.cluster_nodes`; credentials from
//! `database.redis.cluster` or `database.redis`; TLS from `adapter.cluster.tls`,
//! `database.redis.cluster.use_tls` or `database.redis.master_tls`.

use serde::Deserialize;

use super::sentinel::{self, RawRedisTls};
use super::{lenient, ConfigError};

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAdapterCluster {
    pub nodes: Vec<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub prefix: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub use_sharded_pubsub: Option<bool>,
    pub tls: RawRedisTls,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawDatabaseCluster {
    pub nodes: Vec<RawClusterNode>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub username: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub password: Option<String>,
    #[serde(alias = "useTLS", deserialize_with = "lenient::opt")]
    pub use_tls: Option<bool>,
}

/// `{"host", "port"}` of `database.redis.cluster.nodes` and `cluster_nodes`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawClusterNode {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub host: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub port: Option<u16>,
}

/// How to reach a Redis Cluster.
#[derive(Clone, PartialEq)]
pub struct RedisClusterConfig {
    /// The seed nodes' URLs (credentials and TLS included): any one answering tells the rest.
    pub nodes: Vec<String>,
    /// Fan-out on sharded pub/sub (`SPUBLISH` / `SSUBSCRIBE`), else classic `PUBLISH`, which
    /// Redis Cluster copies to every shard (`adapter.cluster.use_sharded_pubsub`, default true).
    pub sharded_pubsub: bool,
}

impl std::fmt::Debug for RedisClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|u| super::redacted(u)).collect();
        f.debug_struct("RedisClusterConfig")
            .field("nodes", &nodes)
            .field("sharded_pubsub", &self.sharded_pubsub)
            .finish()
    }
}

/// What the seed list is made from.
pub(super) struct ClusterKeys<'a> {
    pub adapter: &'a RawAdapterCluster,
    pub database: &'a RawDatabaseCluster,
    pub legacy_nodes: &'a [RawClusterNode],
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub master_tls: &'a RawRedisTls,
}

/// The Redis Cluster configuration from Sockudo's keys.
pub(super) fn redis_cluster_config(
    keys: &ClusterKeys<'_>,
) -> Result<RedisClusterConfig, ConfigError> {
    let adapter_tls = sentinel::tls("adapter.cluster.tls", &keys.adapter.tls)?;
    let master_tls = sentinel::tls("database.redis.master_tls", keys.master_tls)?;
    let use_tls = keys.database.use_tls == Some(true);
    let secure = adapter_tls.enabled() || master_tls.enabled() || use_tls;
    let insecure = adapter_tls.insecure() || master_tls.insecure();
    let username = keys.database.username.as_deref().or(keys.username);
    let password = keys.database.password.as_deref().or(keys.password);
    let credentials = sentinel::credentials(username, password);
    let scheme = if secure { "rediss" } else { "redis" };
    let fragment = if secure && insecure { "#insecure" } else { "" };
    let seed = |host: &str, port: u16| format!("{scheme}://{credentials}{host}:{port}{fragment}");
    let nodes = if !keys.adapter.nodes.is_empty() {
        let seeds = keys.adapter.nodes.iter().enumerate();
        seeds
            .map(|(i, node)| {
                let path = format!("adapter.cluster.nodes[{i}]");
                let url = adapter_seed(&path, node, &seed)?;
                if secure && url.starts_with("redis://") {
                    return Err(ConfigError::invalid(
                        &path,
                        "is a redis:// URL while TLS is on (adapter.cluster.tls, database.redis.cluster.use_tls or database.redis.master_tls): use rediss://, or \"host:port\"",
                    ));
                }
                Ok(url)
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let (path, listed) = match keys.database.nodes.is_empty() {
            false => ("database.redis.cluster.nodes", &keys.database.nodes[..]),
            true => ("database.redis.cluster_nodes", keys.legacy_nodes),
        };
        let seeds = listed.iter().enumerate();
        seeds
            .map(|(i, node)| {
                let host = node.host.as_deref().unwrap_or("127.0.0.1");
                let host = sentinel::host(&format!("{path}[{i}].host"), host)?;
                Ok(seed(&host, node.port.unwrap_or(6379)))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?
    };
    if nodes.is_empty() {
        return Err(ConfigError::invalid(
            "adapter.cluster.nodes",
            "lists no node: redis-cluster needs at least one of the cluster's nodes (\"host:port\"), here or in database.redis.cluster.nodes",
        ));
    }
    Ok(RedisClusterConfig {
        nodes,
        sharded_pubsub: keys.adapter.use_sharded_pubsub.unwrap_or(true),
    })
}

/// One `adapter.cluster.nodes` entry: a URL as given, or `host:port` with the shared
/// credentials and TLS.
fn adapter_seed(
    path: &str,
    node: &str,
    seed: &dyn Fn(&str, u16) -> String,
) -> Result<String, ConfigError> {
    let node = node.trim();
    if node.starts_with("redis://") || node.starts_with("rediss://") {
        return Ok(node.to_owned());
    }
    let refused = || {
        ConfigError::invalid(
            path,
            format!(
                "{:?} must be \"host:port\" or a redis:// or rediss:// URL",
                super::redacted(node)
            ),
        )
    };
    let (host, port) = node.rsplit_once(':').ok_or_else(refused)?;
    let port: u16 = port.parse().map_err(|_| refused())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // Not `host`'s own error: it would quote the entry, and an entry such as
    // `user:secret@h:7000` holds a password.
    let host = sentinel::host(path, host).map_err(|_| refused())?;
    Ok(seed(&host, port))
}

#[cfg(test)]
mod tests {
    use crate::config::{ClusterConfig, Config, ConfigError, RedisConfig};

    fn redis(json: &str) -> Result<RedisConfig, ConfigError> {
        match Config::from_json(json)?.cluster {
            ClusterConfig::Redis(redis) => Ok(redis),
            ClusterConfig::Local => panic!("not a cluster: {json}"),
        }
    }

    fn nodes(json: &str) -> Vec<String> {
        let config = redis(json).unwrap();
        config.cluster.expect("Redis Cluster").nodes
    }

    #[test]
    fn adapter_cluster_nodes_win_and_take_the_shared_credentials() {
        let json = r#"{"adapter":{"driver":"redis-cluster","cluster":{"nodes":["10.0.0.1:7000","rediss://u:p@h:7001"],"prefix":"sk"}},
            "database":{"redis":{"password":"p w","cluster":{"nodes":[{"host":"x","port":1}]}}}}"#;
        assert_eq!(
            nodes(json),
            ["redis://:p%20w@10.0.0.1:7000", "rediss://u:p@h:7001"]
        );
        let config = redis(json).unwrap();
        assert_eq!(config.prefix, "sk");
        assert!(
            config.cluster.as_ref().unwrap().sharded_pubsub,
            "Herald's default"
        );
        assert!(config.url.is_empty() && config.sentinel.is_none());
        assert!(!format!("{config:?}").contains("p%20w"), "redacted");
    }

    #[test]
    fn sockudos_database_keys_and_the_legacy_list_are_read() {
        let json = r#"{"adapter":{"driver":"redis-cluster","cluster":{"use_sharded_pubsub":false}},
            "database":{"redis":{"username":"top","cluster":{"nodes":[{"host":"a","port":7000},{"host":"::1","port":7001}],"username":"c","password":"s","use_tls":true}}}}"#;
        assert_eq!(
            nodes(json),
            ["rediss://c:s@a:7000", "rediss://c:s@[::1]:7001"]
        );
        assert!(!redis(json).unwrap().cluster.unwrap().sharded_pubsub);
        let legacy = r#"{"adapter":{"driver":"redis-cluster","cluster":{"tls":{"enabled":true,"accept_invalid_certs":true}}},
            "database":{"redis":{"cluster_nodes":[{"host":"b","port":7002}]}}}"#;
        assert_eq!(nodes(legacy), ["rediss://b:7002#insecure"]);
    }

    #[test]
    fn sockudos_tuning_keys_are_warned_with_the_reason() {
        let json = r#"{"adapter":{"driver":"redis-cluster","cluster":{"nodes":["h:1"],"request_timeout_ms":500,"use_connection_manager":true,"pubsub_ping_interval_ms":100}}}"#;
        let config = Config::from_json(json).unwrap();
        for key in [
            "request_timeout_ms",
            "use_connection_manager",
            "pubsub_ping_interval_ms",
        ] {
            let path = format!("adapter.cluster.{key}");
            let ignored = config.ignored_keys.iter().find(|k| k.path == path);
            let reason = ignored.map(|k| k.reason.as_str()).unwrap_or("");
            assert!(
                reason.ends_with("ignored") && reason.len() > 10,
                "{path}: {reason:?}"
            );
        }
    }

    #[test]
    fn what_belongs_to_one_redis_is_refused_with_redis_cluster() {
        for (json, path, names) in [
            (
                r#"{"adapter":{"driver":"redis-cluster"}}"#,
                "adapter.cluster.nodes",
                "at least one",
            ),
            (
                r#"{"adapter":{"driver":"redis-cluster","cluster":{"nodes":["h:1"]}},"database":{"redis":{"db":3}}}"#,
                "database.redis.db",
                "database 0",
            ),
            (
                r#"{"adapter":{"driver":"redis-cluster","cluster":{"nodes":["h:1"]},"redis":{"url":"redis://h:1"}}}"#,
                "adapter.redis.url",
                "adapter.cluster.nodes",
            ),
            (
                r#"{"adapter":{"driver":"redis-cluster","cluster":{"nodes":["h:1"]}},"database":{"redis":{"sentinels":[{"host":"s"}]}}}"#,
                "database.redis.sentinels",
                "Sentinel",
            ),
            (
                r#"{"adapter":{"driver":"redis","redis":{"cluster_mode":true}}}"#,
                "adapter.redis.cluster_mode",
                "redis-cluster",
            ),
            (
                r#"{"adapter":{"driver":"redis-cluster","cluster":{"nodes":["h"]}}}"#,
                "adapter.cluster.nodes[0]",
                "host:port",
            ),
            (
                r#"{"adapter":{"driver":"redis-cluster","cluster":{"nodes":["h:1"],"tls":{"enabled":true,"ca_path":"/ca"}}}}"#,
                "adapter.cluster.tls.ca_path",
                "trust store",
            ),
            (
                r#"{"adapter":{"driver":"redis-cluster","cluster":{"nodes":["redis://h:1"],"tls":{"enabled":true}}}}"#,
                "adapter.cluster.nodes[0]",
                "rediss://",
            ),
        ] {
            let error = redis(json).unwrap_err();
            assert_eq!(error.path, path, "{json}");
            assert!(error.to_string().contains(names), "{error}");
        }
        let secret =
            r#"{"adapter":{"driver":"redis-cluster","cluster":{"nodes":["user:s3cret@h:7000"]}}}"#;
        let error = redis(secret).unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}
