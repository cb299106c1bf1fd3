//! Sockudo's two shapes of an app: flat (`max_connections`, `allowed_origins`, ... beside `id`)
//! or with a `policy` (`limits`, `features`, `channels`, `webhooks`, ...), as Sockudo 5.2's own
//! `config/config.json` writes it. Herald reads both with the same rules by moving a `policy`'s
//! keys to where the flat shape has them before the file is validated, and remembers where each
//! came from so errors and warnings name the key as the user wrote it.
//!
//! As in Sockudo, an app with a `policy` takes none of Sockudo's flat keys: each one present is
//! ignored with a warning. Herald's own app keys (`decision_hooks`, `enable_subscription_count`)
//! stay flat in both shapes.

use serde_json::{Map, Value};

/// The sections of a `policy` whose keys move to the app's top level.
const SECTIONS: [&str; 3] = ["limits", "features", "channels"];
/// Keys of a `policy` itself that move as they are.
const TOP_LEVEL: [&str; 5] = [
    "webhooks",
    "idempotency",
    "connection_recovery",
    "history",
    "presence_history",
];
/// Sockudo's flat app keys: ignored beside a `policy`.
const FLAT_KEYS: [&str; 26] = [
    "max_connections",
    "enable_client_messages",
    "max_backend_events_per_second",
    "max_client_events_per_second",
    "max_read_requests_per_second",
    "max_presence_members_per_channel",
    "max_presence_member_size_in_kb",
    "max_channel_name_length",
    "max_event_channels_at_once",
    "max_event_name_length",
    "max_event_payload_in_kb",
    "max_event_batch_size",
    "enable_user_authentication",
    "webhooks",
    "enable_watchlist_events",
    "allowed_origins",
    "annotations_enabled",
    "channel_delta_compression",
    "idempotency",
    "connection_recovery",
    "channel_namespaces",
    "decay_seconds",
    "terminate_on_limit",
    "message_rate_limit",
    "history",
    "presence_history",
];

/// Where the keys of `policy`-shaped apps came from, and the flat keys their `policy` overrode.
#[derive(Debug, Default)]
pub(super) struct Moved {
    /// (the path as validated, the path as written), e.g.
    /// (`apps[0].max_connections`, `apps[0].policy.limits.max_connections`).
    renamed: Vec<(String, String)>,
    /// Flat keys beside a `policy`, with their path: ignored, as in Sockudo.
    pub overridden: Vec<String>,
}

impl Moved {
    /// `path` as the user wrote it (a moved key's place inside `policy`).
    pub fn original(&self, path: &str) -> String {
        for (validated, written) in &self.renamed {
            let rest = path.strip_prefix(validated.as_str());
            if let Some(rest) = rest.filter(|r| r.is_empty() || r.starts_with(['.', '['])) {
                return format!("{written}{rest}");
            }
        }
        path.to_owned()
    }
}

/// Moves the `policy` keys of every app of `app_manager.array.apps` to the flat shape.
pub(super) fn flatten_policies(document: &mut Value) -> Moved {
    let mut moved = Moved::default();
    let apps = document
        .pointer_mut("/app_manager/array/apps")
        .and_then(Value::as_array_mut);
    for (i, app) in apps.into_iter().flatten().enumerate() {
        let path = format!("app_manager.array.apps[{i}]");
        if let Some(app) = app.as_object_mut() {
            flatten_app(&path, app, &mut moved);
        }
    }
    moved
}

/// Moves the `policy` keys of one app (a JSON object, e.g. made from a database row).
pub(super) fn flatten_app_value(path: &str, app: &mut Value) -> Moved {
    let mut moved = Moved::default();
    if let Some(app) = app.as_object_mut() {
        flatten_app(path, app, &mut moved);
    }
    moved
}

fn flatten_app(path: &str, app: &mut Map<String, Value>, moved: &mut Moved) {
    let Some(Value::Object(policy)) = app.remove("policy") else {
        return;
    };
    for key in FLAT_KEYS {
        if app.remove(key).is_some() {
            moved.overridden.push(format!("{path}.{key}"));
        }
    }
    for (key, value) in policy {
        let written = format!("{path}.policy.{key}");
        match value {
            Value::Object(section) if SECTIONS.contains(&key.as_str()) => {
                for (inner, value) in section {
                    let validated = format!("{path}.{inner}");
                    moved
                        .renamed
                        .push((validated, format!("{written}.{inner}")));
                    app.insert(inner, value);
                }
            }
            value if TOP_LEVEL.contains(&key.as_str()) => {
                moved.renamed.push((format!("{path}.{key}"), written));
                app.insert(key, value);
            }
            // Unknown (or misshapen) policy keys stay under a name no app key has, so they are
            // reported as ignored, with their own path.
            value => {
                let parked = format!("policy.{key}");
                moved.renamed.push((format!("{path}.{parked}"), written));
                app.insert(parked, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_policy_moves_to_the_flat_shape_and_overrides_flat_keys() {
        let mut document = json!({"app_manager": {"array": {"apps": [
            {"id": "a", "max_connections": 5, "decision_hooks": {"url": "x"},
             "policy": {"limits": {"max_connections": 7},
                        "channels": {"allowed_origins": ["https://a.example"]},
                        "webhooks": [], "mystery": 1}},
            {"id": "b", "max_connections": 3},
        ]}}});
        let moved = flatten_policies(&mut document);
        let apps = &document["app_manager"]["array"]["apps"];
        assert_eq!(apps[0]["max_connections"], 7);
        assert_eq!(apps[0]["allowed_origins"][0], "https://a.example");
        assert!(
            apps[0]["decision_hooks"].is_object(),
            "Herald's own keys stay"
        );
        assert!(apps[0].get("policy").is_none());
        assert_eq!(apps[1]["max_connections"], 3, "a flat app is untouched");
        assert_eq!(
            moved.overridden,
            ["app_manager.array.apps[0].max_connections"]
        );
        assert_eq!(
            moved.original("app_manager.array.apps[0].allowed_origins[0]"),
            "app_manager.array.apps[0].policy.channels.allowed_origins[0]"
        );
        assert_eq!(
            moved.original("app_manager.array.apps[0].policy.mystery"),
            "app_manager.array.apps[0].policy.mystery"
        );
        assert_eq!(
            moved.original("app_manager.array.apps[1].max_connections"),
            "app_manager.array.apps[1].max_connections"
        );
    }
}
