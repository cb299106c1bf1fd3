//! The server-wide sections of `config.json`, one function each: the metrics endpoint, the
//! console, webhooks, the HTTP API's bounds, timeouts and channel settings; the units helpers
//! every section uses (KB, seconds, milliseconds).

use std::time::Duration;

use super::raw::{RawConfig, RawHttpApi, RawMetrics};
use super::webhook::{self, WebhookDefaults};
use super::{AppConfig, ConfigError};

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

pub(super) fn bytes(path: &str, value: Option<u64>, default: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::invalid(path, "must be at least 1 byte")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

const KB: f64 = 1024.0;

pub(super) fn kb(path: &str, value: Option<f64>, default_kb: f64) -> Result<usize, ConfigError> {
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
pub(super) fn webhooks_config(
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
pub(super) fn positive_millis(
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
pub(super) fn webhook_defaults(raw: &RawConfig) -> Result<WebhookDefaults, ConfigError> {
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
pub(super) fn metrics_config(raw: RawMetrics) -> Result<MetricsConfig, ConfigError> {
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

/// The apps of `app_manager.array` (the file's apps, driver `memory`/`array`).
pub(super) fn apps(
    raw: &RawConfig,
    defaults: &WebhookDefaults,
) -> Result<Vec<AppConfig>, ConfigError> {
    let apps = raw.app_manager.array.apps.iter().enumerate();
    apps.map(|(i, app)| {
        AppConfig::from_raw(&format!("app_manager.array.apps[{i}]"), app, raw, defaults)
    })
    .collect()
}

/// The smallest request-head limit: hyper's own floor, below which its parser cannot work.
const MIN_HEADER_LIMIT: usize = 8192;

/// Trusted proxy hops: Sockudo's `trust_hops`, else one when the older
/// `trust_x_forwarded_for` is on (its left-most entry could be forged by any client).
pub(super) fn trust_hops(raw: &RawConfig) -> usize {
    let hops = raw.rate_limiter.websocket_rate_limit.trust_hops;
    let legacy = raw.trust_x_forwarded_for == Some(true);
    hops.map_or(usize::from(legacy), |n| n.min(16) as usize)
}

/// Timeouts are at least a second and at most a day.
pub(super) fn seconds(
    path: &str,
    value: Option<u64>,
    default: u64,
) -> Result<Duration, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::invalid(path, "must be at least 1 second")),
        secs if secs > 86_400 => Err(ConfigError::invalid(
            path,
            format!("{secs} s is over the limit of one day"),
        )),
        secs => Ok(Duration::from_secs(secs)),
    }
}

/// The REST API's and every listener's bounds (`http_api`).
#[derive(Clone, Debug)]
pub struct HttpApiConfig {
    /// Largest REST request body.
    pub request_limit: usize,
    /// How long a REST request body may take to arrive once its headers have.
    pub body_timeout: Duration,
    /// How long request headers may take to arrive, on every listener.
    pub header_timeout: Duration,
    /// Bytes of REST request bodies being read at once, over every connection.
    pub body_budget: usize,
    /// Largest request head (request line and headers), on every listener; larger gets 431.
    pub max_header: usize,
}

/// The `http_api` section.
pub(super) fn http_api(raw: &RawHttpApi) -> Result<HttpApiConfig, ConfigError> {
    Ok(HttpApiConfig {
        request_limit: kb(
            "http_api.request_limit_in_mb",
            raw.request_limit_in_mb.map(|mb| mb * KB),
            10.0 * KB,
        )?,
        body_timeout: positive_millis(
            "http_api.body_timeout_ms",
            raw.body_timeout_ms,
            Duration::from_millis(5000),
        )?,
        header_timeout: positive_millis(
            "http_api.header_timeout_ms",
            raw.header_timeout_ms,
            Duration::from_millis(30_000),
        )?,
        body_budget: kb(
            "http_api.max_buffered_body_mb",
            raw.max_buffered_body_mb.map(|mb| mb * KB),
            64.0 * KB,
        )?,
        max_header: kb("http_api.max_header_kb", raw.max_header_kb, 32.0)?.max(MIN_HEADER_LIMIT),
    })
}

/// `webhooks.batching.duration`: not negative, 50 ms by default.
pub(super) fn batching_duration(raw: &RawConfig) -> Result<Duration, ConfigError> {
    match raw.webhooks.batching.duration {
        Some(ms) if ms < 0 => Err(ConfigError::invalid(
            "webhooks.batching.duration",
            format!("must not be negative, got {ms}"),
        )),
        Some(ms) => Ok(Duration::from_millis(ms as u64)),
        None => Ok(Duration::from_millis(50)),
    }
}

/// `channel_limits.max_channels_per_connection`: at least 1, 1000 by default.
pub(super) fn max_channels_per_connection(raw: &RawConfig) -> Result<usize, ConfigError> {
    match raw.channel_limits.max_channels_per_connection {
        Some(0) => Err(ConfigError::invalid(
            "channel_limits.max_channels_per_connection",
            "must be at least 1",
        )),
        other => Ok(other.unwrap_or(1000) as usize),
    }
}
