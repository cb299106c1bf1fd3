//! Triggering events: fan-out, socket_id exclusion, batches, limits and info.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn events_path() -> String {
    format!("/apps/{APP_ID}/events")
}

#[tokio::test]
async fn trigger_reaches_every_subscriber_on_every_channel() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("one").await;
    b.subscribe("two").await;
    let (status, body) = Rest::new(&server)
        .post(
            &events_path(),
            json!({"name": "greet", "channels": ["one", "two"], "data": "{\"hello\":1}"}),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(
        a.recv().await,
        json!({"event": "greet", "channel": "one", "data": "{\"hello\":1}"})
    );
    assert_eq!(
        b.recv().await,
        json!({"event": "greet", "channel": "two", "data": "{\"hello\":1}"})
    );
}

#[tokio::test]
async fn socket_id_is_excluded_from_delivery() {
    let server = TestServer::start().await;
    let mut sender = server.client().await;
    let mut other = server.client().await;
    sender.subscribe("room").await;
    other.subscribe("room").await;
    let body = json!({"name": "e", "channel": "room", "data": "x", "socket_id": sender.socket_id});
    assert_eq!(Rest::new(&server).post(&events_path(), body).await.0, 200);
    assert_eq!(other.recv().await["data"], "x");
    sender.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn singular_channel_and_non_string_data_are_accepted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("room").await;
    let body = json!({"name": "e", "channel": "room", "data": {"k": [1, 2]}});
    assert_eq!(Rest::new(&server).post(&events_path(), body).await.0, 200);
    assert_eq!(client.recv().await["data"], r#"{"k":[1,2]}"#);
}

#[tokio::test]
async fn batch_events_are_all_delivered_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("b1").await;
    client.subscribe("b2").await;
    let batch = json!({"batch": [
        {"name": "first", "channel": "b1", "data": "1"},
        {"name": "second", "channel": "b2", "data": "2"},
        {"name": "third", "channel": "b1", "data": "3"}
    ]});
    assert_eq!(
        Rest::new(&server)
            .post(&format!("/apps/{APP_ID}/batch_events"), batch)
            .await,
        (200, json!({}))
    );
    for expected in ["first", "second", "third"] {
        assert_eq!(client.recv().await["event"], expected);
    }
}

#[tokio::test]
async fn batch_runs_for_one_channel_keep_order_and_exclusions() {
    let server = TestServer::start().await;
    let mut sender = server.client().await;
    sender.subscribe("run").await;
    let mut other = server.client().await;
    other.subscribe("run").await;
    other.subscribe("side").await;
    let item = |name: &str, channel: &str| json!({"name": name, "channel": channel, "data": name});
    let mut excluded = item("e3", "run");
    excluded["socket_id"] = json!(sender.socket_id);
    let batch = json!({"batch": [
        item("e1", "run"), item("e2", "run"), excluded, item("e4", "run"),
        item("e5", "side"), item("e6", "run"), item("e7", "run")
    ]});
    let (status, _) = Rest::new(&server)
        .post(&format!("/apps/{APP_ID}/batch_events"), batch)
        .await;
    assert_eq!(status, 200);
    for expected in ["e1", "e2", "e3", "e4", "e5", "e6", "e7"] {
        assert_eq!(other.recv().await["event"], expected);
    }
    for expected in ["e1", "e2", "e4", "e6", "e7"] {
        assert_eq!(sender.recv().await["event"], expected);
    }
    sender.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn batch_over_the_limit_is_400_and_nothing_is_sent() {
    let server =
        TestServer::start_with(|c| TestServer::app(c)["max_event_batch_size"] = json!(2)).await;
    let mut client = server.client().await;
    client.subscribe("b").await;
    let item = json!({"name": "e", "channel": "b", "data": "1"});
    let (status, body) = Rest::new(&server)
        .post(
            &format!("/apps/{APP_ID}/batch_events"),
            json!({"batch": [item, item, item]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn invalid_batch_item_rejects_the_whole_batch() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("b").await;
    let batch = json!({"batch": [{"name": "e", "channel": "b", "data": "1"}, {"name": "e", "channel": "bad name", "data": "1"}]});
    let (status, body) = Rest::new(&server)
        .post(&format!("/apps/{APP_ID}/batch_events"), batch)
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("batch[1]"),
        "{body}"
    );
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn limits_are_enforced_with_pusher_status_codes() {
    let server = TestServer::start_with(|c| {
        let app = TestServer::app(c);
        app["max_event_payload_in_kb"] = json!(1);
        app["max_event_name_length"] = json!(10);
        app["max_event_channels_at_once"] = json!(2);
    })
    .await;
    let rest = Rest::new(&server);
    let cases = [
        (
            json!({"name": "e", "channels": ["c"], "data": "x".repeat(1025)}),
            413,
        ),
        (
            json!({"name": "e".repeat(11), "channels": ["c"], "data": "x"}),
            400,
        ),
        (
            json!({"name": "e", "channels": ["a", "b", "c"], "data": "x"}),
            400,
        ),
        (
            json!({"name": "e", "channels": ["no spaces"], "data": "x"}),
            400,
        ),
        (json!({"name": "e", "channels": [], "data": "x"}), 400),
        (json!({"channels": ["c"], "data": "x"}), 400),
        (
            json!({"name": "e", "channels": ["c"], "data": "x", "socket_id": "abc"}),
            400,
        ),
        (
            json!({"name": "e", "channels": ["c"], "data": "x", "info": "bogus"}),
            400,
        ),
    ];
    for (body, expected) in cases {
        let (status, reply) = rest.post(&events_path(), body.clone()).await;
        assert_eq!(status, expected, "{body} -> {reply}");
        assert!(reply["error"].is_string(), "{reply}");
    }
    let url = rest.signed_url("POST", &events_path(), "not json", &[]);
    assert_eq!(
        send(reqwest::Client::new().post(url).body("not json"))
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn trigger_info_reports_channel_counts() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.join_presence("presence-p", "u1").await;
    a.subscribe("pub").await;
    let body = json!({"name": "e", "channels": ["presence-p", "pub", "empty"], "data": "x", "info": "user_count,subscription_count"});
    let (status, reply) = Rest::new(&server).post(&events_path(), body).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"channels": {
            "presence-p": {"user_count": 1, "subscription_count": 1},
            "pub": {"subscription_count": 1},
            "empty": {"subscription_count": 0}
        }})
    );
}

#[tokio::test]
async fn bodies_over_the_request_limit_are_413() {
    let server =
        TestServer::start_with(|c| c["http_api"] = json!({"request_limit_in_mb": 0.01})).await;
    let body = json!({"name": "e", "channel": "c", "data": "x".repeat(20_000)});
    let (status, reply) = Rest::new(&server).post(&events_path(), body).await;
    assert_eq!(status, 413, "{reply}");
    assert!(reply["error"].is_string());
}
