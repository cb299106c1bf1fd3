//! One app of `app_manager.array.apps`, with the global limits filled in where it sets none.

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

fn positive(path: &str, value: Option<u64>) -> Result<Option<usize>, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::invalid(path, "must be at least 1")),
        other => Ok(other.map(|v| v as usize)),
    }
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
        let webhooks = raw
            .webhooks
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, w)| webhook::endpoint(&format!("{path}.webhooks[{i}]"), w, webhook_defaults))
            .collect::<Result<Vec<_>, _>>()?;
        let key_path = |key: &str| format!("{path}.{key}");
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
            max_presence_members_per_channel: positive(
                &key_path("max_presence_members_per_channel"),
                raw.max_presence_members_per_channel
                    .or(global.presence.max_members_per_channel),
            )?
            .unwrap_or(100),
            max_presence_member_size: kb(
                &key_path("max_presence_member_size_in_kb"),
                raw.max_presence_member_size_in_kb
                    .or(global.presence.max_member_size_in_kb),
                2.0,
            )?,
            max_channel_name_length: positive(
                &key_path("max_channel_name_length"),
                raw.max_channel_name_length
                    .or(global.channel_limits.max_name_length),
            )?
            .unwrap_or(200),
            max_event_channels_at_once: positive(
                &key_path("max_event_channels_at_once"),
                raw.max_event_channels_at_once
                    .or(global.event_limits.max_channels_at_once),
            )?
            .unwrap_or(100),
            max_event_name_length: positive(
                &key_path("max_event_name_length"),
                raw.max_event_name_length
                    .or(global.event_limits.max_name_length),
            )?
            .unwrap_or(200),
            max_event_payload: kb(
                &key_path("max_event_payload_in_kb"),
                raw.max_event_payload_in_kb
                    .or(global.event_limits.max_payload_in_kb),
                100.0,
            )?,
            max_event_batch_size: positive(
                &key_path("max_event_batch_size"),
                raw.max_event_batch_size
                    .or(global.event_limits.max_batch_size),
            )?
            .unwrap_or(10),
            webhooks,
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
