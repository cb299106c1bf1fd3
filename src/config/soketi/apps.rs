//! soketi's apps and webhooks (`appManager.array.apps[]`, `SOKETI_DEFAULT_APP_WEBHOOKS`) as
//! Sockudo's: camelCase keys (and the other spellings soketi's `App` accepts) to snake_case.

use serde_json::{Map, Value};

use super::Overlay;
use crate::config::ConfigError;

/// An app key of soketi, under each name its `App` class reads it, and Sockudo's name.
const APP_KEYS: &[(&[&str], &str)] = &[
    (&["id", "AppId"], "id"),
    (&["key", "AppKey"], "key"),
    (&["secret", "AppSecret"], "secret"),
    (&["enabled", "Enabled"], "enabled"),
    (
        &["maxConnections", "MaxConnections", "max_connections"],
        "max_connections",
    ),
    (
        &[
            "enableClientMessages",
            "EnableClientMessages",
            "enable_client_messages",
        ],
        "enable_client_messages",
    ),
    (
        &[
            "maxBackendEventsPerSecond",
            "MaxBackendEventsPerSecond",
            "max_backend_events_per_sec",
        ],
        "max_backend_events_per_second",
    ),
    (
        &[
            "maxClientEventsPerSecond",
            "MaxClientEventsPerSecond",
            "max_client_events_per_sec",
        ],
        "max_client_events_per_second",
    ),
    (
        &[
            "maxReadRequestsPerSecond",
            "MaxReadRequestsPerSecond",
            "max_read_req_per_sec",
        ],
        "max_read_requests_per_second",
    ),
    (
        &[
            "maxPresenceMembersPerChannel",
            "MaxPresenceMembersPerChannel",
            "max_presence_members_per_channel",
        ],
        "max_presence_members_per_channel",
    ),
    (
        &[
            "maxPresenceMemberSizeInKb",
            "MaxPresenceMemberSizeInKb",
            "max_presence_member_size_in_kb",
        ],
        "max_presence_member_size_in_kb",
    ),
    (
        &[
            "maxChannelNameLength",
            "MaxChannelNameLength",
            "max_channel_name_length",
        ],
        "max_channel_name_length",
    ),
    (
        &[
            "maxEventChannelsAtOnce",
            "MaxEventChannelsAtOnce",
            "max_event_channels_at_once",
        ],
        "max_event_channels_at_once",
    ),
    (
        &[
            "maxEventNameLength",
            "MaxEventNameLength",
            "max_event_name_length",
        ],
        "max_event_name_length",
    ),
    (
        &[
            "maxEventPayloadInKb",
            "MaxEventPayloadInKb",
            "max_event_payload_in_kb",
        ],
        "max_event_payload_in_kb",
    ),
    (
        &[
            "maxEventBatchSize",
            "MaxEventBatchSize",
            "max_event_batch_size",
        ],
        "max_event_batch_size",
    ),
    (
        &[
            "enableUserAuthentication",
            "EnableUserAuthentication",
            "enable_user_authentication",
        ],
        "enable_user_authentication",
    ),
    (&["webhooks", "Webhooks"], "webhooks"),
];

/// Webhook keys written the same in both.
const SAME_WEBHOOK_KEYS: &[&str] = &["url", "event_types", "headers"];

const ENDS_WITH: &str = "a channel-suffix filter is not implemented; ignoring it would send this endpoint every channel's events";

/// soketi's app list as Sockudo's, `from` naming it in notices and errors, `to` its path.
pub(super) fn apps(
    o: &mut Overlay,
    value: &Value,
    from: &str,
    to: &str,
) -> Result<Value, ConfigError> {
    let Value::Array(apps) = value else {
        return Err(ConfigError::invalid(from, "is not a list of apps"));
    };
    let mut out = Vec::with_capacity(apps.len());
    for (i, app) in apps.iter().enumerate() {
        out.push(translate_app(
            o,
            app,
            &format!("{from}[{i}]"),
            &format!("{to}[{i}]"),
        )?);
    }
    Ok(Value::Array(out))
}

fn translate_app(o: &mut Overlay, app: &Value, from: &str, to: &str) -> Result<Value, ConfigError> {
    let Value::Object(keys) = app else {
        return Err(ConfigError::invalid(from, "an app is a JSON object"));
    };
    let mut out = Map::new();
    for (key, value) in keys {
        // soketi's App reads null and "" as unset.
        if value.is_null() || value == "" {
            continue;
        }
        let (from_key, name) = (format!("{from}.{key}"), key.as_str());
        match APP_KEYS.iter().find(|(names, _)| names.contains(&name)) {
            Some((_, "webhooks")) => {
                let to_key = format!("{to}.webhooks");
                out.insert("webhooks".into(), webhooks(o, value, &from_key, &to_key)?);
            }
            Some((_, target)) => {
                out.insert((*target).into(), value.clone());
                o.mapped(&from_key, &format!("{to}.{target}"));
            }
            None => o.warned(&from_key, "not a key of soketi's apps; ignored"),
        }
    }
    Ok(Value::Object(out))
}

/// soketi's webhooks (a list, or its JSON text as a variable holds it) as Sockudo's.
pub(super) fn webhooks(
    o: &mut Overlay,
    value: &Value,
    from: &str,
    to: &str,
) -> Result<Value, ConfigError> {
    let parsed;
    let value = match value {
        Value::String(text) => {
            parsed = serde_json::from_str(text).map_err(|e| {
                ConfigError::invalid(from, format!("is not a JSON list of webhooks: {e}"))
            })?;
            &parsed
        }
        other => other,
    };
    let Value::Array(hooks) = value else {
        return Err(ConfigError::invalid(from, "is not a list of webhooks"));
    };
    let mut out = Vec::with_capacity(hooks.len());
    for (i, hook) in hooks.iter().enumerate() {
        out.push(webhook(
            o,
            hook,
            &format!("{from}[{i}]"),
            &format!("{to}[{i}]"),
        )?);
    }
    Ok(Value::Array(out))
}

fn webhook(o: &mut Overlay, hook: &Value, from: &str, to: &str) -> Result<Value, ConfigError> {
    let Value::Object(keys) = hook else {
        return Err(ConfigError::invalid(from, "a webhook is a JSON object"));
    };
    let mut out = Map::new();
    for (key, value) in keys {
        let from_key = format!("{from}.{key}");
        match key.as_str() {
            name if SAME_WEBHOOK_KEYS.contains(&name) => {
                out.insert(key.clone(), value.clone());
                o.mapped(&from_key, &format!("{to}.{key}"));
            }
            "filter" => {
                if let Some(filter) = filter(o, value, &from_key)? {
                    out.insert("filter".into(), filter);
                    o.mapped(
                        &format!("{from_key}.channel_name_starts_with"),
                        &format!("{to}.filter.channel_prefix"),
                    );
                }
            }
            "lambda_function" | "lambda" => {}
            _ => o.warned(&from_key, "not a key of soketi's webhooks; ignored"),
        }
    }
    if let Some(function) = keys
        .get("lambda_function")
        .filter(|f| !f.is_null() && *f != "")
    {
        out.insert(
            "lambda".into(),
            lambda(o, function, keys.get("lambda"), from, to),
        );
    }
    Ok(Value::Object(out))
}

/// `channel_name_starts_with` is Sockudo's `channel_prefix`; a suffix is refused.
fn filter(o: &mut Overlay, value: &Value, from: &str) -> Result<Option<Value>, ConfigError> {
    let Value::Object(keys) = value else {
        return Ok(None);
    };
    let mut out = Map::new();
    for (key, value) in keys {
        let empty = value.is_null() || value == "";
        match key.as_str() {
            "channel_name_starts_with" if !empty => {
                out.insert("channel_prefix".into(), value.clone());
            }
            "channel_name_ends_with" if !empty => {
                return Err(ConfigError::invalid(&format!("{from}.{key}"), ENDS_WITH))
            }
            "channel_name_starts_with" | "channel_name_ends_with" => {}
            _ => o.warned(
                &format!("{from}.{key}"),
                "not a filter of soketi's webhooks; ignored",
            ),
        }
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// soketi invokes `lambda_function` synchronously unless `lambda.async`, in `lambda.region`
/// (default `us-east-1`).
fn lambda(
    o: &mut Overlay,
    function: &Value,
    settings: Option<&Value>,
    from: &str,
    to: &str,
) -> Value {
    let setting = |name: &str| settings.and_then(|s| s.get(name)).filter(|v| !v.is_null());
    let asynchronous = setting("async").is_some_and(|v| v == true || v == "true");
    let region = setting("region")
        .cloned()
        .unwrap_or_else(|| "us-east-1".into());
    o.mapped(
        &format!("{from}.lambda_function"),
        &format!("{to}.lambda.function_name"),
    );
    o.mapped(&format!("{from}.lambda"), &format!("{to}.lambda"));
    if setting("client_options").is_some() {
        o.warned(
            &format!("{from}.lambda.client_options"),
            "the AWS SDK's own configuration (environment, profile) is used; ignored",
        );
    }
    let invocation = if asynchronous {
        "Event"
    } else {
        "RequestResponse"
    };
    serde_json::json!({"function_name": function, "invocation_type": invocation, "region": region})
}
