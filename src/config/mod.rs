//! The `config.json` schema (Sockudo-compatible), its defaults, environment overrides and validation.
//!
//! The file is read into loose serde types (`raw`), then validated once into the typed [`Config`].
//! Keys Herald does not know are collected with their full path and logged as warnings; a wrong
//! value of a known key fails start-up with the file and the key path.

mod app;
mod app_json;
mod app_store;
mod cluster;
mod cors;
mod decision_hooks;
mod env;
mod event_kind;
mod lenient;
mod namespaces;
mod origins;
mod policy;
mod rate_limit;
mod raw;
mod redact;
mod redis_cluster;
mod sections;
mod sentinel;
mod soketi;
mod tls;
mod unimplemented;
mod webhook;
mod websocket;

use std::path::Path;
use std::time::Duration;

pub use app::{AppConfig, MessageRateLimit};
pub use app_json::AppDefaults;
pub use app_store::{AppCacheConfig, AppStoreConfig, AppStoreDriver};
pub use cluster::{ClusterConfig, RedisConfig};
pub use cors::CorsConfig;
pub use decision_hooks::{DecisionHooksConfig, HookKind, OnFailure};
pub use env::apply_env;
pub use event_kind::{ChannelTypeFilter, EventKind, EventKinds, EVENT_TYPES};
pub use namespaces::ChannelNamespaces;
pub use origins::OriginAllowlist;
pub use rate_limit::{RateLimit, RateLimiterConfig};
pub use redact::redacted;
pub use redis_cluster::RedisClusterConfig;
pub(crate) use sections::console_token;
use sections::{kb, seconds};
pub use sections::{
    ConsoleConfig, HttpApiConfig, MetricsConfig, WebhooksConfig, DEFAULT_QUEUE_MAX_BYTES,
    DEFAULT_QUEUE_MAX_TOTAL_BYTES,
};
pub use sentinel::SentinelConfig;
pub use soketi::{is_soketi, ConfigFormat, DotEnv, TranslatedKey, DOTENV_MAX_BYTES};
pub use tls::TlsConfig;
pub use unimplemented::IgnoredKey;
pub use webhook::{LambdaTarget, RetryPolicy, SignatureScheme, WebhookEndpoint, WebhookTarget};
pub use websocket::{CompressionConfig, OutboundLimits};

use raw::RawConfig;

/// A config value Herald cannot use, with the key path (and file) that holds it.
#[derive(Debug, thiserror::Error)]
#[error("{}{path}: {message}", file.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct ConfigError {
    /// The file, when the value came from one.
    pub file: Option<String>,
    /// The key path, e.g. `app_manager.array.apps[0].webhooks[1].filter.channel_type`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn invalid(path: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.display().to_string());
        self
    }
}

/// The validated server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bind address of the WebSocket and REST listener.
    pub host: String,
    /// Port of the WebSocket and REST listener (0 picks a free one).
    pub port: u16,
    /// Verbose logging.
    pub debug: bool,
    /// Silence after which the server pings a socket; also announced to clients.
    pub activity_timeout: Duration,
    /// How long a ping may go unanswered before closing with 4201.
    pub pong_timeout: Duration,
    /// Sign-in deadline for apps with `enable_user_authentication`.
    pub user_authentication_timeout: Duration,
    /// Bound on the wait for sockets and deliveries at shutdown.
    pub shutdown_grace_period: Duration,
    /// How long a draining server keeps its sockets open before closing them with 4200
    /// (Herald's `shutdown_drain_delay_ms`), so a load balancer sees `/ready` fail first.
    pub shutdown_drain_delay: Duration,
    /// Largest inbound WebSocket message; larger ones close the socket with 1009.
    pub websocket_max_payload: usize,
    /// What one socket's outbound queue may hold before it counts as a slow consumer, and what
    /// happens then (`outbound_buffer_kb` and Sockudo's `websocket` block).
    pub outbound: OutboundLimits,
    /// `permessage-deflate` for clients that offer it (`websocket.compression`).
    pub compression: CompressionConfig,
    /// WebSocket connections the process accepts at once (`None`: unbounded).
    pub max_connections: Option<usize>,
    /// The REST API's and every listener's bounds (`http_api`).
    pub http: HttpApiConfig,
    /// Which pages may call the REST API (`cors`); none sends no CORS headers.
    pub cors: Option<CorsConfig>,
    /// TLS on the server port (`ssl`); none serves plain `ws://` and `http://`.
    pub tls: Option<TlsConfig>,
    /// Per-address limits on REST requests and upgrades (`rate_limiter`); none limits nothing.
    pub rate_limiter: Option<RateLimiterConfig>,
    /// How long a cache channel keeps its last event.
    pub channel_cache_ttl: Duration,
    /// At most one `subscription_count` per channel per this long (zero: every change).
    pub subscription_count_interval: Duration,
    /// Channels one connection may be subscribed to at once.
    pub max_channels_per_connection: usize,
    /// Metrics endpoint.
    pub metrics: MetricsConfig,
    /// Webhook settings.
    pub webhooks: WebhooksConfig,
    /// Alone, or one node of a cluster on Redis (`adapter`).
    pub cluster: ClusterConfig,
    /// The apps (`app_manager.array.apps`); none when they come from a database.
    pub apps: Vec<AppConfig>,
    /// The database apps come from (`app_manager.driver` `pgsql`/`mysql`); none reads the file.
    pub app_store: Option<AppStoreConfig>,
    /// The global defaults an app takes, for apps validated after start-up (database rows).
    pub app_defaults: AppDefaults,
    /// The debug console.
    pub console: ConsoleConfig,
    /// `trust_x_forwarded_for` as written: now read as one trusted proxy hop.
    pub trust_x_forwarded_for: bool,
    /// Proxies in front of Herald whose `X-Forwarded-For` entries are trusted: a client's
    /// address is the entry this many from the right (`rate_limiter.websocket_rate_limit.trust_hops`).
    pub trust_hops: usize,
    /// Keys of the file that Herald ignores, with their full path and why (logged at start-up).
    pub ignored_keys: Vec<IgnoredKey>,
    /// soketi options (variables or keys) read as Sockudo keys.
    pub translated_keys: Vec<TranslatedKey>,
}

impl Config {
    /// Reads and validates a config file, then applies environment overrides (the process
    /// environment, the file's format detected).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(Some(path), ConfigFormat::Auto, &|name| {
            std::env::var(name).ok()
        })
    }

    /// The one way a configuration is loaded (at start-up and on reload): the file at `path`
    /// (none: defaults) read in `format`, then the `SOKETI_*` variables of `var` over it, then
    /// validation, then the `HERALD_*` variables. So `HERALD_*` wins over `SOKETI_*`, which
    /// wins over the file; an error names the file's key or the variable as written.
    pub fn load_with(
        path: Option<&Path>,
        format: ConfigFormat,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        // A variable's error is not the file's.
        let in_file = |e: ConfigError| match path {
            Some(path) if !e.path.starts_with('$') => e.in_file(path),
            _ => e,
        };
        let text = match path {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid("(file)", format!("cannot read: {e}")).in_file(path)
            })?),
            None => None,
        };
        let (document, overlay) = soketi::prepare(text.as_deref(), format, var).map_err(in_file)?;
        let mut config = Config::from_value(document).map_err(|e| in_file(overlay.rename(e)))?;
        for key in &mut config.ignored_keys {
            key.path = overlay
                .source_of(&key.path)
                .unwrap_or_else(|| key.path.clone());
        }
        config.ignored_keys.extend(overlay.ignored);
        config.translated_keys = overlay.translated;
        apply_env(config, var).map_err(in_file)
    }

    /// Validates a config document; environment overrides are not applied.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let document: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ConfigError::invalid("(root)", e.to_string()))?;
        Config::from_value(document)
    }

    /// Validates a parsed config document (Sockudo's schema).
    fn from_value(mut document: serde_json::Value) -> Result<Config, ConfigError> {
        // Sockudo's `policy`-shaped apps are read as flat ones; `moved` names keys as written.
        let moved = policy::flatten_policies(&mut document);
        let mut unused = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| unused.push(format_path(&path));
        let ignored = serde_ignored::Deserializer::new(&document, &mut record);
        let raw: RawConfig = serde_path_to_error::deserialize(ignored).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "(root)".into()
            } else {
                moved.original(&path)
            };
            ConfigError::invalid(&path, e.into_inner().to_string())
        })?;
        let mut config = Config::from_raw(raw).map_err(|mut e| {
            e.path = moved.original(&e.path);
            e
        })?;
        config.ignored_keys = unimplemented::classify(&document, &unused, &moved)?;
        if let Some(store) = &config.app_store {
            let file_apps = document.pointer("/app_manager/array/apps");
            if file_apps
                .and_then(|apps| apps.as_array())
                .is_some_and(|a| !a.is_empty())
            {
                config.ignored_keys.push(IgnoredKey {
                    path: "app_manager.array.apps".into(),
                    reason: format!(
                        "apps come from the database ({}); the file's apps are ignored",
                        store.driver.section()
                    ),
                });
            }
        }
        Ok(config)
    }

    /// The configuration with no file at all: defaults only (apps come from the environment).
    pub fn defaults() -> Config {
        Config::from_raw(RawConfig::default()).expect("defaults are valid")
    }

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let webhook_defaults = sections::webhook_defaults(&raw)?;
        let app_store = app_store::app_store(&raw)?;
        let apps = match app_store {
            Some(_) => Vec::new(),
            None => sections::apps(&raw, &webhook_defaults)?,
        };
        let config = Config {
            apps,
            app_store,
            app_defaults: AppDefaults::of(&raw, webhook_defaults),
            webhooks: sections::webhooks_config(&raw, sections::batching_duration(&raw)?)?,
            http: sections::http_api(&raw.http_api)?,
            cors: cors::cors(raw.cors.as_ref())?,
            tls: tls::tls(raw.ssl.as_ref())?,
            rate_limiter: rate_limit::rate_limiter(&raw.rate_limiter, sections::trust_hops(&raw))?,
            trust_hops: sections::trust_hops(&raw),
            console: ConsoleConfig {
                enabled: raw.console.enabled.unwrap_or(true),
                token: (raw.console.token.clone())
                    .map(|token| console_token("console.token", token))
                    .transpose()?,
            },
            activity_timeout: seconds("activity_timeout", raw.activity_timeout, 120)?,
            pong_timeout: seconds("pong_timeout", raw.pong_timeout, 30)?,
            user_authentication_timeout: seconds(
                "user_authentication_timeout",
                raw.user_authentication_timeout,
                30,
            )?,
            shutdown_grace_period: Duration::from_secs(raw.shutdown_grace_period.unwrap_or(10)),
            shutdown_drain_delay: Duration::from_millis(raw.shutdown_drain_delay_ms.unwrap_or(0)),
            websocket_max_payload: websocket::inbound_limit(
                kb(
                    "websocket_max_payload_kb",
                    raw.websocket_max_payload_kb,
                    64.0,
                )?,
                &raw.websocket,
            ),
            outbound: websocket::outbound_limits(
                kb("outbound_buffer_kb", raw.outbound_buffer_kb, 1024.0)?,
                &raw.websocket,
            ),
            compression: websocket::compression(&raw.websocket)?,
            max_connections: raw.max_connections.filter(|&n| n > 0).map(|n| n as usize),
            channel_cache_ttl: seconds(
                "channel_limits.cache_ttl",
                raw.channel_limits.cache_ttl,
                1800,
            )?,
            subscription_count_interval: Duration::from_millis(
                (raw.channel_limits.subscription_count_interval_ms).unwrap_or(500),
            ),
            max_channels_per_connection: sections::max_channels_per_connection(&raw)?,
            cluster: cluster::cluster_config(&raw.adapter, &raw.database)?,
            trust_x_forwarded_for: raw.trust_x_forwarded_for.unwrap_or(false),
            host: raw.host.unwrap_or_else(|| "0.0.0.0".to_owned()),
            port: raw.port.unwrap_or(6001),
            debug: raw.debug.unwrap_or(false),
            metrics: sections::metrics_config(raw.metrics)?,
            ignored_keys: Vec::new(),
            translated_keys: Vec::new(),
        };
        config.check_unique_apps()?;
        Ok(config)
    }

    /// Validates one app in `config.json`'s app shape with this file's global defaults (see
    /// [`AppDefaults::app_from_json`]).
    pub fn app_from_json(
        &self,
        path: &str,
        app: serde_json::Value,
    ) -> Result<AppConfig, ConfigError> {
        self.app_defaults.app_from_json(path, app)
    }

    /// App ids and keys must be unique: a duplicate would shadow another app's traffic.
    pub(crate) fn check_unique_apps(&self) -> Result<(), ConfigError> {
        for (i, app) in self.apps.iter().enumerate() {
            for earlier in &self.apps[..i] {
                if earlier.id == app.id {
                    return Err(ConfigError::invalid(
                        &format!("app_manager.array.apps[{i}].id"),
                        format!("duplicate app id {:?}", app.id),
                    ));
                }
                if earlier.key == app.key {
                    return Err(ConfigError::invalid(
                        &format!("app_manager.array.apps[{i}].key"),
                        format!("duplicate app key {:?}", app.key),
                    ));
                }
                // A cluster names a channel's topic `{app}:{channel}`, and both may hold ':'.
                let (short, long) = match earlier.id.len() < app.id.len() {
                    true => (&earlier.id, &app.id),
                    false => (&app.id, &earlier.id),
                };
                let ambiguous = long
                    .strip_prefix(short.as_str())
                    .is_some_and(|rest| rest.starts_with(':'));
                if ambiguous && matches!(self.cluster, ClusterConfig::Redis(_)) {
                    return Err(ConfigError::invalid(
                        &format!("app_manager.array.apps[{i}].id"),
                        format!(
                            "app ids {:?} and {:?} cannot share a cluster: one is the other \
                             followed by ':', so their channels' topics could be the same",
                            earlier.id, app.id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `a.b[0].c` from serde_ignored's path.
fn format_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", format_path(parent)),
        Path::Map { parent, key } => {
            let parent = format_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => format_path(parent),
    }
}

#[cfg(test)]
mod tests;
