//! The `config.json` file as written: Sockudo's key names, every key optional.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::app_store::RawAppCache;
use super::cluster::{RawAdapter, RawDatabase};
use super::cors::RawCors;
use super::decision_hooks::RawDecisionHooks;
use super::lenient;
use super::namespaces::RawNamespace;
use super::rate_limit::RawRateLimiter;
use super::tls::RawSsl;
use super::websocket::RawWebSocket;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawConfig {
    #[serde(deserialize_with = "lenient::opt")]
    pub debug: Option<bool>,
    pub host: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub port: Option<u16>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_connections: Option<i64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub activity_timeout: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub pong_timeout: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub user_authentication_timeout: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub shutdown_grace_period: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub shutdown_drain_delay_ms: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub websocket_max_payload_kb: Option<f64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub outbound_buffer_kb: Option<f64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub trust_x_forwarded_for: Option<bool>,
    pub app_manager: RawAppManager,
    pub presence: RawPresence,
    pub channel_limits: RawChannelLimits,
    pub event_limits: RawEventLimits,
    pub http_api: RawHttpApi,
    pub metrics: RawMetrics,
    pub webhooks: RawWebhooks,
    pub adapter: RawAdapter,
    pub database: RawDatabase,
    pub console: RawConsole,
    pub rate_limiter: RawRateLimiter,
    pub websocket: RawWebSocket,
    pub cors: Option<RawCors>,
    pub ssl: Option<RawSsl>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConsole {
    #[serde(deserialize_with = "lenient::opt")]
    pub enabled: Option<bool>,
    pub token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAppManager {
    pub driver: Option<String>,
    pub array: RawAppArray,
    pub cache: RawAppCache,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAppArray {
    pub apps: Vec<RawApp>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawApp {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub key: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub secret: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_connections: Option<i64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub enable_client_messages: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub enable_user_authentication: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub enable_subscription_count: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub enable_watchlist_events: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_client_events_per_second: Option<i64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_presence_members_per_channel: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_presence_member_size_in_kb: Option<f64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_channel_name_length: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_event_channels_at_once: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_event_name_length: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_event_payload_in_kb: Option<f64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_event_batch_size: Option<u64>,
    pub webhooks: Option<Vec<RawWebhook>>,
    pub decision_hooks: Option<RawDecisionHooks>,
    pub allowed_origins: Option<Vec<String>>,
    pub channel_namespaces: Option<Vec<RawNamespace>>,
    #[serde(deserialize_with = "lenient::opt")]
    pub decay_seconds: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub terminate_on_limit: Option<bool>,
    pub message_rate_limit: Option<RawMessageRateLimit>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_backend_events_per_second: Option<i64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_read_requests_per_second: Option<i64>,
}

/// Sockudo's per-socket limit on every inbound message.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawMessageRateLimit {
    #[serde(deserialize_with = "lenient::opt")]
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_attempts: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub decay_seconds: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub terminate_on_limit: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct RawPresence {
    #[serde(deserialize_with = "lenient::opt")]
    pub max_members_per_channel: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_member_size_in_kb: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawChannelLimits {
    #[serde(deserialize_with = "lenient::opt")]
    pub max_name_length: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub cache_ttl: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_channels_per_connection: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub subscription_count_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct RawEventLimits {
    #[serde(deserialize_with = "lenient::opt")]
    pub max_channels_at_once: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_name_length: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_payload_in_kb: Option<f64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_batch_size: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawHttpApi {
    #[serde(deserialize_with = "lenient::opt")]
    pub request_limit_in_mb: Option<f64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub body_timeout_ms: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub header_timeout_ms: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_buffered_body_mb: Option<f64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_header_kb: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawMetrics {
    #[serde(deserialize_with = "lenient::opt")]
    pub enabled: Option<bool>,
    pub driver: Option<String>,
    pub host: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub port: Option<u16>,
    pub prometheus: RawPrometheus,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawPrometheus {
    pub prefix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawWebhooks {
    pub batching: RawBatching,
    pub retry: Option<RawRetry>,
    #[serde(deserialize_with = "lenient::opt")]
    pub request_timeout_ms: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub grace_period_ms: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_in_flight: Option<u64>,
    pub queue: RawWebhookQueue,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawWebhookQueue {
    #[serde(deserialize_with = "lenient::opt")]
    pub max_bytes: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_total_bytes: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawBatching {
    #[serde(deserialize_with = "lenient::opt")]
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub duration: Option<i64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_events: Option<u64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct RawRetry {
    #[serde(deserialize_with = "lenient::opt")]
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_attempts: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_elapsed_time_ms: Option<i64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub initial_backoff_ms: Option<i64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_backoff_ms: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawWebhook {
    pub url: Option<String>,
    pub lambda_function: Option<String>,
    pub lambda: Option<RawLambda>,
    pub event_types: Option<Vec<String>>,
    pub filter: Option<RawFilter>,
    pub headers: Option<BTreeMap<String, String>>,
    pub retry: Option<RawRetry>,
    #[serde(deserialize_with = "lenient::opt")]
    pub request_timeout_ms: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_in_flight: Option<u64>,
    pub signature: Option<String>,
    pub standard_webhooks_secret: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawLambda {
    pub function_name: Option<String>,
    pub invocation_type: Option<String>,
    pub qualifier: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Unknown filter keys (Sockudo's `channel_suffix`, `channel_pattern`, ...) would narrow what is
/// sent if honoured, so they fail start-up instead of being ignored.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawFilter {
    pub channel_type: Option<String>,
    pub channel_prefix: Option<String>,
}
