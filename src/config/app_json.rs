//! One app from a JSON object in `config.json`'s app shape (flat, or with a Sockudo `policy`),
//! validated with the file's global defaults exactly as `app_manager.array.apps` are: how an
//! app read from a database row becomes an [`AppConfig`].

use std::fmt;

use serde_json::Value;

use super::policy;
use super::raw::{RawApp, RawConfig, RawEventLimits, RawPresence};
use super::webhook::WebhookDefaults;
use super::{AppConfig, ConfigError};

/// What an app takes from the file's global sections when it sets nothing itself: `presence`,
/// `event_limits`, `channel_limits.max_name_length` and the `webhooks` endpoint defaults.
#[derive(Clone)]
pub struct AppDefaults {
    presence: RawPresence,
    event_limits: RawEventLimits,
    max_channel_name_length: Option<u64>,
    webhooks: WebhookDefaults,
}

impl fmt::Debug for AppDefaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppDefaults")
            .field("webhooks", &self.webhooks)
            .finish_non_exhaustive()
    }
}

impl AppDefaults {
    pub(super) fn of(raw: &RawConfig, webhooks: WebhookDefaults) -> AppDefaults {
        AppDefaults {
            presence: raw.presence.clone(),
            event_limits: raw.event_limits.clone(),
            max_channel_name_length: raw.channel_limits.max_name_length,
            webhooks,
        }
    }

    /// Validates `app`, an object in `config.json`'s app shape; errors name keys under `path`
    /// (a `policy`'s keys as written inside it).
    pub fn app_from_json(&self, path: &str, mut app: Value) -> Result<AppConfig, ConfigError> {
        let moved = policy::flatten_app_value(path, &mut app);
        let raw: RawApp = serde_path_to_error::deserialize(&app).map_err(|e| {
            let inner = e.path().to_string();
            let full = match inner.as_str() {
                "." => path.to_owned(),
                _ => format!("{path}.{inner}"),
            };
            ConfigError::invalid(&moved.original(&full), e.into_inner().to_string())
        })?;
        let mut global = RawConfig {
            presence: self.presence.clone(),
            event_limits: self.event_limits.clone(),
            ..RawConfig::default()
        };
        global.channel_limits.max_name_length = self.max_channel_name_length;
        AppConfig::from_raw(path, &raw, &global, &self.webhooks).map_err(|mut e| {
            e.path = moved.original(&e.path);
            e
        })
    }
}
