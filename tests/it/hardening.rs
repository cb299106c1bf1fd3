//! Hardening: what an unauthenticated or hostile peer must not be able to do. Each test
//! reproduces a defect found by probing the release build and fails without its fix.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// What a raw HTTP exchange produced.
#[derive(Debug)]
struct RawReply {
    status: u16,
    head: String,
    body: String,
    /// How long the first byte of the reply took.
    took: Duration,
}

impl RawReply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {self:?}"))
    }
}

/// Sends `request` as is and reads one response (bounded by `WAIT`).
async fn raw_exchange(stream: &mut TcpStream, request: &[u8]) -> RawReply {
    let started = Instant::now();
    stream.write_all(request).await.unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut first_byte = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let status = text[9..12].parse().unwrap();
                return RawReply {
                    status,
                    head: text[..end].to_owned(),
                    body: text[end + 4..end + 4 + length].to_owned(),
                    took: first_byte.unwrap_or_default(),
                };
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no complete reply in time; got {text:?}"))
            .unwrap();
        assert!(n > 0, "closed before a complete reply; got {text:?}");
        first_byte.get_or_insert_with(|| started.elapsed());
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn raw(addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    raw_exchange(&mut stream, request).await
}

/// Whether the server closes `stream` within `within` (reading and discarding what comes).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// The path and query of a signed URL.
fn path_of(url: &str) -> String {
    let rest = url.trim_start_matches("http://");
    rest[rest.find('/').unwrap()..].to_owned()
}

async fn short_timeouts() -> TestServer {
    TestServer::start_with(|c| {
        c["http_api"] = json!({"body_timeout_ms": 300, "header_timeout_ms": 400});
    })
    .await
}

#[tokio::test]
async fn an_unsigned_body_is_refused_before_it_is_read() {
    let server = short_timeouts().await;
    // 10 MB - 1 declared, 5 bytes sent: the refusal must not wait for the rest.
    let head = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485759\r\n\r\n{{\"a\":")
    };
    let unsigned = raw(
        server.running.addr,
        head(&format!("/apps/{APP_ID}/events")).as_bytes(),
    )
    .await;
    assert_eq!(unsigned.status, 401, "{unsigned:?}");
    assert!(unsigned.took < Duration::from_secs(1), "{unsigned:?}");
    let unknown = raw(
        server.running.addr,
        head("/apps/nope/events?auth_key=x").as_bytes(),
    )
    .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let terminate = raw(
        server.running.addr,
        head("/users/u1/terminate_connections").as_bytes(),
    )
    .await;
    assert_eq!(terminate.status, 401, "{terminate:?}");
    let get = raw(
        server.running.addr,
        format!(
            "GET /apps/{APP_ID}/channels HTTP/1.1\r\nHost: x\r\nContent-Length: 10485759\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(get.status, 401, "{get:?}");
    assert_eq!(get.json()["code"], 401);
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_at_once() {
    let server = short_timeouts().await;
    let rest = Rest::new(&server);
    let body = "x".repeat(64);
    let url = rest.signed_url("POST", &format!("/apps/{APP_ID}/events"), &body, &[]);
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n{body}",
        path_of(&url)
    );
    let reply = raw(server.running.addr, request.as_bytes()).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.took < Duration::from_secs(1), "{reply:?}");
}

#[tokio::test]
async fn a_stalled_body_times_out_with_408_and_frees_the_connection() {
    let server = short_timeouts().await;
    let rest = Rest::new(&server);
    let body = json!({"name": "e", "channel": "c", "data": "x"}).to_string();
    let url = rest.signed_url("POST", &format!("/apps/{APP_ID}/events"), &body, &[]);
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{}",
        path_of(&url),
        body.len(),
        &body[..10]
    );
    let mut stream = TcpStream::connect(server.running.addr).await.unwrap();
    let reply = raw_exchange(&mut stream, request.as_bytes()).await;
    assert_eq!(reply.status, 408, "{reply:?}");
    assert!(reply.took < Duration::from_secs(2), "{reply:?}");
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("body_timeout_ms"));
    assert!(
        closed_within(&mut stream, Duration::from_secs(2)).await,
        "the stalled connection is closed"
    );
}

#[tokio::test]
async fn malformed_chunked_encoding_is_400_not_413() {
    let server = short_timeouts().await;
    let rest = Rest::new(&server);
    let body = "{}";
    let url = rest.signed_url("POST", &format!("/apps/{APP_ID}/events"), body, &[]);
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n",
        path_of(&url)
    );
    let reply = raw(server.running.addr, request.as_bytes()).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.json()["code"], 400);
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_on_both_listeners() {
    let server = short_timeouts().await;
    let metrics = server.running.metrics_addr.unwrap();
    for addr in [server.running.addr, metrics] {
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut idle, Duration::from_secs(3)).await,
            "an idle connection to {addr} stays open"
        );
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let dripping = async {
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa" {
                if slow.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), dripping).await;
        assert!(
            closed_within(&mut slow, Duration::from_secs(1)).await,
            "headers at 10 bytes a second to {addr} keep the connection"
        );
    }
    // A kept-alive connection that goes quiet after a request is closed too.
    let mut kept = TcpStream::connect(metrics).await.unwrap();
    let reply = raw_exchange(&mut kept, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(reply.status, 200);
    assert!(
        closed_within(&mut kept, Duration::from_secs(3)).await,
        "an idle kept-alive connection stays open"
    );
}

#[tokio::test]
async fn the_metrics_listener_binds_loopback_by_default() {
    let config = herald::config::Config::from_json("{}").unwrap();
    assert_eq!(config.metrics.host, "127.0.0.1");
}

#[tokio::test]
async fn an_overflowed_consumer_leaves_its_channels_at_once() {
    let server = TestServer::start_with(|c| {
        c["outbound_buffer_kb"] = json!(256);
        c["pong_timeout"] = json!(30);
        TestServer::app(c)["max_event_payload_in_kb"] = json!(1024);
    })
    .await;
    let mut watcher = server.client().await;
    watcher.join_presence("presence-slow", "watcher").await;
    let mut slow = Client::connect_narrow(&server.ws_url(KEY)).await;
    slow.join_presence("presence-slow", "slow").await;
    watcher.recv_event("pusher_internal:member_added").await;
    // The slow socket reads nothing from here on. The first event is smaller than its queue
    // bound: what the kernel does not take stays queued, and its connection task waits for the
    // socket to drain. A later event overflows the queue while that task is waiting.
    let rest = Rest::new(&server);
    let event = json!({"name": "big", "channel": "presence-slow", "data": "z".repeat(150 * 1024)});
    let batch: Vec<Value> = (0..10).map(|_| event.clone()).collect();
    let started = Instant::now();
    let mut removed_after = None;
    'publishing: for _ in 0..2000 {
        let (status, _) = rest
            .post(
                &format!("/apps/{APP_ID}/batch_events"),
                json!({ "batch": batch }),
            )
            .await;
        assert_eq!(status, 200);
        let mut seen = 0;
        while seen < 10 {
            let frame = watcher.recv().await;
            if frame["event"] == "pusher_internal:member_removed" {
                assert_eq!(data_of(&frame)["user_id"], "slow");
                removed_after = Some(started.elapsed());
                break 'publishing;
            }
            seen += usize::from(frame["event"] == "big");
        }
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    let removed_after = removed_after.expect("the slow socket was not removed within 20 s");
    assert!(
        removed_after < Duration::from_secs(10),
        "removed only after {removed_after:?} (pong_timeout is 30 s)"
    );
    let (_, users) = rest
        .get(&format!("/apps/{APP_ID}/channels/presence-slow/users"), &[])
        .await;
    assert_eq!(users, json!({"users": [{"id": "watcher"}]}));
    let text = server.metrics_text().await;
    assert!(
        text.lines()
            .any(|l| l == "herald_slow_consumer_disconnects_total 1"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "herald_connected 1"), "{text}");
    drop(slow);
}

#[tokio::test]
async fn websocket_keys_are_checked() {
    let server = TestServer::start().await;
    let upgrade = |keys: &[&str]| {
        let mut request = format!(
            "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        );
        for key in keys {
            request.push_str(&format!("Sec-WebSocket-Key: {key}\r\n"));
        }
        request + "\r\n"
    };
    for keys in [
        vec!["not-base64!"],
        vec!["c2hvcnQ="],
        vec![],
        vec!["dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=="],
    ] {
        let reply = raw(server.running.addr, upgrade(&keys).as_bytes()).await;
        assert_eq!(reply.status, 400, "{keys:?}: {reply:?}");
        assert_eq!(reply.json()["code"], 400, "{keys:?}");
    }
    let mut good = TcpStream::connect(server.running.addr).await.unwrap();
    good.write_all(upgrade(&["dGhlIHNhbXBsZSBub25jZQ=="]).as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    good.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
}

#[tokio::test]
async fn every_error_response_is_json() {
    let server = TestServer::start().await;
    let addr = server.running.addr;
    let cases = [
        (
            format!("GET /apps/{APP_ID}/events HTTP/1.1\r\nHost: x\r\n\r\n"),
            405,
        ),
        (
            format!("DELETE /apps/{APP_ID}/channels HTTP/1.1\r\nHost: x\r\n\r\n"),
            405,
        ),
        ("GET /up/%FF%FE HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), 400),
        ("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), 404),
    ];
    for (request, status) in cases {
        let reply = raw(addr, request.as_bytes()).await;
        assert_eq!(reply.status, status, "{request}: {reply:?}");
        assert!(
            reply
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{reply:?}"
        );
        assert_eq!(reply.json()["code"], status, "{reply:?}");
        assert!(reply.json()["error"].is_string());
    }
    let metrics = raw(
        server.running.metrics_addr.unwrap(),
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(metrics.status, 405);
    assert_eq!(metrics.json()["code"], 405);
}

#[tokio::test]
async fn a_huge_batch_is_refused_by_count_while_parsing() {
    let server = TestServer::start().await;
    let item = json!({"name": "e", "channel": "c", "data": "x"});
    let batch: Vec<Value> = (0..50_000).map(|_| item.clone()).collect();
    let (status, body) = Rest::new(&server)
        .post(
            &format!("/apps/{APP_ID}/batch_events"),
            json!({ "batch": batch }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "batch has more than 10 events; at most 10 are allowed"
    );
}

#[tokio::test]
async fn subscription_counts_are_throttled_to_the_latest() {
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["enable_subscription_count"] = json!(true);
        c["channel_limits"] = json!({"subscription_count_interval_ms": 300});
    })
    .await;
    let mut watcher = server.client().await;
    watcher.subscribe("counted").await;
    let first = watcher
        .recv_event("pusher_internal:subscription_count")
        .await;
    assert_eq!(data_of(&first)["subscription_count"], 1);
    let mut churner = server.client().await;
    let started = Instant::now();
    for _ in 0..300 {
        churner
            .send(json!({"event": "pusher:subscribe", "data": {"channel": "counted"}}))
            .await;
        churner
            .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "counted"}}))
            .await;
    }
    churner.subscribe("counted").await;
    let churn = started.elapsed();
    // Frames for 601 changes: without the throttle, one each.
    let mut counts = Vec::new();
    let quiet_until = tokio::time::Instant::now() + churn + Duration::from_millis(900);
    while let Ok(frame) = tokio::time::timeout_at(quiet_until, watcher.recv()).await {
        if frame["event"] == "pusher_internal:subscription_count" {
            counts.push(data_of(&frame)["subscription_count"].as_u64().unwrap());
        }
    }
    let windows = (churn.as_millis() / 300 + 3) as usize;
    assert!(
        !counts.is_empty() && counts.len() <= windows,
        "{} counts in {churn:?}: {counts:?}",
        counts.len()
    );
    assert_eq!(
        counts.last(),
        Some(&2),
        "the latest count comes last: {counts:?}"
    );
}

#[tokio::test]
async fn a_process_wide_connection_limit_refuses_with_4004() {
    let server = TestServer::start_with(|c| c["max_connections"] = json!(2)).await;
    let _a = server.client().await;
    let _b = server.client().await;
    let refused = Client::unestablished(&server.ws_url(KEY))
        .await
        .closed()
        .await;
    assert_eq!(refused.code, Some(4004), "{refused:?}");
    assert_eq!(refused.errors[0]["data"]["code"], 4004);
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The herald binary in a child process with at most `fds` open files; killed on drop.
struct LimitedHerald {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl LimitedHerald {
    fn start(fds: u32, config: Value) -> LimitedHerald {
        let dir = std::env::temp_dir().join(format!("herald-fd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let command = format!(
            "ulimit -n {fds} && exec {} --config {}",
            env!("CARGO_BIN_EXE_herald"),
            path.display()
        );
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        LimitedHerald { child, dir }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }
}

impl Drop for LimitedHerald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn up_within(port: u16, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let attempt = async {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            stream
                .write_all(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await.ok()?;
            Some(&head == b"HTTP/1.1 200")
        };
        if let Ok(Some(true)) = tokio::time::timeout(Duration::from_millis(500), attempt).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn descriptor_exhaustion_by_idle_connections_recovers() {
    let (port, metrics_port) = (free_port(), free_port());
    let mut config = base_config();
    config["port"] = json!(port);
    config["metrics"]["port"] = json!(metrics_port);
    config["http_api"] = json!({"header_timeout_ms": 500, "body_timeout_ms": 500});
    let server = LimitedHerald::start(64, config);
    assert!(up_within(port, WAIT).await, "the server did not start");
    // Idle connections on the metrics port and stalled bodies on the main one, far more than
    // the 64 descriptors allow, all kept open by the attacker.
    let mut held = Vec::new();
    for i in 0..150 {
        let target = if i % 2 == 0 { metrics_port } else { port };
        if let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            TcpStream::connect(("127.0.0.1", target)),
        )
        .await
        {
            if target == port {
                let _ = stream
                    .write_all(b"POST /apps/app-1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
                    .await;
            }
            held.push(stream);
        }
    }
    assert!(
        up_within(port, Duration::from_secs(10)).await,
        "the main port did not recover while {} connections were held",
        held.len()
    );
    let warnings = server.stderr().matches("accept failed").count();
    assert!(
        warnings <= 3,
        "{warnings} accept warnings:\n{}",
        server.stderr()
    );
    drop(held);
}
