//! Every row of the soketi table, and the format's detection and translation.

use serde_json::{json, Value};

use super::table::{Action, Kind, Row, ROWS};
use super::{is_soketi, prepare, ConfigFormat, Overlay};
use crate::config::{Config, ConfigError};

/// `a.b[0].c` as the JSON pointer `/a/b/0/c`.
fn pointer(path: &str) -> String {
    path.split('.')
        .flat_map(|part| part.split('['))
        .map(|part| format!("/{}", part.trim_end_matches(']')))
        .collect()
}

/// A value for a row's variable, and what must land at its target.
fn sample(kind: Kind) -> (&'static str, Value) {
    match kind {
        Kind::Text => ("v-1", json!("v-1")),
        Kind::Json => ("7", json!(7)),
        Kind::Flag => ("1", json!(true)),
        Kind::MsToSeconds => ("1500", json!(2)),
        Kind::AppDriver => ("array", json!("memory")),
        Kind::AdapterDriver => ("cluster", json!("local")),
        Kind::TlsFile => ("/etc/tls/file.pem", json!("/etc/tls/file.pem")),
        Kind::RedisClusterMode => ("true", json!("redis-cluster")),
        Kind::ClusterNodes => (
            r#"[{"host":"h","port":7000},"g:7001"]"#,
            json!(["h:7000", "g:7001"]),
        ),
        Kind::Webhooks => (
            r#"[{"url":"http://h/x","event_types":["channel_occupied"]}]"#,
            json!([{"url": "http://h/x", "event_types": ["channel_occupied"]}]),
        ),
        Kind::Apps => ("", json!([{"id": "1", "key": "k", "secret": "s"}])),
    }
}

/// The document and overlay after setting `vars` (and nothing else).
fn with_env(vars: &[(&str, &str)]) -> Result<(Value, Overlay), ConfigError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let var = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    prepare(None, ConfigFormat::Auto, &var)
}

fn check_variable(row: &Row, name: &str) {
    let source = format!("${name}");
    match row.action {
        Action::Map(target, kind) => {
            let (text, expected) = sample(kind);
            let mut vars = vec![(name, text)];
            if kind == Kind::RedisClusterMode {
                vars.push(("SOKETI_ADAPTER_DRIVER", "redis"));
            }
            let (document, overlay) = with_env(&vars).unwrap();
            assert_eq!(
                document.pointer(&pointer(target)),
                Some(&expected),
                "{name}: {document}"
            );
            assert_eq!(
                overlay.source_of(target).as_deref(),
                Some(source.as_str()),
                "{name}"
            );
            if kind == Kind::TlsFile {
                assert_eq!(
                    document.pointer("/ssl/enabled"),
                    Some(&json!(true)),
                    "{name}"
                );
            }
        }
        Action::Warn(reason) => {
            let (_, overlay) = with_env(&[(name, "1")]).unwrap();
            assert!(
                overlay
                    .ignored
                    .iter()
                    .any(|k| k.path == source && k.reason == reason),
                "{name}"
            );
        }
        Action::Refuse(reason) => {
            let error = with_env(&[(name, "1")]).unwrap_err();
            assert_eq!(
                (error.path.as_str(), error.message.as_str()),
                (source.as_str(), reason)
            );
        }
        Action::SharedQuotas(_) => {
            assert_eq!(with_env(&[(name, "redis")]).unwrap_err().path, source);
            let clustered = [(name, "redis"), ("SOKETI_ADAPTER_DRIVER", "redis")];
            assert!(with_env(&clustered).is_ok(), "{name}");
            let (_, overlay) = with_env(&[(name, "local")]).unwrap();
            assert!(overlay.ignored.iter().any(|k| k.path == source), "{name}");
        }
    }
}

fn check_file_key(row: &Row) {
    let option = row.option;
    let value = match row.action {
        Action::Map(_, Kind::Apps) => json!([{"id": 1, "key": "k", "secret": "s"}]),
        Action::Map(_, kind) => {
            serde_json::from_str(sample(kind).0).unwrap_or(json!(sample(kind).0))
        }
        Action::SharedQuotas(_) => json!("local"),
        Action::Warn(_) | Action::Refuse(_) => json!(1),
    };
    let mut file = json!({ option: value });
    if matches!(row.action, Action::Map(_, Kind::RedisClusterMode)) {
        file["adapter.driver"] = json!("redis");
    }
    let result = prepare(Some(&file.to_string()), ConfigFormat::Soketi, &|_| None);
    match row.action {
        Action::Map(target, kind) => {
            let (document, overlay) = result.unwrap();
            let expected = match kind {
                Kind::Apps => json!([{"id": 1, "key": "k", "secret": "s"}]),
                _ => sample(kind).1,
            };
            assert_eq!(
                document.pointer(&pointer(target)),
                Some(&expected),
                "{option}"
            );
            let inner = if kind == Kind::Apps {
                format!("{target}[0].key")
            } else {
                target.to_owned()
            };
            assert!(
                overlay
                    .source_of(&inner)
                    .is_some_and(|s| s.starts_with(option)),
                "{option}"
            );
        }
        Action::Warn(_) | Action::SharedQuotas(_) => {
            assert!(
                result.unwrap().1.ignored.iter().any(|k| k.path == option),
                "{option}"
            );
        }
        Action::Refuse(_) => assert_eq!(result.unwrap_err().path, option),
    }
}

#[test]
fn every_row_lands_warns_or_refuses_as_it_says() {
    for row in ROWS {
        if let Some(name) = row.var {
            check_variable(row, name);
        }
        check_file_key(row);
    }
    let names: std::collections::HashSet<_> = ROWS.iter().filter_map(|r| r.var).collect();
    assert_eq!(
        names.len(),
        115,
        "soketi's cli.ts has 115 variables, each once"
    );
}

#[test]
fn a_refused_option_that_asks_for_nothing_is_only_warned() {
    let file =
        json!({"pathPrefix": "", "ssl": {"caPath": ""}, "adapter.redis.redisPubOptions": {}});
    let (_, overlay) = prepare(Some(&file.to_string()), ConfigFormat::Auto, &|_| None).unwrap();
    assert_eq!(overlay.ignored.len(), 3, "{:?}", overlay.ignored);
    let error = with_env(&[("SOKETI_PATH_PREFIX", "/ws")]).unwrap_err();
    assert_eq!(
        error.to_string().split(':').next(),
        Some("$SOKETI_PATH_PREFIX")
    );
}

fn load(vars: &[(&str, &str)], file: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let var = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    Config::load_with(file, ConfigFormat::Auto, &var)
}

#[test]
fn soketi_variables_alone_make_a_valid_config() {
    let config = load(
        &[
            ("SOKETI_DEFAULT_APP_ID", "42"),
            ("SOKETI_DEFAULT_APP_KEY", "soketi-key"),
            ("SOKETI_DEFAULT_APP_SECRET", "1e5"),
            ("SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "true"),
            ("SOKETI_DEFAULT_APP_MAX_CONNS", "-1"),
            ("SOKETI_PORT", "6002"),
            ("SOKETI_DEBUG", "1"),
            ("SOKETI_SHUTDOWN_GRACE_PERIOD", "3000"),
            ("SOKETI_USER_AUTHENTICATION_TIMEOUT", "2500"),
            ("SOKETI_METRICS_ENABLED", "false"),
            ("SOKETI_MODE", "full"),
        ],
        None,
    )
    .unwrap();
    let app = &config.apps[0];
    assert_eq!(
        (app.id.as_str(), app.key.as_str(), app.secret.as_str()),
        ("42", "soketi-key", "1e5")
    );
    assert!(app.enable_client_messages);
    assert_eq!(config.apps.len(), 1);
    assert_eq!(
        (config.port, config.debug, config.metrics.enabled),
        (6002, true, false)
    );
    assert_eq!(config.shutdown_grace_period.as_secs(), 3);
    assert_eq!(config.user_authentication_timeout.as_secs(), 3);
    assert!(config.ignored_keys.iter().any(|k| k.path == "$SOKETI_MODE"));
    assert!(config
        .translated_keys
        .iter()
        .any(|k| k.from == "$SOKETI_PORT" && k.to == "port"));
}

#[test]
fn a_default_app_variable_alone_keeps_soketis_other_defaults() {
    let config = load(&[("SOKETI_DEFAULT_APP_KEY", "mine")], None).unwrap();
    let app = &config.apps[0];
    assert_eq!(
        (app.id.as_str(), app.key.as_str(), app.secret.as_str()),
        ("app-id", "mine", "app-secret")
    );
}

#[test]
fn herald_wins_over_soketi_which_wins_over_the_file() {
    let dir = std::env::temp_dir().join(format!("herald-soketi-precedence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        r#"{"port": 7001, "host": "10.0.0.1", "debug": false}"#,
    )
    .unwrap();
    let vars = [
        ("SOKETI_PORT", "7002"),
        ("SOKETI_HOST", "127.0.0.2"),
        ("HERALD_HOST", "127.0.0.3"),
    ];
    let config = load(&vars, Some(&path)).unwrap();
    assert_eq!(
        (config.port, config.host.as_str(), config.debug),
        (7002, "127.0.0.3", false)
    );
    let error = load(&[("SOKETI_PORT", "a lot")], Some(&path)).unwrap_err();
    assert_eq!(
        (error.file.as_deref(), error.path.as_str()),
        (None, "$SOKETI_PORT")
    );
    let error = load(
        &[("SOKETI_DEFAULT_APP_WEBHOOKS", r#"[{"url": "ftp://x"}]"#)],
        None,
    )
    .unwrap_err();
    assert_eq!(error.path, "$SOKETI_DEFAULT_APP_WEBHOOKS[0].url");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_format_is_told_by_its_top_level_keys() {
    assert!(is_soketi(&json!({"appManager.array.apps": []})));
    assert!(is_soketi(&json!({"rateLimiter": {"driver": "local"}})));
    assert!(is_soketi(&json!({"port": 6001, "shutdownGracePeriod": 1})));
    assert!(!is_soketi(
        &json!({"port": 6001, "app_manager": {"array": {"apps": []}}})
    ));
    assert!(
        !is_soketi(&json!({"port": 6001, "debug": true})),
        "the same in both"
    );
    let text = json!({"port": 6001, "app_manager.driver": "memory"}).to_string();
    let (document, _) = prepare(Some(&text), ConfigFormat::Sockudo, &|_| None).unwrap();
    assert_eq!(
        document["app_manager.driver"], "memory",
        "--config-format sockudo: as written"
    );
}

/// A soketi `config.json` as its docs write one.
fn soketi_file() -> Value {
    json!({
        "debug": true,
        "port": 6001,
        "appManager.array.apps": [{
            "id": "app-1", "key": "key-1", "secret": "secret-1",
            "maxConnections": 100, "enableClientMessages": true, "enabled": true,
            "maxBackendEventsPerSecond": 50, "max_client_events_per_sec": 10,
            "maxReadRequestsPerSecond": -1, "enableUserAuthentication": false,
            "maxPresenceMembersPerChannel": 20, "webhooks": [{
                "url": "http://127.0.0.1:9/hook", "event_types": ["channel_occupied"],
                "headers": {"X-Token": "t"}, "filter": {"channel_name_starts_with": "private-"}
            }, {
                "lambda_function": "hooks", "event_types": ["member_added"],
                "lambda": {"async": true, "region": "eu-west-1"}
            }]
        }],
        "metrics": {"enabled": false, "port": 9602},
        "webhooks.batching.enabled": true,
        "cors.allowedHeaders": ["Authorization"],
        "adapter": {"driver": "local", "nats": {"servers": ["n:4222"]}},
        "mystery": 1
    })
}

#[test]
fn a_soketi_file_becomes_sockudos_document() {
    let (document, overlay) = prepare(
        Some(&soketi_file().to_string()),
        ConfigFormat::Auto,
        &|_| None,
    )
    .unwrap();
    let app = &document["app_manager"]["array"]["apps"][0];
    assert_eq!(app["max_connections"], 100);
    assert_eq!(app["max_client_events_per_second"], 10);
    assert_eq!(app["max_presence_members_per_channel"], 20);
    assert_eq!(
        app["webhooks"][0]["filter"],
        json!({"channel_prefix": "private-"})
    );
    assert_eq!(
        app["webhooks"][1]["lambda"],
        json!({"function_name": "hooks", "invocation_type": "Event", "region": "eu-west-1"})
    );
    assert_eq!(
        document["cors"]["allowed_headers"],
        json!(["Authorization"])
    );
    assert_eq!(document["webhooks"]["batching"]["enabled"], true);
    let ignored: Vec<&str> = overlay.ignored.iter().map(|k| k.path.as_str()).collect();
    assert_eq!(ignored, ["adapter.nats.servers", "mystery"]);
    let config = Config::from_value(document).unwrap();
    assert_eq!(config.apps[0].webhooks.len(), 2);
}

#[test]
fn errors_in_a_soketi_file_name_its_keys() {
    let mut file = soketi_file();
    file["appManager.array.apps"][0]["maxConnections"] = json!("lots");
    let text = file.to_string();
    let (document, overlay) = prepare(Some(&text), ConfigFormat::Auto, &|_| None).unwrap();
    let error = overlay.rename(Config::from_value(document).unwrap_err());
    assert_eq!(error.path, "appManager.array.apps[0].maxConnections");
    let mut file = soketi_file();
    file["appManager.array.apps"][0]["webhooks"][0]["filter"]["channel_name_ends_with"] =
        json!("-x");
    let error = prepare(Some(&file.to_string()), ConfigFormat::Auto, &|_| None).unwrap_err();
    assert_eq!(
        error.path,
        "appManager.array.apps[0].webhooks[0].filter.channel_name_ends_with"
    );
}
