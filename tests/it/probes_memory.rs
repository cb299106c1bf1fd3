//! Attacker's probes of memory: what anonymous clients can make the server keep. A request head
//! over `http_api.max_header_kb` is refused before any of it is stored, what the console's
//! journal keeps of a connection is cut, and a socket waiting on a decision hook reads ahead a
//! bounded number of bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::console::{console_session, has, read_stream};
use crate::hook_server::{HookAnswer, HookServer};
use crate::probe_support::rss_bytes;
use crate::support::*;

const TOKEN: &str = "probe-console-token-0123456789";
const MB: u64 = 1 << 20;

/// An upgrade request to the app's socket with `agent` as its `User-Agent`.
fn upgrade_request(agent: &str) -> String {
    format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nUser-Agent: {agent}\r\n\r\n"
    )
}

/// Sends `request` and reads the status of the answer; `None` when the server hung up first
/// (it may reset a connection whose head it stopped reading).
async fn status_of(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut head = [0u8; 12];
    let read = tokio::time::timeout(WAIT, stream.read_exact(&mut head)).await;
    let status = std::str::from_utf8(&head[9..12]).ok()?.parse().ok();
    read.expect("an answer or a hang-up in time")
        .ok()
        .and(status)
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_refused_before_any_of_it_is_kept() {
    let server = TestServer::start_with(|c| c["console"] = json!({"token": TOKEN})).await;
    let addr = server.running.addr;
    // Just over the default 32 KB: read whole, then refused.
    let over = upgrade_request(&"a".repeat(33 * 1024));
    assert_eq!(status_of(addr, over.as_bytes()).await, Some(431));

    let before = rss_bytes();
    let request: Arc<[u8]> = upgrade_request(&"A".repeat(300 * 1024)).into_bytes().into();
    for _ in 0..10 {
        let batch = (0..20).map(|_| {
            let request = request.clone();
            tokio::spawn(async move { status_of(addr, &request).await })
        });
        for status in futures_util::future::join_all(batch).await {
            let status = status.unwrap();
            assert!(matches!(status, None | Some(431)), "{status:?}");
        }
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 40 * MB,
        "200 sockets with a 300 KB User-Agent grew RSS by {} MB",
        grown / MB
    );
}

#[tokio::test]
async fn the_journal_keeps_a_cut_user_agent() {
    let server = TestServer::start_with(|c| c["console"] = json!({"token": TOKEN})).await;
    let cookie = console_session(&server, TOKEN).await;
    let mut stream = crate::console::open_stream(&server, &cookie).await;
    // Under the head limit, but far more than the journal keeps.
    let agent = "B".repeat(20 * 1024);
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(server.ws_url(KEY)).unwrap();
    request
        .headers_mut()
        .insert("user-agent", agent.parse().unwrap());
    let (_ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let opened = |e: &Value| e["detail"]["user_agent"].as_str().is_some();
    let entries = read_stream(&mut stream, |es| has(es, "connection_opened", opened)).await;
    let entry = entries
        .iter()
        .find(|e| e["kind"] == "connection_opened")
        .unwrap();
    let shown = entry["detail"]["user_agent"].as_str().unwrap();
    assert!(shown.len() < 300, "{} bytes kept", shown.len());
    assert!(shown.ends_with("(20480 bytes)"), "{shown}");
}

/// A masked WebSocket text frame (clients must mask) of `payload`.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [7u8, 1, 2, 3];
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Opens a raw WebSocket (the handshake only) whose frames the test writes itself.
async fn raw_socket(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = upgrade_request("probe");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    stream
}

#[tokio::test]
async fn a_socket_waiting_on_a_hook_reads_ahead_a_bounded_number_of_bytes() {
    let hook = HookServer::start(|_| HookAnswer::allow().after(Duration::from_secs(3))).await;
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["decision_hooks"] = json!({
            "url": hook.url(), "events": ["connection_starting"],
            "request_timeout_ms": 5000, "max_concurrent_per_address": 256,
        });
    })
    .await;
    let addr = server.running.addr;
    // Sixteen client events of 60 KB each, built once and shared by every socket.
    let data = "x".repeat(60 * 1024);
    let event = json!({"event": "client-a", "channel": "private-a", "data": data}).to_string();
    let frames: Arc<[u8]> = client_frame(event.as_bytes()).repeat(16).into();
    let mut sockets = Vec::new();
    for _ in 0..60 {
        sockets.push(raw_socket(addr).await);
    }
    hook.wait_calls(60).await;
    let before = rss_bytes();
    let writes = sockets.into_iter().map(|mut socket| {
        let frames = frames.clone();
        tokio::spawn(async move {
            // What the server does not read stays in the kernel's buffers, not in ours.
            let _ =
                tokio::time::timeout(Duration::from_millis(1500), socket.write_all(&frames)).await;
            socket
        })
    });
    let sockets = futures_util::future::join_all(writes).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 25 * MB,
        "60 sockets waiting on a hook, each sent 16 frames of 60 KB, grew RSS by {} MB",
        grown / MB
    );
    drop(sockets);
}
