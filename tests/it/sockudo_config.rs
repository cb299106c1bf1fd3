//! A Sockudo config's keys that guard the server, as a migrating user writes them: an app's
//! `allowed_origins` (flat or inside `policy`), `channel_namespaces`, the client event and
//! message rate limits, and Sockudo's own `config/config.json` starting unchanged.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::hook_server::{HookAnswer, HookServer};
use crate::probe_support::{connect_with, Outcome};
use crate::support::*;

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// How a connection with `origin` (none: no header) to `server`'s app `key` ends up.
async fn connect_from_origin(server: &TestServer, key: &str, origin: Option<&str>) -> Outcome {
    let headers: Vec<(&'static str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
    connect_with(LOCAL, &server.ws_url(key), &headers, WAIT).await
}

fn refused_with_4009(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Closed {
            code: Some(4009),
            errors,
            ..
        } => errors.len() == 1 && errors[0]["data"]["message"] == "Origin not allowed",
        _ => false,
    }
}

#[tokio::test]
async fn allowed_origins_let_listed_pages_in_and_refuse_the_rest_before_any_hook() {
    let hook = HookServer::start(|_| HookAnswer::allow()).await;
    let server = TestServer::start_with(|c| {
        let app = TestServer::app(c);
        app["allowed_origins"] = json!(["https://app.example", "*.example.org"]);
        app["decision_hooks"] = json!({"url": hook.url(), "events": ["connection_starting"]});
    })
    .await;
    for origin in [
        "https://app.example",
        "https://a.example.org",
        "http://example.org",
    ] {
        let outcome = connect_from_origin(&server, KEY, Some(origin)).await;
        assert!(
            matches!(outcome, Outcome::Established),
            "{origin}: {outcome:?}"
        );
    }
    for origin in [
        Some("https://evil.example"),
        Some("http://app.example"),
        None,
    ] {
        let outcome = connect_from_origin(&server, KEY, origin).await;
        assert!(refused_with_4009(&outcome), "{origin:?}: {outcome:?}");
    }
    assert_eq!(
        hook.received().len(),
        3,
        "refused origins never reach the hook"
    );
}

#[tokio::test]
async fn origins_are_per_app_and_an_empty_list_allows_any() {
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["allowed_origins"] = json!(["https://one.example"]);
        let apps = c["app_manager"]["array"]["apps"].as_array_mut().unwrap();
        apps.push(json!({"id": "app-2", "key": "key-2", "secret": "s2", "allowed_origins": []}));
        apps.push(json!({"id": "app-3", "key": "key-3", "secret": "s3", "allowed_origins": ["*"]}));
    })
    .await;
    let foreign = Some("https://two.example");
    assert!(refused_with_4009(
        &connect_from_origin(&server, KEY, foreign).await
    ));
    for key in ["key-2", "key-3"] {
        let outcome = connect_from_origin(&server, key, foreign).await;
        assert!(matches!(outcome, Outcome::Established), "{key}");
        let outcome = connect_from_origin(&server, key, None).await;
        assert!(
            matches!(outcome, Outcome::Established),
            "{key} without an Origin"
        );
    }
}

/// A `policy`-shaped app as Sockudo 5.2 writes it.
fn policy_app() -> Value {
    json!({
        "id": APP_ID, "key": KEY, "secret": SECRET,
        "max_connections": 1,
        "policy": {
            "limits": {"max_client_events_per_second": 2, "decay_seconds": 60},
            "features": {"enable_client_messages": true},
            "channels": {
                "allowed_origins": ["https://app.example"],
                "channel_namespaces": [
                    {"name": "chat", "channel_name_pattern": "^chat:[a-z0-9-]+$",
                     "max_channel_name_length": 40, "allow_publish_for_client": false},
                    {"name": "quiet", "allow_subscribe_for_client": false},
                ],
            },
        },
    })
}

#[tokio::test]
async fn a_policy_shaped_app_is_enforced_like_a_flat_one() {
    let server = TestServer::start_with(|c| {
        c["app_manager"]["array"]["apps"] = json!([policy_app()]);
    })
    .await;
    let outcome = connect_from_origin(&server, KEY, Some("https://evil.example")).await;
    assert!(refused_with_4009(&outcome), "{outcome:?}");
    // The flat max_connections beside the policy is ignored, as in Sockudo: two connect.
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(server.ws_url(KEY)).unwrap();
    request
        .headers_mut()
        .insert("origin", "https://app.example".parse().unwrap());
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (ws, _) = tokio_tungstenite::connect_async(request.clone())
            .await
            .unwrap();
        clients.push(Client::from_socket(ws).await);
    }
    let client = &mut clients[0];
    assert_eq!(
        client.subscribe("chat:room-1").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    for refused in [
        "chat:Room_1",
        "private-chat:x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x",
        "quiet:a",
    ] {
        let reply = client
            .subscribe_with(json!({"channel": refused, "auth": ""}))
            .await;
        assert_eq!(
            reply["event"], "pusher:subscription_error",
            "{refused}: {reply}"
        );
        assert_eq!(reply["channel"], refused);
    }
    assert_eq!(
        client.subscribe("news:Anything").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    client.subscribe_private("private-chat:room").await;
    client
        .send(json!({"event": "client-a", "channel": "private-chat:room", "data": {}}))
        .await;
    let error = client.recv_event("pusher:error").await;
    assert!(
        error["data"]["message"]
            .as_str()
            .unwrap()
            .contains("may not publish"),
        "{error}"
    );
    // Two client events per 60 s (decay_seconds), then 4301 and the socket stays.
    client.subscribe_private("private-room").await;
    for _ in 0..2 {
        client
            .send(json!({"event": "client-a", "channel": "private-room", "data": {}}))
            .await;
    }
    client
        .send(json!({"event": "client-a", "channel": "private-room", "data": {}}))
        .await;
    let limited = client.recv_event("pusher:error").await;
    assert_eq!(limited["data"]["code"], 4301, "{limited}");
}

#[tokio::test]
async fn terminate_on_limit_closes_and_the_message_rate_limit_counts_every_message() {
    let server = TestServer::start_with(|c| {
        let app = TestServer::app(c);
        app["max_client_events_per_second"] = json!(1);
        app["terminate_on_limit"] = json!(true);
    })
    .await;
    let mut client = server.client().await;
    client.subscribe_private("private-room").await;
    for _ in 0..2 {
        client
            .send(json!({"event": "client-a", "channel": "private-room", "data": {}}))
            .await;
    }
    let closed = client.closed().await;
    assert_eq!(closed.code, Some(4301), "{closed:?}");

    let server = TestServer::start_with(|c| {
        TestServer::app(c)["message_rate_limit"] =
            json!({"enabled": true, "max_attempts": 3, "decay_seconds": 60});
    })
    .await;
    let mut client = server.client().await;
    for _ in 0..3 {
        client
            .send(json!({"event": "pusher:ping", "data": {}}))
            .await;
        assert_eq!(client.recv().await["event"], "pusher:pong");
    }
    client
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    let limited = client.recv().await;
    assert_eq!(
        limited["data"]["code"], 4301,
        "the fourth is dropped: {limited}"
    );
    client.expect_silence(Duration::from_millis(200)).await;
}

/// The fixture with its listeners moved to loopback and free ports.
fn sockudo_fixture() -> Value {
    on_free_ports("tests/fixtures/sockudo-config.json")
}

/// The config file at `path` (from the repository's root) with its listeners moved to loopback
/// and free ports.
fn on_free_ports(path: &str) -> Value {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    config["host"] = json!("127.0.0.1");
    config["port"] = json!(0);
    config["metrics"]["host"] = json!("127.0.0.1");
    config["metrics"]["port"] = json!(0);
    config
}

#[tokio::test]
async fn sockudos_own_config_starts_and_its_policy_is_enforced() {
    let config = herald::config::Config::from_json(&sockudo_fixture().to_string())
        .unwrap_or_else(|e| panic!("Sockudo's config/config.json is refused: {e}"));
    let ignored: Vec<&str> = config
        .ignored_keys
        .iter()
        .map(|k| k.path.as_str())
        .collect();
    for expected in [
        "delta_compression",
        "echo_control",
        "app_manager.array.apps[0].policy.idempotency",
    ] {
        assert!(
            ignored.contains(&expected),
            "{expected} not reported: {ignored:?}"
        );
    }
    let server = herald::Server::bind(config).await.unwrap().spawn().unwrap();
    let url = format!(
        "ws://{}/app/app-key?protocol=7&client=js&version=8.4.0",
        server.addr
    );
    let foreign = connect_with(LOCAL, &url, &[("origin", "https://anywhere.example")], WAIT).await;
    assert!(
        matches!(foreign, Outcome::Established),
        "allowed_origins [\"*\"]: {foreign:?}"
    );
    let mut client = Client::connect(&url).await;
    let reply = client
        .subscribe_with(json!({"channel": "ticker:BAD/NAME", "auth": ""}))
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
    let reply = client
        .subscribe_with(json!({"channel": "ticker:btc-usd", "auth": ""}))
        .await;
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn heralds_shipped_config_starts_with_nothing_ignored() {
    let config =
        herald::config::Config::from_json(&on_free_ports("config.json").to_string()).unwrap();
    assert!(config.ignored_keys.is_empty(), "{:?}", config.ignored_keys);
    let server = herald::Server::bind(config).await.unwrap().spawn().unwrap();
    let url = format!("ws://{}/app/app-key?protocol=7", server.addr);
    Client::connect(&url).await;
    server.shutdown().await.unwrap();
}

#[test]
fn each_class_of_unimplemented_key_is_refused_or_warned() {
    let load = |json: Value| herald::config::Config::from_json(&json.to_string());
    let refused = [
        (
            json!({"ssl": {"enabled": true, "cert_path": "/c"}}),
            "ssl.key_path",
        ),
        (json!({"unix_socket": {"enabled": true}}), "unix_socket"),
        (
            json!({"rate_limiter": {"enabled": true, "driver": "nats"}}),
            "rate_limiter.driver",
        ),
        (
            json!({"http_api": {"accept_traffic": {"enabled": true}}}),
            "http_api.accept_traffic",
        ),
    ];
    for (json, key) in refused {
        let error = load(json.clone()).expect_err(&json.to_string());
        assert_eq!(error.path, key, "{error}");
    }
    let warned = json!({
        "ssl": {"enabled": false, "frobnicate": 1}, "unix_socket": {"enabled": false}, "path_prefix": "/realtime",
        "mode": "production", "websocket": {"auto_ping": true, "compression": "disabled"},
        "app_manager": {"array": {"apps": [{"id": "a", "key": "k", "secret": "s",
            "enable_watchlist_events": true, "channel_namespaces": [{"name": "c", "history": {}}]}]}},
    });
    let config = load(warned).unwrap();
    let paths: Vec<&str> = config
        .ignored_keys
        .iter()
        .map(|k| k.path.as_str())
        .collect();
    for key in [
        "ssl.frobnicate",
        "unix_socket",
        "path_prefix",
        "mode",
        "websocket.auto_ping",
        "app_manager.array.apps[0].channel_namespaces[0].history",
    ] {
        assert!(paths.contains(&key), "{key} not warned: {paths:?}");
    }
    let watchlist = "app_manager.array.apps[0].enable_watchlist_events";
    assert!(!paths.contains(&watchlist), "watchlist events are built");
}
