use super::*;
use std::collections::HashMap;

fn error_of(json: &str) -> ConfigError {
    Config::from_json(json).expect_err("config should be refused")
}

#[test]
fn empty_file_gets_sockudo_defaults() {
    let c = Config::from_json("{}").unwrap();
    assert_eq!(c.port, 6001);
    assert_eq!(c.activity_timeout, Duration::from_secs(120));
    assert!(c.webhooks.batching_enabled);
    assert_eq!(c.webhooks.batching_duration, Duration::from_millis(50));
    assert!(c.apps.is_empty());
}

#[test]
fn app_limits_fall_back_to_global_sections_then_defaults() {
    let c = Config::from_json(
        r#"{"presence":{"max_members_per_channel":5},
            "app_manager":{"driver":"memory","array":{"apps":[
              {"id":1,"key":"k","secret":"s"},
              {"id":"2","key":"k2","secret":"s","max_presence_members_per_channel":"7","max_event_payload_in_kb":1}]}}}"#,
    )
    .unwrap();
    assert_eq!(c.apps[0].id, "1");
    assert_eq!(c.apps[0].max_presence_members_per_channel, 5);
    assert_eq!(c.apps[0].max_event_payload, 100 * 1024);
    assert_eq!(c.apps[0].max_presence_member_size, 2 * 1024);
    assert_eq!(c.apps[0].max_channel_name_length, 200);
    assert_eq!(c.apps[1].max_presence_members_per_channel, 7);
    assert_eq!(c.apps[1].max_event_payload, 1024);
}

#[test]
fn numbers_as_strings_are_accepted() {
    let c = Config::from_json(r#"{"port":"6002","debug":"true"}"#).unwrap();
    assert_eq!(c.port, 6002);
    assert!(c.debug);
}

#[test]
fn unknown_keys_are_collected_with_paths() {
    let c = Config::from_json(
        r#"{"mode":"production","app_manager":{"array":{"apps":[{"id":"a","key":"k","secret":"s","history":{"enabled":true},"frobnicate":1}]}}}"#,
    )
    .unwrap();
    let paths: Vec<&str> = c.ignored_keys.iter().map(|k| k.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "app_manager.array.apps[0].frobnicate",
            "app_manager.array.apps[0].history",
            "mode",
        ]
    );
    assert!(c.ignored_keys[0].reason.contains("not used by Herald"));
    assert!(c.ignored_keys[1]
        .reason
        .contains("Sockudo-protocol feature"));
}

#[test]
fn wrong_values_name_the_key_path() {
    let e = error_of(r#"{"port":"sixty"}"#);
    assert_eq!(e.path, "port");
    let e = error_of(
        r#"{"app_manager":{"array":{"apps":[{"id":"a","key":"k","secret":"s","webhooks":[{"url":"http://x","event_types":["channel_occupied"],"filter":{"channel_type":"privat"}}]}]}}}"#,
    );
    assert_eq!(
        e.path,
        "app_manager.array.apps[0].webhooks[0].filter.channel_type"
    );
    let e = error_of(r#"{"webhooks":{"batching":{"duration":-5}}}"#);
    assert_eq!(e.path, "webhooks.batching.duration");
    let e = error_of(r#"{"app_manager":{"array":{"apps":[{"id":"a","key":"k"}]}}}"#);
    assert_eq!(e.path, "app_manager.array.apps[0].secret");
}

#[test]
fn narrowing_filter_keys_fail() {
    let e = error_of(
        r#"{"app_manager":{"array":{"apps":[{"id":"a","key":"k","secret":"s","webhooks":[{"url":"http://x","event_types":["channel_occupied"],"filter":{"channel_suffix":"-x"}}]}]}}}"#,
    );
    assert!(
        e.path
            .starts_with("app_manager.array.apps[0].webhooks[0].filter"),
        "{e}"
    );
    assert!(e.message.contains("channel_suffix"), "{e}");
}

#[test]
fn webhook_needs_a_target() {
    let e = error_of(
        r#"{"app_manager":{"array":{"apps":[{"id":"a","key":"k","secret":"s","webhooks":[{"event_types":["channel_occupied"]}]}]}}}"#,
    );
    assert_eq!(e.path, "app_manager.array.apps[0].webhooks[0]");
}

#[test]
fn webhook_endpoint_is_typed() {
    let c = Config::from_json(r#"{"app_manager":{"array":{"apps":[{"id":"a","key":"k","secret":"s","webhooks":[
        {"lambda":{"function_name":"f","region":"eu-west-1"},"event_types":["member_added"],"filter":{"channel_prefix":"presence-"},"retry":{"max_elapsed_time_ms":1000},"request_timeout_ms":250}]}]}}}"#).unwrap();
    let hook = &c.apps[0].webhooks[0];
    assert!(
        matches!(&hook.target, WebhookTarget::Lambda(l) if l.function_name == "f" && l.invocation_type == "Event")
    );
    assert_eq!(hook.channel_prefix.as_deref(), Some("presence-"));
    assert_eq!(hook.retry.max_elapsed, Duration::from_millis(1000));
    assert_eq!(hook.request_timeout, Duration::from_millis(250));
}

#[test]
fn duplicate_app_keys_fail() {
    let e = error_of(
        r#"{"app_manager":{"array":{"apps":[{"id":"a","key":"k","secret":"s"},{"id":"b","key":"k","secret":"s"}]}}}"#,
    );
    assert_eq!(e.path, "app_manager.array.apps[1].key");
}

#[test]
fn app_ids_one_prefixing_the_other_by_a_colon_cannot_share_a_cluster() {
    let apps =
        r#""apps":[{"id":"x","key":"k1","secret":"s"},{"id":"x:y","key":"k2","secret":"s"}]"#;
    let local = format!(r#"{{"app_manager":{{"array":{{{apps}}}}}}}"#);
    assert!(Config::from_json(&local).is_ok(), "one node has no topics");
    let cluster = format!(
        r#"{{"adapter":{{"driver":"redis","redis":{{"url":"redis://127.0.0.1:1"}}}},"app_manager":{{"array":{{{apps}}}}}}}"#
    );
    let e = error_of(&cluster);
    assert_eq!(e.path, "app_manager.array.apps[1].id");
}

#[test]
fn env_overrides_and_demo_app() {
    let vars: HashMap<&str, &str> = [
        ("HERALD_PORT", "7000"),
        ("HERALD_APP_KEY", "kk"),
        ("HERALD_APP_SECRET", "ss"),
    ]
    .into();
    let c = apply_env(Config::defaults(), &|n| vars.get(n).map(|v| v.to_string())).unwrap();
    assert_eq!(c.port, 7000);
    assert_eq!(
        (c.apps[0].id.as_str(), c.apps[0].key.as_str()),
        ("app-id", "kk")
    );
    let c = apply_env(Config::defaults(), &|_| None).unwrap();
    assert_eq!(c.apps[0].key, "app-key");
    assert!(apply_env(Config::defaults(), &|n| (n == "HERALD_PORT")
        .then(|| "x".into()))
    .is_err());
}

#[test]
fn a_metric_prefix_must_start_a_metric_name() {
    let e = error_of(r#"{"metrics":{"prometheus":{"prefix":"my-app_"}}}"#);
    assert_eq!(e.path, "metrics.prometheus.prefix");
    assert!(error_of(r#"{"metrics":{"prometheus":{"prefix":"9x"}}}"#)
        .to_string()
        .contains("metrics.prometheus.prefix"));
    let config = Config::from_json(r#"{"metrics":{"prometheus":{"prefix":"sockudo_"}}}"#).unwrap();
    assert_eq!(config.metrics.prefix, "sockudo_");
    assert_eq!(Config::defaults().metrics.prefix, "herald_");
}

#[test]
fn herald_node_id_names_a_cluster_node() {
    let clustered = Config::from_json(r#"{"adapter":{"driver":"redis","node_id":"a"}}"#).unwrap();
    let node_id = |c: &Config| match &c.cluster {
        ClusterConfig::Redis(redis) => redis.node_id.clone(),
        ClusterConfig::Local => None,
    };
    let env =
        |value: &'static str| move |n: &str| (n == "HERALD_NODE_ID").then(|| value.to_owned());
    let c = apply_env(clustered.clone(), &env("node-b")).unwrap();
    assert_eq!(node_id(&c).as_deref(), Some("node-b"));
    let e = apply_env(clustered, &env("no spaces")).unwrap_err();
    assert_eq!(e.path, "$HERALD_NODE_ID");
    let alone = apply_env(Config::defaults(), &env("node-b")).unwrap();
    assert_eq!(alone.cluster, ClusterConfig::Local);
}

fn with_hooks(hooks: &str) -> String {
    format!(
        r#"{{"app_manager":{{"array":{{"apps":[{{"id":"1","key":"k","secret":"s","decision_hooks":{hooks}}}]}}}}}}"#
    )
}

#[test]
fn decision_hooks_take_their_defaults_and_name_the_key_they_refuse() {
    let c = Config::from_json(&with_hooks(
        r#"{"url":"http://127.0.0.1:3000/decide","events":["subscription_starting"]}"#,
    ))
    .unwrap();
    let hooks = c.apps[0].decision_hooks.as_ref().unwrap();
    assert!(hooks.asks(HookKind::SubscriptionStarting));
    assert!(!hooks.asks(HookKind::ConnectionStarting));
    assert_eq!(hooks.request_timeout, Duration::from_millis(1000));
    assert_eq!(hooks.on_failure, OnFailure::Reject);
    assert_eq!(hooks.max_concurrent, 256);
    assert_eq!(hooks.max_concurrent_per_address, 64, "a quarter of the cap");
    let shared = |json: &str| {
        let c = Config::from_json(&with_hooks(json)).unwrap();
        let hooks = c.apps[0].decision_hooks.clone().unwrap();
        (hooks.max_concurrent, hooks.max_concurrent_per_address)
    };
    let url = r#""url":"http://x","events":["connection_starting"]"#;
    assert_eq!(shared(&format!(r#"{{{url},"max_concurrent":2}}"#)), (2, 1));
    assert_eq!(
        shared(&format!(
            r#"{{{url},"max_concurrent":8,"max_concurrent_per_address":99}}"#
        )),
        (8, 8),
        "never more than the cap"
    );

    let refused = [
        (
            r#"{"url":"http://x","events":["connection_starting"],"max_concurrent_per_address":0}"#,
            "decision_hooks.max_concurrent_per_address",
        ),
        (
            r#"{"events":["connection_starting"]}"#,
            "decision_hooks.url",
        ),
        (
            r#"{"url":"ftp://x","events":["connection_starting"]}"#,
            "decision_hooks.url",
        ),
        (r#"{"url":"http://x"}"#, "decision_hooks.events"),
        (
            r#"{"url":"http://x","events":["connect"]}"#,
            "decision_hooks.events",
        ),
        (
            r#"{"url":"http://x","events":["connection_starting"],"on_failure":"ignore"}"#,
            "decision_hooks.on_failure",
        ),
        (
            r#"{"url":"http://x","events":["connection_starting"],"max_concurrent":0}"#,
            "decision_hooks.max_concurrent",
        ),
        (
            r#"{"url":"http://x","events":["connection_starting"],"request_timeout_ms":0}"#,
            "decision_hooks.request_timeout_ms",
        ),
        (
            r#"{"url":"http://x","events":["connection_starting"],"headers":{"X-Pusher-Signature":"x"}}"#,
            "decision_hooks.headers.X-Pusher-Signature",
        ),
        (
            r#"{"url":"http://x","events":["connection_starting"],"timeout":5}"#,
            "decision_hooks",
        ),
    ];
    for (hooks, key) in refused {
        let error = error_of(&with_hooks(hooks));
        assert!(error.path.contains(key), "{hooks}: {error}");
    }
}

#[test]
fn webhook_signature_schemes_parse_and_name_their_key() {
    let hooks = |extra: &str| {
        format!(
            r#"{{"app_manager":{{"array":{{"apps":[{{"id":"a","key":"k","secret":"s","webhooks":[
            {{"url":"http://x","event_types":["channel_occupied"]{extra}}}]}}]}}}}}}"#
        )
    };
    let scheme = |extra: &str| {
        let c = Config::from_json(&hooks(extra)).unwrap();
        c.apps[0].webhooks[0].signature.clone()
    };
    assert_eq!(scheme(""), SignatureScheme::Pusher);
    assert_eq!(scheme(r#","signature":"pusher""#), SignatureScheme::Pusher);
    assert_eq!(scheme(r#","signature":"jwt""#), SignatureScheme::Jwt);
    assert_eq!(
        scheme(r#","signature":"standard-webhooks","standard_webhooks_secret":"whsec_aGk=""#),
        SignatureScheme::StandardWebhooks(b"hi".to_vec())
    );

    let e = error_of(&hooks(r#","signature":"JWT""#));
    assert_eq!(e.path, "app_manager.array.apps[0].webhooks[0].signature");
    assert!(e.message.contains(r#""jwt""#), "{e}");
    let e = error_of(&hooks(r#","signature":"standard-webhooks""#));
    assert_eq!(
        e.path,
        "app_manager.array.apps[0].webhooks[0].standard_webhooks_secret"
    );

    // As for standard-webhooks, a Lambda target takes the key and ignores it: IAM authenticates.
    let c = Config::from_json(
        r#"{"app_manager":{"array":{"apps":[{"id":"a","key":"k","secret":"s","webhooks":[
        {"lambda_function":"f","event_types":["channel_occupied"],"signature":"jwt"}]}]}}}"#,
    )
    .unwrap();
    assert_eq!(c.apps[0].webhooks[0].signature, SignatureScheme::Jwt);
}

#[test]
fn the_console_is_on_by_default_and_its_token_must_be_long_enough() {
    let c = Config::from_json("{}").unwrap();
    assert!(c.console.enabled);
    assert_eq!(c.console.token, None);
    let c =
        Config::from_json(r#"{"console":{"enabled":false,"token":"0123456789abcdef"}}"#).unwrap();
    assert!(!c.console.enabled);
    assert_eq!(c.console.token.as_deref(), Some("0123456789abcdef"));
    assert_eq!(
        error_of(r#"{"console":{"token":"short"}}"#).path,
        "console.token"
    );
    assert_eq!(
        error_of(r#"{"console":{"token":"has spaces in it ok"}}"#).path,
        "console.token"
    );
    assert!(error_of(r#"{"console":{"tokn":"x"}}"#)
        .path
        .starts_with("console"));
    let env = |n: &str| (n == "HERALD_CONSOLE_TOKEN").then(|| "from-the-environment-1".to_owned());
    let c = apply_env(Config::defaults(), &env).unwrap();
    assert_eq!(c.console.token.as_deref(), Some("from-the-environment-1"));
    let short = |n: &str| (n == "HERALD_CONSOLE_TOKEN").then(|| "x".to_owned());
    assert_eq!(
        apply_env(Config::defaults(), &short).unwrap_err().path,
        "$HERALD_CONSOLE_TOKEN"
    );
}

#[test]
fn the_head_limit_and_the_trusted_proxy_hops_have_defaults() {
    let c = Config::from_json("{}").unwrap();
    assert_eq!(c.http.max_header, 32 * 1024);
    assert_eq!(c.trust_hops, 0);
    let c =
        Config::from_json(r#"{"http_api":{"max_header_kb":"64"},"trust_x_forwarded_for":true}"#)
            .unwrap();
    assert_eq!(c.http.max_header, 64 * 1024);
    assert_eq!(c.trust_hops, 1, "the older key counts as one hop");
    let c = Config::from_json(
        r#"{"trust_x_forwarded_for":true,"rate_limiter":{"websocket_rate_limit":{"trust_hops":2}}}"#,
    )
    .unwrap();
    assert_eq!(c.trust_hops, 2, "Sockudo's key wins");
    let c = Config::from_json(r#"{"http_api":{"max_header_kb":1}}"#).unwrap();
    assert_eq!(c.http.max_header, 8192, "hyper's floor");
    let error = error_of(r#"{"http_api":{"max_header_kb":0}}"#);
    assert_eq!(error.path, "http_api.max_header_kb");
}

#[test]
fn a_refused_hook_or_webhook_url_is_named_without_its_secrets() {
    let hooks = with_hooks(
        r#"{"url":"htps://bob:TOKEN@hooks.example/in?key=SECRET","events":["connection_starting"]}"#,
    );
    let webhook = r#"{"app_manager":{"array":{"apps":[{"id":"1","key":"k","secret":"s","webhooks":[{"url":"ftp://bob:TOKEN@x/?key=SECRET","event_types":["channel_occupied"]}]}]}}}"#;
    for json in [hooks.as_str(), webhook] {
        let error = error_of(json).to_string();
        assert!(
            !error.contains("TOKEN") && !error.contains("SECRET"),
            "{error}"
        );
    }
}

#[test]
fn database_drivers_read_their_section_and_the_cache() {
    let c = Config::from_json(
        r#"{"app_manager":{"driver":"PgSQL","cache":{"enabled":false,"ttl":60,"negative_ttl_ms":250},
              "array":{"apps":[{"id":"a","key":"k","secret":"s"}]}},
            "database":{"postgres":{"host":"db.internal","username":"herald","password":"p@ss word",
              "database":"apps","connection_pool_size":"4","table_name":"my_apps","create_table":false}}}"#,
    )
    .unwrap();
    let store = c.app_store.as_ref().expect("a database driver");
    assert_eq!(store.driver, AppStoreDriver::Postgres);
    assert_eq!(
        store.url,
        "postgres://herald:p%40ss%20word@db.internal:5432/apps"
    );
    assert_eq!(store.table, "my_apps");
    assert_eq!(store.pool_size, 4);
    assert!(!store.create_table);
    let cache = AppCacheConfig {
        enabled: false,
        ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_millis(250),
    };
    assert_eq!(store.cache, cache);
    assert!(c.apps.is_empty(), "the file's apps are not read");
    let ignored: Vec<&str> = c.ignored_keys.iter().map(|k| k.path.as_str()).collect();
    assert_eq!(ignored, ["app_manager.array.apps"]);

    let c = Config::from_json(
        r#"{"app_manager":{"driver":"mysql"},
            "database":{"mysql":{"url":"mysql://u:secret@127.0.0.1:3307/herald?ssl-mode=required","cache_ttl":30}}}"#,
    )
    .unwrap();
    let store = c.app_store.unwrap();
    assert_eq!(store.driver, AppStoreDriver::MySql);
    assert_eq!(store.table, "applications");
    assert_eq!(store.pool_size, 10);
    assert!(store.create_table);
    assert_eq!(
        store.cache.ttl,
        Duration::from_secs(30),
        "the section's cache_ttl wins"
    );
    assert_eq!(store.cache.negative_ttl, Duration::from_millis(5000));
    let shown = format!("{store:?}");
    assert!(!shown.contains("secret"), "{shown}");

    let c = Config::from_json(r#"{"app_manager":{"driver":"postgresql"}}"#).unwrap();
    let store = c.app_store.unwrap();
    assert_eq!(store.url, "postgres://root:@localhost:5432/sockudo");
    assert_eq!(store.cache.ttl, Duration::from_secs(300));
    let c = Config::from_json(r#"{"app_manager":{"driver":"memory"}}"#).unwrap();
    assert!(c.app_store.is_none());
}

#[test]
fn unsupported_drivers_and_bad_database_values_name_the_key() {
    for driver in ["dynamodb", "surrealdb", "scylladb", "sqlite"] {
        let e = error_of(&format!(r#"{{"app_manager":{{"driver":"{driver}"}}}}"#));
        assert_eq!(e.path, "app_manager.driver");
        assert!(e.message.contains(driver), "{e}");
    }
    let cases = [
        (
            r#"{"app_manager":{"driver":"pgsql"},"database":{"postgres":{"url":"mysql://x@h/db"}}}"#,
            "database.postgres.url",
        ),
        (
            r#"{"app_manager":{"driver":"pgsql"},"database":{"postgres":{"connection_pool_size":0}}}"#,
            "database.postgres.connection_pool_size",
        ),
        (
            r#"{"app_manager":{"driver":"mysql"},"database":{"mysql":{"table_name":"apps; DROP"}}}"#,
            "database.mysql.table_name",
        ),
        (
            r#"{"app_manager":{"driver":"mysql"},"database":{"mysql":{"cache_ttl":0}}}"#,
            "database.mysql.cache_ttl",
        ),
        (
            r#"{"app_manager":{"driver":"mysql","cache":{"ttl":"soon"}}}"#,
            "app_manager.cache.ttl",
        ),
        (
            r#"{"app_manager":{"driver":"pgsql","cache":{"negative_ttl_ms":999999999}}}"#,
            "app_manager.cache.negative_ttl_ms",
        ),
    ];
    for (json, path) in cases {
        let e = error_of(json);
        assert_eq!(e.path, path, "{e}");
        assert!(!e.message.contains("secret"));
    }
    let e = error_of(
        r#"{"app_manager":{"driver":"pgsql"},"database":{"postgres":{"url":"redis://u:secret@h"}}}"#,
    );
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[test]
fn sockudo_database_keys_are_known() {
    let c = Config::from_json(
        r#"{"app_manager":{"driver":"mysql","cache":{"enabled":true,"ttl":300}},
            "database":{"mysql":{"host":"h","port":3306,"username":"u","password":"p","database":"d",
              "table_name":"applications","connection_pool_size":10,"cache_ttl":300,
              "pool_min":2,"pool_max":10,"cache_cleanup_interval":60,"cache_max_capacity":100},
              "postgres":{"host":"h","port":5432}}}"#,
    )
    .unwrap();
    let ignored: Vec<&str> = c.ignored_keys.iter().map(|k| k.path.as_str()).collect();
    assert_eq!(
        ignored,
        [
            "database.mysql.cache_cleanup_interval",
            "database.mysql.cache_max_capacity",
            "database.mysql.pool_max",
            "database.mysql.pool_min",
        ]
    );
    assert!(c
        .ignored_keys
        .iter()
        .all(|k| !k.reason.contains("not used by Herald")));
}

#[test]
fn a_database_driver_adds_no_demo_app_and_refuses_env_apps() {
    let file = r#"{"app_manager":{"driver":"pgsql"}}"#;
    let c = apply_env(Config::from_json(file).unwrap(), &|_| None).unwrap();
    assert!(c.apps.is_empty(), "no demo app beside a database");
    let vars = HashMap::from([("HERALD_APP_KEY", "k")]);
    let var = |name: &str| vars.get(name).map(|v| v.to_string());
    let e = apply_env(Config::from_json(file).unwrap(), &var).unwrap_err();
    assert_eq!(e.path, "$HERALD_APP_KEY");
    assert!(e.message.contains("database.postgres"), "{e}");
    let c = apply_env(Config::from_json("{}").unwrap(), &|_| None).unwrap();
    assert_eq!(
        c.apps[0].key, "app-key",
        "the file driver keeps the demo app"
    );
}

#[test]
fn an_app_from_json_is_validated_with_the_files_defaults() {
    let c = Config::from_json(r#"{"presence":{"max_members_per_channel":9}}"#).unwrap();
    let app = c
        .app_from_json(
            "row",
            serde_json::json!({"id": "a", "key": "k", "secret": "s",
                "policy": {"limits": {"max_connections": 3},
                           "channels": {"allowed_origins": ["https://a.example"]}}}),
        )
        .unwrap();
    assert_eq!(app.max_connections, Some(3));
    assert_eq!(app.max_presence_members_per_channel, 9);
    assert!(app.allowed_origins.allows(Some("https://a.example")));
    let e = c
        .app_from_json(
            "row",
            serde_json::json!({"id": "a", "key": "k", "secret": "s",
                "policy": {"limits": {"max_event_batch_size": 0}}}),
        )
        .unwrap_err();
    assert_eq!(e.path, "row.policy.limits.max_event_batch_size");
}
