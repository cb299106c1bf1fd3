//! The WebSocket transport itself: the upgrade handshake and its refusals, bytes that arrive
//! with the upgrade request, and frames too large for the socket to take at once.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn plain_http_at_the_websocket_endpoint_gets_426_with_a_json_error() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.http_url(&format!("/app/{KEY}")))
        .await
        .unwrap();
    assert_eq!(response.status(), 426);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
    assert_eq!(response.headers()["upgrade"], "websocket");
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["code"], 426);
    assert!(body["error"].as_str().unwrap().contains("WebSocket"));
}

#[tokio::test]
async fn an_unsupported_websocket_version_gets_426() {
    let server = TestServer::start().await;
    let response = reqwest::Client::new()
        .get(server.http_url(&format!("/app/{KEY}")))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "8")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 426);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(body["error"].as_str().unwrap().contains("13"), "{body}");
}

/// A masked client text frame, as RFC 6455 requires clients to send.
fn masked_text(payload: &str) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    assert!(payload.len() < 126);
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads until `needle` has arrived `times` times; returns everything read.
async fn read_until(stream: &mut TcpStream, needle: &str, times: usize) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while String::from_utf8_lossy(&seen).matches(needle).count() < times {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in time"));
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_frame_sent_together_with_the_upgrade_request_is_read() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.running.addr).await.unwrap();
    let mut bytes = format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes();
    // In the same write: the client does not wait for the 101 before its frames. More frames
    // than the server handles in one turn, so the rest must be picked up without new input.
    for _ in 0..70 {
        bytes.extend(masked_text(r#"{"event":"pusher:ping","data":{}}"#));
    }
    stream.write_all(&bytes).await.unwrap();
    let seen = read_until(&mut stream, "pusher:pong", 70).await;
    assert!(seen.starts_with("HTTP/1.1 101"), "{seen}");
    // RFC 6455's own example key and accept value.
    assert!(seen.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{seen}");
    assert!(seen.contains("pusher:connection_established"), "{seen}");
}

#[tokio::test]
async fn events_larger_than_the_socket_buffers_arrive_whole_and_in_order() {
    let server = TestServer::start_with(|c| {
        c["outbound_buffer_kb"] = json!(32 * 1024);
    })
    .await;
    let mut late_reader = Client::connect_narrow(&server.ws_url(KEY)).await;
    late_reader.subscribe("bulk").await;
    // About 8 MB while the client, with a 4 KiB receive buffer, reads nothing: more than the
    // kernel's largest send buffer (4 MiB by default), so frames are written in parts and
    // queued, then finished when the client reads.
    const BATCHES: usize = 90;
    let rest = Rest::new(&server);
    let filler = "y".repeat(9_000);
    for batch in 0..BATCHES {
        let events: Vec<Value> = (0..10)
            .map(|i| json!({"name": "bulk", "channel": "bulk", "data": format!("{}:{filler}", batch * 10 + i)}))
            .collect();
        let (status, body) = rest
            .post(
                &format!("/apps/{APP_ID}/batch_events"),
                json!({"batch": events}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for expected in 0..BATCHES * 10 {
        let frame = late_reader.recv().await;
        assert_eq!(frame["event"], "bulk");
        let data = frame["data"].as_str().unwrap();
        assert_eq!(data, format!("{expected}:{filler}"));
    }
}

#[tokio::test]
async fn a_close_from_the_client_is_answered_with_its_code() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    client.send_raw(Message::Close(Some(close))).await;
    assert_eq!(client.closed().await.code, Some(1000));
}

#[tokio::test]
async fn an_unmasked_client_frame_is_closed_with_1002() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.running.addr).await.unwrap();
    let request = format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    read_until(&mut stream, "pusher:connection_established", 1).await;
    // Clients must mask every frame (RFC 6455 section 5.1).
    let payload = br#"{"event":"pusher:ping","data":{}}"#;
    let mut frame = vec![0x81, payload.len() as u8];
    frame.extend_from_slice(payload);
    stream.write_all(&frame).await.unwrap();
    // A server close frame: opcode 0x88, then the code big-endian.
    let seen = read_until_bytes(&mut stream, &[0x88]).await;
    let at = seen.iter().position(|b| *b == 0x88).unwrap();
    assert_eq!(u16::from_be_bytes([seen[at + 2], seen[at + 3]]), 1002);
}

/// Reads until `needle` appears in the raw bytes and two more bytes after it have arrived.
async fn read_until_bytes(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let found = |seen: &[u8]| {
        seen.windows(needle.len())
            .position(|w| w == needle)
            .is_some_and(|at| seen.len() >= at + needle.len() + 3)
    };
    tokio::time::timeout(WAIT, async {
        while !found(&seen) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {needle:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in time"));
    seen
}
