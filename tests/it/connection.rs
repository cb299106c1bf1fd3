//! Handshake, error codes, ping/pong, liveness and bad frames.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

async fn refused(url: &str) -> Closed {
    Client::unestablished(url).await.closed().await
}

fn assert_refused(closed: &Closed, expected: u16) {
    assert_eq!(closed.code, Some(expected), "{closed:?}");
    assert_eq!(closed.errors.len(), 1, "{closed:?}");
    assert_eq!(closed.errors[0]["event"], "pusher:error");
    assert_eq!(closed.errors[0]["data"]["code"], expected);
    assert!(closed.errors[0]["data"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn connection_established_has_socket_id_and_activity_timeout() {
    let server = TestServer::start().await;
    let mut client = Client::unestablished(&server.ws_url(KEY)).await;
    let frame = client.recv().await;
    assert_eq!(frame["event"], "pusher:connection_established");
    let data = data_of(&frame);
    let socket_id = data["socket_id"].as_str().unwrap();
    let (a, b) = socket_id.split_once('.').unwrap();
    assert!(
        !a.is_empty() && !b.is_empty() && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit()),
        "{socket_id}"
    );
    assert_eq!(data["activity_timeout"], 120);
}

#[tokio::test]
async fn unknown_app_key_is_refused_with_4001() {
    let server = TestServer::start().await;
    assert_refused(&refused(&server.ws_url("nope")).await, 4001);
}

#[tokio::test]
async fn disabled_app_is_refused_with_4003() {
    let server = TestServer::start_with(|c| TestServer::app(c)["enabled"] = json!(false)).await;
    assert_refused(&refused(&server.ws_url(KEY)).await, 4003);
}

#[tokio::test]
async fn connections_over_quota_are_refused_with_4004() {
    let server = TestServer::start_with(|c| TestServer::app(c)["max_connections"] = json!(1)).await;
    let first = server.client().await;
    assert_refused(&refused(&server.ws_url(KEY)).await, 4004);
    first.disconnect().await;
    // The slot is released when the first socket leaves.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.client().await.disconnect().await;
}

#[tokio::test]
async fn unknown_path_is_refused_with_4005() {
    let server = TestServer::start().await;
    let url = format!("ws://{}/socket/{KEY}", server.running.addr);
    assert_refused(&refused(&url).await, 4005);
}

#[tokio::test]
async fn unparseable_version_is_refused_with_4006() {
    let server = TestServer::start().await;
    let url = format!(
        "ws://{}/app/{KEY}?protocol=7&version=abc",
        server.running.addr
    );
    assert_refused(&refused(&url).await, 4006);
}

#[tokio::test]
async fn unsupported_protocol_is_refused_with_4007() {
    let server = TestServer::start().await;
    for protocol in ["4", "8", "x"] {
        let url = format!("ws://{}/app/{KEY}?protocol={protocol}", server.running.addr);
        assert_refused(&refused(&url).await, 4007);
    }
}

#[tokio::test]
async fn missing_protocol_counts_as_7_and_5_is_accepted() {
    let server = TestServer::start().await;
    Client::connect(&format!("ws://{}/app/{KEY}", server.running.addr)).await;
    Client::connect(&format!(
        "ws://{}/app/{KEY}?client=java-client&protocol=5&version=2.4.0",
        server.running.addr
    ))
    .await;
}

#[tokio::test]
async fn ping_is_answered_with_pong_with_or_without_data() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    assert_eq!(
        client.recv().await,
        json!({"event": "pusher:pong", "data": {}})
    );
    client.send(json!({"event": "pusher:ping"})).await;
    assert_eq!(client.recv().await["event"], "pusher:pong");
}

#[tokio::test]
async fn malformed_json_gets_an_error_and_the_socket_stays_open() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.send_raw(Message::text("{not json")).await;
    let error = client.recv().await;
    assert_eq!(error["event"], "pusher:error");
    assert!(error["data"]["code"].is_null());
    client.send(json!({"event": "pusher:ping"})).await;
    assert_eq!(client.recv().await["event"], "pusher:pong");
}

#[tokio::test]
async fn unknown_pusher_event_gets_an_error_and_the_socket_stays_open() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .send(json!({"event": "pusher:teleport", "data": {}}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["event"], "pusher:error");
    assert!(error["data"]["code"].is_null());
    assert!(error["data"]["message"]
        .as_str()
        .unwrap()
        .contains("pusher:teleport"));
    client.send(json!({"event": "pusher:ping"})).await;
    assert_eq!(client.recv().await["event"], "pusher:pong");
}

#[tokio::test]
async fn binary_frames_get_an_error() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.send_raw(Message::binary(vec![1, 2, 3])).await;
    let error = client.recv().await;
    assert_eq!(error["event"], "pusher:error");
    assert!(error["data"]["code"].is_null());
}

#[tokio::test]
async fn oversized_frame_closes_with_1009_and_only_that_socket() {
    let server = TestServer::start_with(|c| c["websocket_max_payload_kb"] = json!(1)).await;
    let mut bystander = server.client().await;
    bystander.subscribe("room").await;
    let mut client = server.client().await;
    let big = "x".repeat(2048);
    client
        .send(json!({"event": "pusher:ping", "data": {"pad": big}}))
        .await;
    let closed = client.closed().await;
    assert_eq!(closed.code, Some(1009), "{closed:?}");
    bystander.send(json!({"event": "pusher:ping"})).await;
    assert_eq!(bystander.recv().await["event"], "pusher:pong");
}

#[tokio::test]
async fn silent_socket_that_ignores_pings_is_closed_with_4201() {
    let server = TestServer::start_with(|c| {
        c["activity_timeout"] = json!(1);
        c["pong_timeout"] = json!(1);
    })
    .await;
    let client = server.client().await;
    // Not reading means tungstenite never answers the server's Ping frame.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let closed = client.closed().await;
    assert_eq!(closed.code, Some(4201), "{closed:?}");
    assert_eq!(closed.errors[0]["data"]["code"], 4201);
}

#[tokio::test]
async fn pings_keep_the_activity_timeout_when_it_is_shorter_than_the_pong_timeout() {
    let server = TestServer::start_with(|c| {
        c["activity_timeout"] = json!(1);
        c["pong_timeout"] = json!(5);
    })
    .await;
    let mut ws = Client::open(&server.ws_url(KEY)).await;
    // Reading answers each Ping at once; the next is due a second after the answer, not at the
    // first ping's pong deadline (five seconds).
    let mut pings = 0;
    let _ = tokio::time::timeout(Duration::from_millis(3600), async {
        while let Some(Ok(message)) = ws.next().await {
            if message.is_ping() {
                pings += 1;
            }
        }
    })
    .await;
    assert!(pings >= 3, "{pings} pings in 3.6 s");
}

#[tokio::test]
async fn socket_that_answers_ping_frames_stays_connected() {
    let server = TestServer::start_with(|c| {
        c["activity_timeout"] = json!(1);
        c["pong_timeout"] = json!(1);
    })
    .await;
    let mut client = server.client().await;
    // Reading lets tungstenite answer the Ping frames; no pusher:ping is ever sent.
    client.expect_silence(Duration::from_millis(3500)).await;
    client.send(json!({"event": "pusher:ping"})).await;
    assert_eq!(client.recv().await["event"], "pusher:pong");
}

#[tokio::test]
async fn a_socket_that_stops_reading_is_dropped_and_leaves_its_channels() {
    let server = TestServer::start_with(|c| {
        c["pong_timeout"] = json!(1);
        c["outbound_buffer_kb"] = json!(64);
    })
    .await;
    let mut watcher = server.client().await;
    watcher.join_presence("presence-slow", "watcher").await;
    let mut slow = server.client().await;
    slow.join_presence("presence-slow", "slow").await;
    watcher.recv_event("pusher_internal:member_added").await;
    // `slow` never reads again; flood the channel until its buffers fill.
    let rest = Rest::new(&server);
    let data = "x".repeat(60 * 1024);
    let mut removed = None;
    for _ in 0..400 {
        let (status, _) = rest
            .post(
                &format!("/apps/{APP_ID}/events"),
                json!({"name": "flood", "channel": "presence-slow", "data": data}),
            )
            .await;
        assert_eq!(status, 200);
        loop {
            let frame = watcher.recv().await;
            if frame["event"] == "pusher_internal:member_removed" {
                removed = Some(frame);
            } else {
                break;
            }
        }
        if removed.is_some() {
            break;
        }
    }
    let removed = match removed {
        Some(frame) => frame,
        None => watcher.recv_event("pusher_internal:member_removed").await,
    };
    assert_eq!(data_of(&removed)["user_id"], "slow");
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("herald_slow_consumer_disconnects_total 1"),
        "{metrics}"
    );
    drop(slow);
}
