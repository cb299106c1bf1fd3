//! Every option of soketi (its `cli.ts` variables at soketi's last commit, and the keys of its
//! `config.json`), with what Herald does with it: read as a Sockudo key, warned, or refused.

/// How a soketi value becomes a Sockudo one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The string as written (credentials and names are never read as JSON).
    Text,
    /// JSON when it parses, as soketi reads a variable; else the string.
    Json,
    /// A boolean: soketi tests it for truth, so `1` and `0` are `true` and `false` too.
    Flag,
    /// Milliseconds in soketi, whole seconds (rounded up) in Sockudo.
    MsToSeconds,
    /// soketi's `array` app manager is Sockudo's `memory`.
    AppDriver,
    /// soketi's `cluster` adapter (processes of one machine) is one Herald process: `local`.
    AdapterDriver,
    /// A certificate or key file: soketi serves TLS as soon as one is set.
    TlsFile,
    /// `true` turns a `redis` adapter into `redis-cluster` (settled once every value is in).
    RedisClusterMode,
    /// `[{host, port}]` or `"host:port"` seed nodes, written as `"host:port"` strings.
    ClusterNodes,
    /// soketi's webhook objects, translated to Sockudo's.
    Webhooks,
    /// soketi's apps, translated to Sockudo's.
    Apps,
}

/// What Herald does with a soketi option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read as the Sockudo `config.json` key at this path, converted as `Kind` says.
    Map(&'static str, Kind),
    /// Accepted and ignored, with why.
    Warn(&'static str),
    /// Stops start-up when it asks for something (a value other than empty, `false` or `{}`),
    /// because ignoring it would weaken security or break every client; with why.
    Refuse(&'static str),
    /// Warned, but refused when it is `redis` and the adapter is not Redis: soketi then counted
    /// the app quotas across servers, which Herald nodes that each run alone would not.
    SharedQuotas(&'static str),
}

/// One soketi option: its variable (if it has one), its dotted camelCase key, and its fate.
#[derive(Debug)]
pub(crate) struct Row {
    /// The environment variable, e.g. `SOKETI_PORT`.
    pub var: Option<&'static str>,
    /// The option as soketi's `config.json` names it, e.g. `port`.
    pub option: &'static str,
    /// What Herald does with it.
    pub action: Action,
}

use Action::{Map, Refuse, SharedQuotas, Warn};
use Kind::*;

const fn env(var: &'static str, option: &'static str, action: Action) -> Row {
    Row {
        var: Some(var),
        option,
        action,
    }
}

const fn file(option: &'static str, action: Action) -> Row {
    Row {
        var: None,
        option,
        action,
    }
}

const NATS: &str =
    "Herald's cluster runs on Redis (adapter.driver redis); NATS is not implemented; ignored";
const DISCOVERY: &str = "soketi's UDP discovery of the processes of one machine; one Herald process uses every core; ignored";
const TIMEOUT: &str = "Herald bounds every Redis command with its own timeouts (5 s); ignored";
const SQL_VERSION: &str = "only soketi's driver needed the server version; ignored";
const CACHE: &str = "Herald keeps cache channels itself; no cache driver is needed; ignored";
const QUEUE: &str =
    "Herald delivers webhooks through its own bounded queues; no queue driver is needed; ignored";
const POOLING: &str = "Herald's app store sizes its own connection pool; ignored";
const REDIS_OPTIONS: &str = "ioredis options cannot be passed to Herald, and the connection would be made without them (TLS or credentials among them); write the connection as SOKETI_DB_REDIS_* (or adapter.redis.url, rediss:// for TLS)";

#[rustfmt::skip]
/// Every soketi option, in `cli.ts` order, then the `config.json` keys that have no variable.
pub(crate) const ROWS: &[Row] = &[
    env("SOKETI_ADAPTER_DRIVER", "adapter.driver", Map("adapter.driver", AdapterDriver)),
    env("SOKETI_ADAPTER_CLUSTER_REQUESTS_TIMEOUT", "adapter.cluster.requestsTimeout", Warn(TIMEOUT)),
    env("SOKETI_ADAPTER_REDIS_PREFIX", "adapter.redis.prefix", Map("adapter.redis.prefix", Text)),
    env("SOKETI_ADAPTER_REDIS_CLUSTER_MODE", "adapter.redis.clusterMode", Map("adapter.driver", RedisClusterMode)),
    env("SOKETI_ADAPTER_REDIS_REQUESTS_TIMEOUT", "adapter.redis.requestsTimeout", Warn(TIMEOUT)),
    env("SOKETI_ADAPTER_REDIS_SUB_OPTIONS", "adapter.redis.redisSubOptions", Refuse(REDIS_OPTIONS)),
    env("SOKETI_ADAPTER_REDIS_PUB_OPTIONS", "adapter.redis.redisPubOptions", Refuse(REDIS_OPTIONS)),
    env("SOKETI_ADAPTER_NATS_PREFIX", "adapter.nats.prefix", Warn(NATS)),
    env("SOKETI_ADAPTER_NATS_SERVERS", "adapter.nats.servers", Warn(NATS)),
    env("SOKETI_ADAPTER_NATS_USER", "adapter.nats.user", Warn(NATS)),
    env("SOKETI_ADAPTER_NATS_PASSWORD", "adapter.nats.pass", Warn(NATS)),
    env("SOKETI_ADAPTER_NATS_TOKEN", "adapter.nats.token", Warn(NATS)),
    env("SOKETI_ADAPTER_NATS_TIMEOUT", "adapter.nats.timeout", Warn(NATS)),
    env("SOKETI_ADAPTER_NATS_REQUESTS_TIMEOUT", "adapter.nats.requestsTimeout", Warn(NATS)),
    env("SOKETI_ADAPTER_NATS_NODES_NUMBER", "adapter.nats.nodesNumber", Warn(NATS)),
    env("SOKETI_APP_MANAGER_DRIVER", "appManager.driver", Map("app_manager.driver", AppDriver)),
    env("SOKETI_APP_MANAGER_CACHE_ENABLED", "appManager.cache.enabled", Map("app_manager.cache.enabled", Json)),
    env("SOKETI_APP_MANAGER_CACHE_TTL", "appManager.cache.ttl", Map("app_manager.cache.ttl", Json)),
    env("SOKETI_APP_MANAGER_DYNAMODB_TABLE", "appManager.dynamodb.table", Map("database.dynamodb.table_name", Text)),
    env("SOKETI_APP_MANAGER_DYNAMODB_REGION", "appManager.dynamodb.region", Map("database.dynamodb.region", Text)),
    env("SOKETI_APP_MANAGER_DYNAMODB_ENDPOINT", "appManager.dynamodb.endpoint", Map("database.dynamodb.endpoint_url", Text)),
    env("SOKETI_APP_MANAGER_MYSQL_TABLE", "appManager.mysql.table", Map("database.mysql.table_name", Text)),
    env("SOKETI_APP_MANAGER_MYSQL_VERSION", "appManager.mysql.version", Warn(SQL_VERSION)),
    env("SOKETI_APP_MANAGER_POSTGRES_TABLE", "appManager.postgres.table", Map("database.postgres.table_name", Text)),
    env("SOKETI_APP_MANAGER_POSTGRES_VERSION", "appManager.postgres.version", Warn(SQL_VERSION)),
    env("SOKETI_APP_MANAGER_MYSQL_USE_V2", "appManager.mysql.useMysql2", Warn("only soketi's Node driver had two versions; ignored")),
    env("SOKETI_CHANNEL_LIMITS_MAX_NAME_LENGTH", "channelLimits.maxNameLength", Map("channel_limits.max_name_length", Json)),
    env("SOKETI_CHANNEL_CACHE_TTL", "channelLimits.cacheTtl", Map("channel_limits.cache_ttl", Json)),
    env("SOKETI_CACHE_DRIVER", "cache.driver", Warn(CACHE)),
    env("SOKETI_CACHE_REDIS_CLUSTER_MODE", "cache.redis.clusterMode", Warn(CACHE)),
    env("SOKETI_CACHE_REDIS_OPTIONS", "cache.redis.redisOptions", Warn(CACHE)),
    env("SOKETI_CLUSTER_CHECK_INTERVAL", "cluster.checkInterval", Warn(DISCOVERY)),
    env("SOKETI_CLUSTER_HOST", "cluster.hostname", Warn(DISCOVERY)),
    env("SOKETI_CLUSTER_IGNORE_PROCESS", "cluster.ignoreProcess", Warn(DISCOVERY)),
    env("SOKETI_CLUSTER_BROADCAST_ADDRESS", "cluster.broadcast", Warn(DISCOVERY)),
    env("SOKETI_CLUSTER_KEEPALIVE_INTERVAL", "cluster.helloInterval", Warn(DISCOVERY)),
    env("SOKETI_CLUSTER_MASTER_TIMEOUT", "cluster.masterTimeout", Warn(DISCOVERY)),
    env("SOKETI_CLUSTER_MULTICAST_ADDRESS", "cluster.multicast", Warn(DISCOVERY)),
    env("SOKETI_CLUSTER_NODE_TIMEOUT", "cluster.nodeTimeout", Warn(DISCOVERY)),
    env("SOKETI_CLUSTER_PORT", "cluster.port", Warn(DISCOVERY)),
    env("SOKETI_CLUSTER_PREFIX", "cluster.prefix", Warn(DISCOVERY)),
    env("SOKETI_CLUSTER_UNICAST_ADDRESSES", "cluster.unicast", Warn(DISCOVERY)),
    env("SOKETI_DEBUG", "debug", Map("debug", Flag)),
    env("SOKETI_DEFAULT_APP_ID", "appManager.array.apps.0.id", Map("app_manager.array.apps[0].id", Text)),
    env("SOKETI_DEFAULT_APP_KEY", "appManager.array.apps.0.key", Map("app_manager.array.apps[0].key", Text)),
    env("SOKETI_DEFAULT_APP_SECRET", "appManager.array.apps.0.secret", Map("app_manager.array.apps[0].secret", Text)),
    env("SOKETI_DEFAULT_APP_MAX_CONNS", "appManager.array.apps.0.maxConnections", Map("app_manager.array.apps[0].max_connections", Json)),
    env("SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "appManager.array.apps.0.enableClientMessages", Map("app_manager.array.apps[0].enable_client_messages", Flag)),
    env("SOKETI_DEFAULT_APP_ENABLED", "appManager.array.apps.0.enabled", Map("app_manager.array.apps[0].enabled", Flag)),
    env("SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC", "appManager.array.apps.0.maxBackendEventsPerSecond", Map("app_manager.array.apps[0].max_backend_events_per_second", Json)),
    env("SOKETI_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC", "appManager.array.apps.0.maxClientEventsPerSecond", Map("app_manager.array.apps[0].max_client_events_per_second", Json)),
    env("SOKETI_DEFAULT_APP_MAX_READ_REQ_PER_SEC", "appManager.array.apps.0.maxReadRequestsPerSecond", Map("app_manager.array.apps[0].max_read_requests_per_second", Json)),
    env("SOKETI_DEFAULT_APP_USER_AUTHENTICATION", "appManager.array.apps.0.enableUserAuthentication", Map("app_manager.array.apps[0].enable_user_authentication", Flag)),
    env("SOKETI_DEFAULT_APP_WEBHOOKS", "appManager.array.apps.0.webhooks", Map("app_manager.array.apps[0].webhooks", Webhooks)),
    env("SOKETI_DB_POOLING_ENABLED", "databasePooling.enabled", Warn(POOLING)),
    env("SOKETI_DB_POOLING_MIN", "databasePooling.min", Warn(POOLING)),
    env("SOKETI_DB_POOLING_MAX", "databasePooling.max", Warn(POOLING)),
    env("SOKETI_DB_MYSQL_HOST", "database.mysql.host", Map("database.mysql.host", Text)),
    env("SOKETI_DB_MYSQL_PORT", "database.mysql.port", Map("database.mysql.port", Json)),
    env("SOKETI_DB_MYSQL_USERNAME", "database.mysql.user", Map("database.mysql.username", Text)),
    env("SOKETI_DB_MYSQL_PASSWORD", "database.mysql.password", Map("database.mysql.password", Text)),
    env("SOKETI_DB_MYSQL_DATABASE", "database.mysql.database", Map("database.mysql.database", Text)),
    env("SOKETI_DB_POSTGRES_HOST", "database.postgres.host", Map("database.postgres.host", Text)),
    env("SOKETI_DB_POSTGRES_PORT", "database.postgres.port", Map("database.postgres.port", Json)),
    env("SOKETI_DB_POSTGRES_USERNAME", "database.postgres.user", Map("database.postgres.username", Text)),
    env("SOKETI_DB_POSTGRES_PASSWORD", "database.postgres.password", Map("database.postgres.password", Text)),
    env("SOKETI_DB_POSTGRES_DATABASE", "database.postgres.database", Map("database.postgres.database", Text)),
    env("SOKETI_DB_REDIS_HOST", "database.redis.host", Map("database.redis.host", Text)),
    env("SOKETI_DB_REDIS_PORT", "database.redis.port", Map("database.redis.port", Json)),
    env("SOKETI_DB_REDIS_DB", "database.redis.db", Map("database.redis.db", Json)),
    env("SOKETI_DB_REDIS_USERNAME", "database.redis.username", Map("database.redis.username", Text)),
    env("SOKETI_DB_REDIS_PASSWORD", "database.redis.password", Map("database.redis.password", Text)),
    env("SOKETI_DB_REDIS_KEY_PREFIX", "database.redis.keyPrefix", Warn("Herald prefixes its keys and channels with adapter.redis.prefix (SOKETI_ADAPTER_REDIS_PREFIX); ignored")),
    env("SOKETI_DB_REDIS_SENTINELS", "database.redis.sentinels", Map("database.redis.sentinels", Json)),
    env("SOKETI_DB_REDIS_SENTINEL_PASSWORD", "database.redis.sentinelPassword", Map("database.redis.sentinel_password", Text)),
    env("SOKETI_DB_REDIS_CLUSTER_NODES", "database.redis.clusterNodes", Map("adapter.cluster.nodes", ClusterNodes)),
    env("SOKETI_DB_REDIS_INSTANCE_NAME", "database.redis.name", Map("database.redis.name", Text)),
    env("SOKETI_EVENT_MAX_BATCH_SIZE", "eventLimits.maxBatchSize", Map("event_limits.max_batch_size", Json)),
    env("SOKETI_EVENT_MAX_CHANNELS_AT_ONCE", "eventLimits.maxChannelsAtOnce", Map("event_limits.max_channels_at_once", Json)),
    env("SOKETI_EVENT_MAX_NAME_LENGTH", "eventLimits.maxNameLength", Map("event_limits.max_name_length", Json)),
    env("SOKETI_EVENT_MAX_SIZE_IN_KB", "eventLimits.maxPayloadInKb", Map("event_limits.max_payload_in_kb", Json)),
    env("SOKETI_HOST", "host", Map("host", Text)),
    env("SOKETI_HTTP_ACCEPT_TRAFFIC_MEMORY_THRESHOLD", "httpApi.acceptTraffic.memoryThreshold", Refuse("refusing traffic under memory pressure is not implemented (Sockudo's http_api.accept_traffic is refused too); the server would keep accepting past the threshold")),
    env("SOKETI_METRICS_ENABLED", "metrics.enabled", Map("metrics.enabled", Flag)),
    env("SOKETI_METRICS_DRIVER", "metrics.driver", Warn("only Prometheus is implemented; ignored")),
    env("SOKETI_METRICS_HOST", "metrics.host", Map("metrics.host", Text)),
    env("SOKETI_METRICS_PROMETHEUS_PREFIX", "metrics.prometheus.prefix", Map("metrics.prometheus.prefix", Text)),
    env("SOKETI_METRICS_SERVER_PORT", "metrics.port", Map("metrics.port", Json)),
    env("SOKETI_MODE", "mode", Warn("Herald has no worker or server-only mode: every process serves and delivers webhooks; ignored")),
    env("SOKETI_PORT", "port", Map("port", Json)),
    env("SOKETI_PATH_PREFIX", "pathPrefix", Refuse("Herald serves /app/{key} and /apps/{id} at the root only; clients configured with the prefix could not connect")),
    env("SOKETI_PRESENCE_MAX_MEMBER_SIZE", "presence.maxMemberSizeInKb", Map("presence.max_member_size_in_kb", Json)),
    env("SOKETI_PRESENCE_MAX_MEMBERS", "presence.maxMembersPerChannel", Map("presence.max_members_per_channel", Json)),
    env("SOKETI_QUEUE_DRIVER", "queue.driver", Warn(QUEUE)),
    env("SOKETI_QUEUE_REDIS_CONCURRENCY", "queue.redis.concurrency", Warn(QUEUE)),
    env("SOKETI_QUEUE_REDIS_OPTIONS", "queue.redis.redisOptions", Warn(QUEUE)),
    env("SOKETI_QUEUE_REDIS_CLUSTER_MODE", "queue.redis.clusterMode", Warn(QUEUE)),
    env("SOKETI_QUEUE_SQS_REGION", "queue.sqs.region", Warn(QUEUE)),
    env("SOKETI_QUEUE_SQS_CLIENT_OPTIONS", "queue.sqs.clientOptions", Warn(QUEUE)),
    env("SOKETI_QUEUE_SQS_URL", "queue.sqs.queueUrl", Warn(QUEUE)),
    env("SOKETI_QUEUE_SQS_ENDPOINT", "queue.sqs.endpoint", Warn(QUEUE)),
    env("SOKETI_QUEUE_SQS_PROCESS_BATCH", "queue.sqs.processBatch", Warn(QUEUE)),
    env("SOKETI_QUEUE_SQS_BATCH_SIZE", "queue.sqs.batchSize", Warn(QUEUE)),
    env("SOKETI_QUEUE_SQS_POLLING_WAIT_TIME_MS", "queue.sqs.pollingWaitTimeMs", Warn(QUEUE)),
    env("SOKETI_RATE_LIMITER_DRIVER", "rateLimiter.driver", SharedQuotas("a cluster counts app quotas in the adapter's Redis, a lone node in its memory; with redis here, set SOKETI_ADAPTER_DRIVER=redis too, or nodes that each run alone would allow each quota once per node")),
    env("SOKETI_RATE_LIMITER_REDIS_OPTIONS", "rateLimiter.redis.redisOptions", Warn("a cluster counts app quotas in the adapter's Redis; ignored")),
    env("SOKETI_RATE_LIMITER_REDIS_CLUSTER_MODE", "rateLimiter.redis.clusterMode", Warn("a cluster counts app quotas in the adapter's Redis; ignored")),
    env("SOKETI_SHUTDOWN_GRACE_PERIOD", "shutdownGracePeriod", Map("shutdown_grace_period", MsToSeconds)),
    env("SOKETI_SSL_CERT", "ssl.certPath", Map("ssl.cert_path", TlsFile)),
    env("SOKETI_SSL_KEY", "ssl.keyPath", Map("ssl.key_path", TlsFile)),
    env("SOKETI_SSL_PASS", "ssl.passphrase", Map("ssl.passphrase", Text)),
    env("SOKETI_SSL_CA", "ssl.caPath", Refuse("soketi (uWebSockets) asks clients for a certificate and verifies it against this CA; Herald does not verify client certificates (its ssl.ca_path only adds intermediates to the served chain)")),
    env("SOKETI_USER_AUTHENTICATION_TIMEOUT", "userAuthenticationTimeout", Map("user_authentication_timeout", MsToSeconds)),
    env("SOKETI_WEBHOOKS_BATCHING", "webhooks.batching.enabled", Map("webhooks.batching.enabled", Flag)),
    env("SOKETI_WEBHOOKS_BATCHING_DURATION", "webhooks.batching.duration", Map("webhooks.batching.duration", Json)),
    file("appManager.array.apps", Map("app_manager.array.apps", Apps)),
    file("cors.credentials", Map("cors.credentials", Flag)),
    file("cors.origin", Map("cors.origin", Json)),
    file("cors.methods", Map("cors.methods", Json)),
    file("cors.allowedHeaders", Map("cors.allowed_headers", Json)),
    file("httpApi.requestLimitInMb", Map("http_api.request_limit_in_mb", Json)),
    file("instance.process_id", Warn("Herald names a cluster node with adapter.node_id (HERALD_NODE_ID); ignored")),
    file("queue.sqs.consumerOptions", Warn(QUEUE)),
];
