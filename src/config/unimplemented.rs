//! What happens to a key of Sockudo's schema that Herald does not implement: refused at
//! start-up when honouring it would refuse, limit, authenticate or encrypt something Herald
//! would otherwise let through (or when its absence breaks every client), warned otherwise.
//! Keys nobody knows are warned as unused.
//!
//! A refusal depends on the value: `"unix_socket": {"enabled": false}` asks for nothing and is
//! only warned; `true` is refused.

use serde_json::Value;

use super::policy::Moved;
use super::ConfigError;

/// A key Herald ignores, and why, for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoredKey {
    /// The key path as written in the file.
    pub path: String,
    /// Why it is ignored.
    pub reason: String,
}

/// What a rule does with the value it finds.
enum Verdict {
    /// Refused when the value turns the feature on (`enabled: true`, or `true` itself).
    RefuseIfOn,
    /// Warned, whatever the value.
    Warn,
}

/// One key of Sockudo's schema Herald does not implement; `apps[]` stands for any app.
struct Rule {
    path: &'static str,
    verdict: Verdict,
    reason: &'static str,
}

const fn rule(path: &'static str, verdict: Verdict, reason: &'static str) -> Rule {
    Rule {
        path,
        verdict,
        reason,
    }
}

const NOT_PUSHER: &str = "a Sockudo-protocol feature Herald does not implement; ignored";

/// Sockudo 5.2's keys Herald does not implement, with what happens to each (README: "Sockudo
/// keys Herald does not implement").
const RULES: &[Rule] = &[
    rule(
        "path_prefix",
        Verdict::Warn,
        "Sockudo 5.2 declares path_prefix but never reads it: it serves /app/{key} and /apps/{id} at the root, and so does Herald; ignored",
    ),
    rule(
        "unix_socket",
        Verdict::RefuseIfOn,
        "Herald listens on TCP only; clients configured for the Unix socket could not connect",
    ),
    rule(
        "http_api.accept_traffic",
        Verdict::RefuseIfOn,
        "refusing traffic under memory pressure is not implemented",
    ),
    rule("websocket.auto_ping", Verdict::Warn, "Herald pings after activity_timeout of silence (Pusher's rule); ignored"),
    rule("websocket.ping_interval", Verdict::Warn, "Herald pings after activity_timeout of silence (Pusher's rule); ignored"),
    rule("websocket.idle_timeout", Verdict::Warn, "a socket is closed after activity_timeout and pong_timeout of silence; ignored"),
    rule("websocket.write_buffer_size", Verdict::Warn, "Herald writes each frame at once; ignored"),
    rule("app_manager.array.apps[].channel_namespaces[].allow_user_limited_channels", Verdict::Warn, NOT_PUSHER),
    rule("app_manager.array.apps[].channel_namespaces[].annotations_enabled", Verdict::Warn, NOT_PUSHER),
    rule("app_manager.array.apps[].channel_namespaces[].history", Verdict::Warn, NOT_PUSHER),
    rule("app_manager.array.apps[].channel_namespaces[].presence_history", Verdict::Warn, NOT_PUSHER),
    rule("rate_limiter.redis", Verdict::Warn, "in a cluster the counts live in the cluster's Redis (adapter.redis); ignored"),
    rule("mode", Verdict::Warn, "Herald has no modes; ignored"),
    rule("server_role", Verdict::Warn, "Herald nodes have one role; ignored"),
    rule("instance", Verdict::Warn, "ignored"),
    rule("logging", Verdict::Warn, "Herald logs with RUST_LOG; ignored"),
    rule("opentelemetry", Verdict::Warn, "not implemented; ignored"),
    rule("cleanup", Verdict::Warn, "Herald cleans up a socket as it closes; ignored"),
    rule("cluster_health", Verdict::Warn, "Herald's cluster has its own heartbeat (adapter.redis); ignored"),
    rule("adapter.cluster_health", Verdict::Warn, "Herald's cluster has its own heartbeat (adapter.redis); ignored"),
    rule("adapter.cluster.request_timeout_ms", Verdict::Warn, "every Redis command is bounded by Herald's own timeouts (5 s, and 2 s for a check); ignored"),
    rule("adapter.cluster.use_connection_manager", Verdict::Warn, "Herald always uses one multiplexed, reconnecting cluster connection; ignored"),
    rule("adapter.cluster.pubsub_ping_interval_ms", Verdict::Warn, "the pub/sub connection is PINGed every heartbeat (adapter.redis.heartbeat_interval_ms); ignored"),
    rule("health_check_timeout_ms", Verdict::Warn, "ignored"),
    rule("database_pooling", Verdict::Warn, "ignored"),
    rule("cache", Verdict::Warn, "Herald keeps cache channels itself; no cache driver is needed; ignored"),
    rule("app_manager.cache.max_capacity", Verdict::Warn, "ignored"),
    rule("app_manager.scylladb", Verdict::Warn, "the ScyllaDB app manager is not implemented; ignored"),
    rule("database.postgres.pool_min", Verdict::Warn, "the pool opens connections as needed, up to connection_pool_size; ignored"),
    rule("database.postgres.pool_max", Verdict::Warn, "the pool's size is connection_pool_size; ignored"),
    rule("database.postgres.cache_cleanup_interval", Verdict::Warn, "expired apps are dropped as they are looked up; ignored"),
    rule("database.postgres.cache_max_capacity", Verdict::Warn, "ignored"),
    rule("database.mysql.pool_min", Verdict::Warn, "the pool opens connections as needed, up to connection_pool_size; ignored"),
    rule("database.mysql.pool_max", Verdict::Warn, "the pool's size is connection_pool_size; ignored"),
    rule("database.mysql.cache_cleanup_interval", Verdict::Warn, "expired apps are dropped as they are looked up; ignored"),
    rule("database.mysql.cache_max_capacity", Verdict::Warn, "ignored"),
    rule("database.dynamodb", Verdict::Warn, "the DynamoDB app manager is not implemented; ignored"),
    rule("database.surrealdb", Verdict::Warn, "the SurrealDB app manager is not implemented; ignored"),
    rule("database.scylladb", Verdict::Warn, "the ScyllaDB app manager is not implemented; ignored"),
    rule("queue", Verdict::Warn, "Herald delivers webhooks through its own queues; ignored"),
    rule("metrics.tcp_exporter", Verdict::Warn, "only the Prometheus endpoint is implemented; ignored"),
    rule("metrics.driver", Verdict::Warn, "only Prometheus is implemented; ignored"),
    rule("http_api.usage_enabled", Verdict::Warn, "ignored"),
    rule("http_api.readiness", Verdict::Warn, "ignored"),
    rule("presence.update_rate_limit_per_member_per_second", Verdict::Warn, "Pusher's protocol has no presence updates; ignored"),
    rule("presence.ungraceful_timeout_seconds", Verdict::Warn, "ignored"),
    rule("presence.v2_ungraceful_timeout_seconds", Verdict::Warn, NOT_PUSHER),
    rule("delta_compression", Verdict::Warn, "delta compression is not implemented; ignored"),
    rule("tag_filtering", Verdict::Warn, NOT_PUSHER),
    rule("connection_recovery", Verdict::Warn, NOT_PUSHER),
    rule("history", Verdict::Warn, NOT_PUSHER),
    rule("presence_history", Verdict::Warn, NOT_PUSHER),
    rule("idempotency", Verdict::Warn, "idempotent publishing is not implemented; a retried publish is delivered again; ignored"),
    rule("ephemeral", Verdict::Warn, NOT_PUSHER),
    rule("echo_control", Verdict::Warn, "client events are never echoed to their sender (Pusher's rule); ignored"),
    rule("event_name_filtering", Verdict::Warn, NOT_PUSHER),
    rule("versioned_messages", Verdict::Warn, NOT_PUSHER),
    rule("annotations", Verdict::Warn, NOT_PUSHER),
    rule("ai_transport", Verdict::Warn, NOT_PUSHER),
    rule("push", Verdict::Warn, "push notifications are not implemented; ignored"),
    rule("push_rules", Verdict::Warn, "push notifications are not implemented; ignored"),
    rule("mcp", Verdict::Warn, "not implemented; ignored"),
    rule("ably_compat", Verdict::Warn, "the Ably protocol is not implemented; ignored"),
    rule("app_manager.array.apps[].annotations_enabled", Verdict::Warn, NOT_PUSHER),
    rule("app_manager.array.apps[].channel_delta_compression", Verdict::Warn, "delta compression is not implemented; ignored"),
    rule("app_manager.array.apps[].idempotency", Verdict::Warn, "idempotent publishing is not implemented; ignored"),
    rule("app_manager.array.apps[].connection_recovery", Verdict::Warn, NOT_PUSHER),
    rule("app_manager.array.apps[].history", Verdict::Warn, NOT_PUSHER),
    rule("app_manager.array.apps[].presence_history", Verdict::Warn, NOT_PUSHER),
];

/// The unused keys of a validated document, each warned or refused by its rule. `paths` are
/// the keys serde did not use (in the validated shape), `document` the file after
/// [`super::policy::flatten_policies`], whose record `moved` gives each key its written path.
pub(super) fn classify(
    document: &Value,
    paths: &[String],
    moved: &Moved,
) -> Result<Vec<IgnoredKey>, ConfigError> {
    let mut ignored = Vec::new();
    for path in paths {
        let written = moved.original(path);
        let Some(rule) = rule_for(path) else {
            ignored.push(IgnoredKey {
                path: written,
                reason: "config key is not used by Herald; ignored".into(),
            });
            continue;
        };
        let value = value_at(document, path).unwrap_or(&Value::Null);
        let refused = match rule.verdict {
            Verdict::RefuseIfOn => is_on(value),
            Verdict::Warn => false,
        };
        if refused {
            return Err(ConfigError::invalid(&written, rule.reason));
        }
        ignored.push(IgnoredKey {
            path: written,
            reason: rule.reason.into(),
        });
    }
    for path in &moved.overridden {
        ignored.push(IgnoredKey {
            path: path.clone(),
            reason: "the app has a policy, which wins over its flat keys (as in Sockudo); ignored"
                .into(),
        });
    }
    Ok(ignored)
}

/// The rule for `path` or the nearest section above it.
fn rule_for(path: &str) -> Option<&'static Rule> {
    let general = generalize(path);
    RULES.iter().find(|rule| {
        general == rule.path
            || general
                .strip_prefix(rule.path)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// `apps[3].x` as `apps[].x`, so one rule covers every app.
fn generalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push(c);
            }
            ']' => {
                in_index = false;
                out.push(c);
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// The value at a dotted path with `[i]` indexes.
fn value_at<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = document;
    for part in path.split('.') {
        let (key, indexes) = part.split_once('[').unwrap_or((part, ""));
        value = value.get(key)?;
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            value = value.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(value)
}

/// Whether a section or flag asks for its feature: `true`, or an object whose `enabled` is.
fn is_on(value: &Value) -> bool {
    match value {
        Value::Bool(on) => *on,
        Value::String(text) => matches!(text.trim(), "true" | "1"),
        Value::Object(section) => section.get("enabled").is_some_and(is_on),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classify_paths(document: Value, paths: &[&str]) -> Result<Vec<IgnoredKey>, ConfigError> {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        classify(&document, &paths, &Moved::default())
    }

    #[test]
    fn a_key_that_would_guard_is_refused_only_when_it_is_on() {
        let off = json!({"unix_socket": {"enabled": false}});
        let warned = classify_paths(off, &["unix_socket"]).unwrap();
        assert_eq!(warned[0].path, "unix_socket");
        let on = json!({"unix_socket": {"enabled": true, "path": "/tmp/s"}});
        let refused = classify_paths(on, &["unix_socket"]).unwrap_err();
        assert_eq!(refused.path, "unix_socket");
        let prefixed = json!({"path_prefix": "/ws"});
        let warned = classify_paths(prefixed, &["path_prefix"]).unwrap();
        assert!(warned[0].reason.contains("never reads it"));
    }

    #[test]
    fn rules_cover_every_app_and_nested_keys() {
        let document = json!({"app_manager": {"array": {"apps": [{}, {"history": {"enabled": true}}]}},
                              "delta_compression": {"enabled": true}, "mystery": 1});
        let paths = [
            "app_manager.array.apps[1].history",
            "delta_compression.enabled",
            "mystery",
        ];
        let ignored = classify_paths(document, &paths).unwrap();
        assert_eq!(ignored[0].reason, NOT_PUSHER);
        assert!(ignored[1].reason.contains("delta compression"));
        assert!(ignored[2].reason.contains("not used by Herald"));
        assert_eq!(generalize("a.apps[12].b[3]"), "a.apps[].b[]");
        let document = json!({"a": [{"b": [1, {"c": true}]}]});
        assert_eq!(value_at(&document, "a[0].b[1].c"), Some(&json!(true)));
    }
}
