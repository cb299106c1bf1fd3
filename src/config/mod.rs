//! The `config.json` schema (Sockudo-compatible), its defaults, environment overrides and validation.
//!
//! The file is read into loose serde types (`raw`), then validated once into the typed [`Config`].
//! Keys Herald does not know are collected with their full path and logged as warnings; a wrong
//! value of a known key fails start-up with the file and the key path.

mod app;
mod cluster;
mod decision_hooks;
mod env;
mod event_kind;
mod lenient;
mod raw;
mod redact;
mod webhook;

use std::path::Path;
use std::time::Duration;

pub use app::AppConfig;
pub use cluster::{ClusterConfig, RedisConfig};
pub use decision_hooks::{DecisionHooksConfig, HookKind, OnFailure};
pub use env::apply_env;
pub use event_kind::{ChannelTypeFilter, EventKind, EventKinds, EVENT_TYPES};
pub use redact::redacted;
pub use webhook::{LambdaTarget, RetryPolicy, SignatureScheme, WebhookEndpoint, WebhookTarget};

use raw::{RawConfig, RawMetrics};
use webhook::WebhookDefaults;

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

/// The metrics endpoint.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    /// Serve `/metrics` on its own port.
    pub enabled: bool,
    /// Bind address.
    pub host: String,
    /// Port (0 picks a free one).
    pub port: u16,
    /// Prefix of every metric name.
    pub prefix: String,
}

/// The debug console at `/console`.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// `console.enabled`: serve it (and keep each app's journal of recent events).
    pub enabled: bool,
    /// `console.token` / `$HERALD_CONSOLE_TOKEN`; one is made at start-up when none is set.
    pub token: Option<String>,
}

/// Shortest console token accepted: a guessable one would open every app.
const MIN_CONSOLE_TOKEN: usize = 16;

/// A configured console token, checked at `path`.
pub(crate) fn console_token(path: &str, token: String) -> Result<String, ConfigError> {
    if token.len() < MIN_CONSOLE_TOKEN {
        return Err(ConfigError::invalid(
            path,
            format!("must be at least {MIN_CONSOLE_TOKEN} characters"),
        ));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ConfigError::invalid(
            path,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(token)
}

/// Global webhook settings.
#[derive(Clone, Debug)]
pub struct WebhooksConfig {
    /// `webhooks.batching.enabled`.
    pub batching_enabled: bool,
    /// `webhooks.batching.duration`: how long a batch collects events.
    pub batching_duration: Duration,
    /// `webhooks.batching.max_events`: a batch is sent early at this size.
    pub batching_max_events: usize,
    /// How long `channel_vacated` / `member_removed` are held (0 disables).
    pub grace_period: Duration,
    /// `webhooks.queue.max_bytes`: serialized event bytes one app's queues may hold.
    pub queue_max_bytes: usize,
    /// `webhooks.queue.max_total_bytes`: the same, summed over every app of the process.
    pub queue_max_total_bytes: usize,
}

/// Default of `webhooks.queue.max_bytes`: 256 MiB, about three million typical events.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 256 << 20;
/// Default of `webhooks.queue.max_total_bytes`: 1 GiB.
pub const DEFAULT_QUEUE_MAX_TOTAL_BYTES: usize = 1 << 30;

fn bytes(path: &str, value: Option<u64>, default: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::invalid(path, "must be at least 1 byte")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
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
    /// Largest inbound WebSocket message; larger ones close the socket with 1009.
    pub websocket_max_payload: usize,
    /// Bytes queued for one socket before it counts as a slow consumer (closed with 4100).
    pub outbound_buffer: usize,
    /// WebSocket connections the process accepts at once (`None`: unbounded).
    pub max_connections: Option<usize>,
    /// Largest REST request body.
    pub http_request_limit: usize,
    /// How long a REST request body may take to arrive once its headers have.
    pub http_body_timeout: Duration,
    /// How long request headers may take to arrive, on every listener.
    pub http_header_timeout: Duration,
    /// Largest request head (request line and headers), on every listener; larger gets 431.
    pub http_max_header: usize,
    /// Bytes of REST request bodies being read at once, over every connection.
    pub http_body_budget: usize,
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
    /// The apps (`app_manager.array.apps`).
    pub apps: Vec<AppConfig>,
    /// The debug console.
    pub console: ConsoleConfig,
    /// `trust_x_forwarded_for` as written: now read as one trusted proxy hop.
    pub trust_x_forwarded_for: bool,
    /// Proxies in front of Herald whose `X-Forwarded-For` entries are trusted: a client's
    /// address is the entry this many from the right (`rate_limiter.websocket_rate_limit.trust_hops`).
    pub trust_hops: usize,
    /// Keys of the file that Herald ignored, with their full path.
    pub unknown_keys: Vec<String>,
}

const KB: f64 = 1024.0;

fn kb(path: &str, value: Option<f64>, default_kb: f64) -> Result<usize, ConfigError> {
    let value = value.unwrap_or(default_kb);
    if !(value > 0.0 && value.is_finite()) {
        return Err(ConfigError::invalid(
            path,
            format!("must be a positive size in KB, got {value}"),
        ));
    }
    Ok((value * KB) as usize)
}

/// The `webhooks` section's own settings.
fn webhooks_config(
    raw: &RawConfig,
    batching_duration: Duration,
) -> Result<WebhooksConfig, ConfigError> {
    Ok(WebhooksConfig {
        batching_enabled: raw.webhooks.batching.enabled.unwrap_or(true),
        batching_duration,
        batching_max_events: raw.webhooks.batching.max_events.unwrap_or(100).max(1) as usize,
        grace_period: Duration::from_millis(raw.webhooks.grace_period_ms.unwrap_or(3000)),
        queue_max_bytes: bytes(
            "webhooks.queue.max_bytes",
            raw.webhooks.queue.max_bytes,
            DEFAULT_QUEUE_MAX_BYTES,
        )?,
        queue_max_total_bytes: bytes(
            "webhooks.queue.max_total_bytes",
            raw.webhooks.queue.max_total_bytes,
            DEFAULT_QUEUE_MAX_TOTAL_BYTES,
        )?,
    })
}

/// A duration in milliseconds that must be above zero.
fn positive_millis(
    path: &str,
    value: Option<u64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::invalid(path, "must be above 0")),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Ok(default),
    }
}

/// The endpoint defaults under `webhooks`, from Pusher's values.
fn webhook_defaults(raw: &RawConfig) -> Result<WebhookDefaults, ConfigError> {
    let pusher = WebhookDefaults::pusher();
    Ok(WebhookDefaults {
        retry: webhook::retry_policy("webhooks.retry", raw.webhooks.retry.as_ref(), &pusher.retry)?,
        request_timeout: positive_millis(
            "webhooks.request_timeout_ms",
            raw.webhooks.request_timeout_ms,
            pusher.request_timeout,
        )?,
        max_in_flight: webhook::max_in_flight(
            "webhooks.max_in_flight",
            raw.webhooks.max_in_flight,
            pusher.max_in_flight,
        )?,
    })
}

/// The `metrics` section; the prefix must start a valid Prometheus metric name.
fn metrics_config(raw: RawMetrics) -> Result<MetricsConfig, ConfigError> {
    let prefix = raw
        .prometheus
        .prefix
        .unwrap_or_else(|| "herald_".to_owned());
    let valid = prefix.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if !valid {
        return Err(ConfigError::invalid(
            "metrics.prometheus.prefix",
            format!("{prefix:?} is not a valid metric name prefix (letters, digits, '_' and ':', not starting with a digit)"),
        ));
    }
    Ok(MetricsConfig {
        enabled: raw.enabled.unwrap_or(true),
        // Metrics say a lot about the apps: only this machine sees them unless asked.
        host: raw.host.unwrap_or_else(|| "127.0.0.1".to_owned()),
        port: raw.port.unwrap_or(9601),
        prefix,
    })
}

/// The apps of `app_manager` (only the memory driver's array).
fn apps(raw: &RawConfig, defaults: &WebhookDefaults) -> Result<Vec<AppConfig>, ConfigError> {
    let apps = raw.app_manager.array.apps.iter().enumerate();
    let apps = apps
        .map(|(i, app)| {
            AppConfig::from_raw(&format!("app_manager.array.apps[{i}]"), app, raw, defaults)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(driver) = raw.app_manager.driver.as_deref() {
        if driver != "memory" && driver != "array" {
            return Err(ConfigError::invalid(
                "app_manager.driver",
                format!("{driver:?} is not supported; Herald reads apps from app_manager.array (driver \"memory\")"),
            ));
        }
    }
    Ok(apps)
}

/// The smallest request-head limit: hyper's own floor, below which its parser cannot work.
const MIN_HEADER_LIMIT: usize = 8192;

/// Trusted proxy hops: Sockudo's `trust_hops`, else one when the older
/// `trust_x_forwarded_for` is on (its left-most entry could be forged by any client).
fn trust_hops(raw: &RawConfig) -> usize {
    let hops = raw.rate_limiter.websocket_rate_limit.trust_hops;
    let legacy = raw.trust_x_forwarded_for == Some(true);
    hops.map_or(usize::from(legacy), |n| n.min(16) as usize)
}

/// Timeouts are at least a second and at most a day.
fn seconds(path: &str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::invalid(path, "must be at least 1 second")),
        secs if secs > 86_400 => Err(ConfigError::invalid(
            path,
            format!("{secs} s is over the limit of one day"),
        )),
        secs => Ok(Duration::from_secs(secs)),
    }
}

impl Config {
    /// Reads and validates a config file, then applies environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid("(file)", format!("cannot read: {e}")).in_file(path)
        })?;
        let config = Config::from_json(&text).map_err(|e| e.in_file(path))?;
        apply_env(config, &|name| std::env::var(name).ok()).map_err(|e| e.in_file(path))
    }

    /// Validates a config document; environment overrides are not applied.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let mut unknown_keys = Vec::new();
        let mut json = serde_json::Deserializer::from_str(text);
        let mut record = |path: serde_ignored::Path<'_>| unknown_keys.push(format_path(&path));
        let ignored = serde_ignored::Deserializer::new(&mut json, &mut record);
        let raw: RawConfig = serde_path_to_error::deserialize(ignored).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::invalid(
                if path == "." { "(root)" } else { &path },
                e.into_inner().to_string(),
            )
        })?;
        let mut config = Config::from_raw(raw)?;
        config.unknown_keys = unknown_keys;
        Ok(config)
    }

    /// The configuration with no file at all: defaults only (apps come from the environment).
    pub fn defaults() -> Config {
        Config::from_raw(RawConfig::default()).expect("defaults are valid")
    }

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let webhook_defaults = webhook_defaults(&raw)?;
        let batching_duration = match raw.webhooks.batching.duration {
            Some(ms) if ms < 0 => {
                return Err(ConfigError::invalid(
                    "webhooks.batching.duration",
                    format!("must not be negative, got {ms}"),
                ))
            }
            Some(ms) => Duration::from_millis(ms as u64),
            None => Duration::from_millis(50),
        };
        let apps = apps(&raw, &webhook_defaults)?;
        let webhooks = webhooks_config(&raw, batching_duration)?;
        let trust_hops = trust_hops(&raw);
        let config = Config {
            host: raw.host.unwrap_or_else(|| "0.0.0.0".to_owned()),
            port: raw.port.unwrap_or(6001),
            debug: raw.debug.unwrap_or(false),
            trust_x_forwarded_for: raw.trust_x_forwarded_for.unwrap_or(false),
            trust_hops,
            console: ConsoleConfig {
                enabled: raw.console.enabled.unwrap_or(true),
                token: raw
                    .console
                    .token
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
            websocket_max_payload: kb(
                "websocket_max_payload_kb",
                raw.websocket_max_payload_kb,
                64.0,
            )?,
            outbound_buffer: kb("outbound_buffer_kb", raw.outbound_buffer_kb, 1024.0)?,
            max_connections: raw.max_connections.filter(|&n| n > 0).map(|n| n as usize),
            http_request_limit: kb(
                "http_api.request_limit_in_mb",
                raw.http_api.request_limit_in_mb.map(|mb| mb * KB),
                10.0 * KB,
            )?,
            http_body_timeout: positive_millis(
                "http_api.body_timeout_ms",
                raw.http_api.body_timeout_ms,
                Duration::from_millis(5000),
            )?,
            http_header_timeout: positive_millis(
                "http_api.header_timeout_ms",
                raw.http_api.header_timeout_ms,
                Duration::from_millis(30_000),
            )?,
            http_max_header: kb("http_api.max_header_kb", raw.http_api.max_header_kb, 32.0)?
                .max(MIN_HEADER_LIMIT),
            http_body_budget: kb(
                "http_api.max_buffered_body_mb",
                raw.http_api.max_buffered_body_mb.map(|mb| mb * KB),
                64.0 * KB,
            )?,
            channel_cache_ttl: seconds(
                "channel_limits.cache_ttl",
                raw.channel_limits.cache_ttl,
                1800,
            )?,
            subscription_count_interval: Duration::from_millis(
                raw.channel_limits
                    .subscription_count_interval_ms
                    .unwrap_or(500),
            ),
            max_channels_per_connection: match raw.channel_limits.max_channels_per_connection {
                Some(0) => {
                    return Err(ConfigError::invalid(
                        "channel_limits.max_channels_per_connection",
                        "must be at least 1",
                    ))
                }
                other => other.unwrap_or(1000) as usize,
            },
            metrics: metrics_config(raw.metrics)?,
            cluster: cluster::cluster_config(&raw.adapter, &raw.database)?,
            webhooks,
            apps,
            unknown_keys: Vec::new(),
        };
        config.check_unique_apps()?;
        Ok(config)
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
