//! One app of `app_manager.array.apps`, with the global limits filled in where it sets none.

use std::time::Duration;

use super::decision_hooks::{decision_hooks, DecisionHooksConfig};
use super::namespaces::ChannelNamespaces;
use super::origins::OriginAllowlist;
use super::raw::{RawApp, RawConfig, RawMessageRateLimit};
use super::webhook::{self, WebhookDefaults, WebhookEndpoint};
use super::{kb, ConfigError};

/// A validated app definition.
#[derive(Clone, Debug, PartialEq)]
pub struct AppConfig {
    /// The app id used in REST paths.
    pub id: String,
    /// The public key clients connect with.
    pub key: String,
    /// The secret that signs everything.
    pub secret: String,
    /// Disabled apps refuse connections (4003) and REST calls (403).
    pub enabled: bool,
    /// Connection quota; `None` is unlimited.
    pub max_connections: Option<usize>,
    /// Whether clients may send `client-*` events.
    pub enable_client_messages: bool,
    /// Whether connections must sign in within the sign-in timeout.
    pub enable_user_authentication: bool,
    /// Whether `pusher_internal:subscription_count` events are sent.
    pub enable_subscription_count: bool,
    /// Whether a sign-in's `watchlist` is watched (`pusher_internal:watchlist_events`).
    pub enable_watchlist_events: bool,
    /// Client events per connection per `client_event_window`; `None` is unlimited.
    pub max_client_events_per_second: Option<u32>,
    /// The window of `max_client_events_per_second` (Sockudo's `decay_seconds`, default 1 s).
    pub client_event_window: Duration,
    /// Close the connection (4301) instead of dropping the event when a client goes over
    /// `max_client_events_per_second` (Sockudo's `terminate_on_limit`).
    pub terminate_on_limit: bool,
    /// Sockudo's `message_rate_limit`: every inbound message of a connection, limited.
    pub message_rate_limit: Option<MessageRateLimit>,
    /// REST-published events per second (Sockudo's `max_backend_events_per_second`, a batch's
    /// items counted one by one); `None` is unlimited.
    pub max_backend_events_per_second: Option<u32>,
    /// REST reads per second (Sockudo's `max_read_requests_per_second`); `None` is unlimited.
    pub max_read_requests_per_second: Option<u32>,
    /// Origins whose pages may open a WebSocket (`allowed_origins`); empty allows any.
    pub allowed_origins: OriginAllowlist,
    /// Rules for channels by namespace (`channel_namespaces`).
    pub channel_namespaces: ChannelNamespaces,
    /// Distinct users per presence channel.
    pub max_presence_members_per_channel: usize,
    /// Bytes of a member's `user_info`.
    pub max_presence_member_size: usize,
    /// Characters of a channel name.
    pub max_channel_name_length: usize,
    /// Channels of one trigger.
    pub max_event_channels_at_once: usize,
    /// Characters of an event name.
    pub max_event_name_length: usize,
    /// Bytes of an event's data.
    pub max_event_payload: usize,
    /// Events of one batch trigger.
    pub max_event_batch_size: usize,
    /// Webhook endpoints.
    pub webhooks: Vec<WebhookEndpoint>,
    /// The endpoint asked before connections, subscriptions and client events take effect.
    pub decision_hooks: Option<DecisionHooksConfig>,
}

/// A limit on every inbound message of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRateLimit {
    /// Messages per window.
    pub max: u32,
    /// The window.
    pub window: Duration,
    /// Close the connection (4301) over the limit, instead of dropping the message.
    pub terminate: bool,
}

/// `message_rate_limit` (Sockudo's defaults: 60 messages per 60 s), when enabled.
fn message_rate_limit(
    path: &str,
    raw: Option<&RawMessageRateLimit>,
) -> Result<Option<MessageRateLimit>, ConfigError> {
    let Some(raw) = raw.filter(|raw| raw.enabled == Some(true)) else {
        return Ok(None);
    };
    let max = at_least_one(&format!("{path}.max_attempts"), raw.max_attempts, 60)?;
    let window = at_least_one(&format!("{path}.decay_seconds"), raw.decay_seconds, 60)?;
    Ok(Some(MessageRateLimit {
        max: max.min(u32::MAX as usize) as u32,
        window: Duration::from_secs(window as u64),
        terminate: raw.terminate_on_limit.unwrap_or(false),
    }))
}

fn required(path: &str, key: &str, value: &Option<String>) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(ConfigError::invalid(
            &format!("{path}.{key}"),
            "is required and must not be empty",
        )),
    }
}

/// A count that must be at least 1 when given.
fn at_least_one(path: &str, value: Option<u64>, default: usize) -> Result<usize, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::invalid(path, "must be at least 1")),
        other => Ok(other.map_or(default, |v| v as usize)),
    }
}

/// The app's webhook endpoints, each filled in from the `webhooks` defaults.
fn endpoints(
    path: &str,
    raw: &RawApp,
    defaults: &WebhookDefaults,
) -> Result<Vec<WebhookEndpoint>, ConfigError> {
    let endpoints = raw.webhooks.iter().flatten().enumerate();
    endpoints
        .map(|(i, w)| webhook::endpoint(&format!("{path}.webhooks[{i}]"), w, defaults))
        .collect()
}

/// Zero or negative means unlimited, as in soketi (-1) and Sockudo (0).
fn limit(value: Option<i64>) -> Option<usize> {
    value.filter(|v| *v > 0).map(|v| v as usize)
}

/// A rate: zero or negative means unlimited.
fn per_second(value: Option<i64>) -> Option<u32> {
    limit(value).map(|v| v.min(u32::MAX as usize) as u32)
}

/// An app's size limits, each from the app, else the global section, else the default.
struct SizeLimits {
    max_presence_members_per_channel: usize,
    max_presence_member_size: usize,
    max_channel_name_length: usize,
    max_event_channels_at_once: usize,
    max_event_name_length: usize,
    max_event_payload: usize,
    max_event_batch_size: usize,
}

fn size_limits(path: &str, raw: &RawApp, global: &RawConfig) -> Result<SizeLimits, ConfigError> {
    let key = |name: &str| format!("{path}.{name}");
    let count = |name, value, default| at_least_one(&key(name), value, default);
    let size = |name, value, default_kb| kb(&key(name), value, default_kb);
    let (presence, events) = (&global.presence, &global.event_limits);
    let name_length = global.channel_limits.max_name_length;
    Ok(SizeLimits {
        max_presence_members_per_channel: count(
            "max_presence_members_per_channel",
            raw.max_presence_members_per_channel
                .or(presence.max_members_per_channel),
            100,
        )?,
        max_presence_member_size: size(
            "max_presence_member_size_in_kb",
            raw.max_presence_member_size_in_kb
                .or(presence.max_member_size_in_kb),
            2.0,
        )?,
        max_channel_name_length: count(
            "max_channel_name_length",
            raw.max_channel_name_length.or(name_length),
            200,
        )?,
        max_event_channels_at_once: count(
            "max_event_channels_at_once",
            raw.max_event_channels_at_once
                .or(events.max_channels_at_once),
            100,
        )?,
        max_event_name_length: count(
            "max_event_name_length",
            raw.max_event_name_length.or(events.max_name_length),
            200,
        )?,
        max_event_payload: size(
            "max_event_payload_in_kb",
            raw.max_event_payload_in_kb.or(events.max_payload_in_kb),
            100.0,
        )?,
        max_event_batch_size: count(
            "max_event_batch_size",
            raw.max_event_batch_size.or(events.max_batch_size),
            10,
        )?,
    })
}

impl AppConfig {
    pub(super) fn from_raw(
        path: &str,
        raw: &RawApp,
        global: &RawConfig,
        webhook_defaults: &WebhookDefaults,
    ) -> Result<AppConfig, ConfigError> {
        let key = |name: &str| format!("{path}.{name}");
        let hooks = raw.decision_hooks.as_ref();
        let SizeLimits {
            max_presence_members_per_channel,
            max_presence_member_size,
            max_channel_name_length,
            max_event_channels_at_once,
            max_event_name_length,
            max_event_payload,
            max_event_batch_size,
        } = size_limits(path, raw, global)?;
        Ok(AppConfig {
            id: required(path, "id", &raw.id)?,
            key: required(path, "key", &raw.key)?,
            secret: required(path, "secret", &raw.secret)?,
            enabled: raw.enabled.unwrap_or(true),
            max_connections: limit(raw.max_connections),
            enable_client_messages: raw.enable_client_messages.unwrap_or(false),
            enable_user_authentication: raw.enable_user_authentication.unwrap_or(false),
            enable_subscription_count: raw.enable_subscription_count.unwrap_or(false),
            enable_watchlist_events: raw.enable_watchlist_events.unwrap_or(false),
            max_client_events_per_second: per_second(raw.max_client_events_per_second),
            max_backend_events_per_second: per_second(raw.max_backend_events_per_second),
            max_read_requests_per_second: per_second(raw.max_read_requests_per_second),
            max_presence_members_per_channel,
            max_presence_member_size,
            max_channel_name_length,
            max_event_channels_at_once,
            max_event_name_length,
            max_event_payload,
            max_event_batch_size,
            client_event_window: Duration::from_secs(at_least_one(
                &key("decay_seconds"),
                raw.decay_seconds,
                1,
            )? as u64),
            terminate_on_limit: raw.terminate_on_limit.unwrap_or(false),
            message_rate_limit: message_rate_limit(
                &key("message_rate_limit"),
                raw.message_rate_limit.as_ref(),
            )?,
            allowed_origins: OriginAllowlist::parse(
                &key("allowed_origins"),
                raw.allowed_origins.as_deref(),
            )?,
            channel_namespaces: ChannelNamespaces::parse(
                &key("channel_namespaces"),
                raw.channel_namespaces.as_deref(),
            )?,
            webhooks: endpoints(path, raw, webhook_defaults)?,
            decision_hooks: hooks
                .map(|hooks| decision_hooks(&key("decision_hooks"), hooks))
                .transpose()?,
        })
    }

    /// A demo app with default limits, for the quick start without a file.
    pub fn with_credentials(id: &str, key: &str, secret: &str) -> AppConfig {
        let raw = RawApp {
            id: Some(id.to_owned()),
            key: Some(key.to_owned()),
            secret: Some(secret.to_owned()),
            enable_client_messages: Some(true),
            ..RawApp::default()
        };
        AppConfig::from_raw(
            "app",
            &raw,
            &RawConfig::default(),
            &WebhookDefaults::pusher(),
        )
        .expect("demo app is valid")
    }
}
