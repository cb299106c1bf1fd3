//! One app of `app_manager.array.apps`, with the global limits filled in where it sets none.

use super::decision_hooks::{decision_hooks, DecisionHooksConfig};
use super::raw::{RawApp, RawConfig};
use super::webhook::{self, WebhookDefaults, WebhookEndpoint};
use super::{kb, ConfigError};

/// A validated app definition.
#[derive(Clone, Debug)]
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
    /// Client events per second per connection; `None` is unlimited.
    pub max_client_events_per_second: Option<u32>,
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

impl AppConfig {
    pub(super) fn from_raw(
        path: &str,
        raw: &RawApp,
        global: &RawConfig,
        webhook_defaults: &WebhookDefaults,
    ) -> Result<AppConfig, ConfigError> {
        let key = |name: &str| format!("{path}.{name}");
        let count = |name, value, default| at_least_one(&key(name), value, default);
        let size = |name, value, default_kb| kb(&key(name), value, default_kb);
        let (presence, events) = (&global.presence, &global.event_limits);
        let webhooks = endpoints(path, raw, webhook_defaults)?;
        let hooks = raw.decision_hooks.as_ref();
        let hooks = hooks
            .map(|hooks| decision_hooks(&key("decision_hooks"), hooks))
            .transpose()?;
        Ok(AppConfig {
            id: required(path, "id", &raw.id)?,
            key: required(path, "key", &raw.key)?,
            secret: required(path, "secret", &raw.secret)?,
            enabled: raw.enabled.unwrap_or(true),
            max_connections: limit(raw.max_connections),
            enable_client_messages: raw.enable_client_messages.unwrap_or(false),
            enable_user_authentication: raw.enable_user_authentication.unwrap_or(false),
            enable_subscription_count: raw.enable_subscription_count.unwrap_or(false),
            max_client_events_per_second: limit(raw.max_client_events_per_second)
                .map(|v| v.min(u32::MAX as usize) as u32),
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
                raw.max_channel_name_length
                    .or(global.channel_limits.max_name_length),
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
            webhooks,
            decision_hooks: hooks,
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
