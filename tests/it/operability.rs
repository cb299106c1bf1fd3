//! Metrics, health, graceful shutdown, unknown routes and start-up config errors.

use std::process::Command;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn metrics_count_connections_subscriptions_messages_and_rest_statuses() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("m").await;
    client.send(json!({"event": "pusher:ping"})).await;
    client.recv().await;
    let rest = Rest::new(&server);
    rest.post(
        &format!("/apps/{APP_ID}/events"),
        json!({"name": "e", "channel": "m", "data": "x"}),
    )
    .await;
    Rest {
        secret: "bad",
        ..Rest::new(&server)
    }
    .post(
        &format!("/apps/{APP_ID}/events"),
        json!({"name": "e", "channel": "m", "data": "x"}),
    )
    .await;
    client.recv().await;
    let url = format!("http://{}/metrics", server.running.metrics_addr.unwrap());
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    for line in [
        "herald_connected 1",
        "herald_subscriptions 1",
        "herald_ws_messages_received_total 2",
        "herald_ws_messages_sent_total 1",
        "herald_http_requests_total{status=\"200\"} 1",
        "herald_http_requests_total{status=\"401\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let server = TestServer::start().await;
    assert_eq!(
        reqwest::get(server.http_url("/up")).await.unwrap().status(),
        200
    );
    assert_eq!(
        reqwest::get(server.http_url(&format!("/up/{APP_ID}")))
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, body) = send(reqwest::Client::new().get(server.http_url("/nowhere"))).await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn shutdown_closes_sockets_with_4200() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("s").await;
    let shutdown = tokio::spawn(server.running.shutdown());
    let closed = client.closed().await;
    assert_eq!(closed.code, Some(4200), "{closed:?}");
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown in time")
        .unwrap()
        .unwrap();
}

#[test]
fn a_wrong_config_value_fails_startup_naming_file_and_key() {
    let dir = std::env::temp_dir().join(format!("herald-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.json");
    let mut config = base_config();
    config["app_manager"]["array"]["apps"][0]["webhooks"] = json!([{"url": "http://127.0.0.1:9/hook", "event_types": ["channel_occupied"], "filter": {"channel_type": "privat"}}]);
    std::fs::write(&file, config.to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("app_manager.array.apps[0].webhooks[0].filter.channel_type"),
        "{stderr}"
    );
}

#[test]
fn help_explains_the_cli() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("--config"), "{text}");
    assert!(text.contains("--config-format"), "{text}");
}
