//! The hardening probes: what an unauthenticated or hostile peer costs the server. Each prints
//! one figure, so the same run against an older build (through `--server`) gives the before.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use crate::clients::{self, connect, presence_data, subscribe, Publisher};
use crate::report::Report;
use crate::target::{free_port, Target, APP_ID, KEY};

/// The probes' config: metrics on (idle connections there), subscription counts on, small
/// outbound buffers and large events (a slow consumer overflows quickly).
pub fn config(port: u16, metrics_port: u16) -> Value {
    let mut config = crate::target::config(port, None);
    config["metrics"] = json!({"enabled": true, "host": "127.0.0.1", "port": metrics_port});
    config["outbound_buffer_kb"] = json!(256);
    let app = &mut config["app_manager"]["array"]["apps"][0];
    app["enable_subscription_count"] = json!(true);
    app["max_event_payload_in_kb"] = json!(1024);
    config
}

/// Forty unsigned POSTs that declare 10 MB and send all of it but the last byte.
async fn unsigned_bodies(target: &Target) -> Result<f64, String> {
    let before = target.rss_bytes();
    let body = vec![b'x'; 10 * 1024 * 1024 - 1];
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(("127.0.0.1", target.port))
            .await
            .map_err(|e| e.to_string())?;
        let head = format!(
            "POST /apps/{APP_ID}/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len() + 1
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        // A server that refused at the headers stops reading: give up on the rest then.
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&body)).await;
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = target.rss_bytes().saturating_sub(before);
    drop(held);
    Ok(grown as f64 / (1024.0 * 1024.0))
}

/// How long the server keeps an idle connection to its metrics port (capped at 90 s).
async fn idle_metrics(metrics_port: u16) -> Result<f64, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", metrics_port))
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    let _ = closed;
    Ok(started.elapsed().as_secs_f64())
}

/// A presence member that stops reading: how long until the others see `member_removed`.
async fn slow_consumer(target: &Target) -> Result<f64, String> {
    let channel = "presence-probe";
    let (mut watcher, watcher_id) = connect(target.port).await?;
    subscribe(&mut watcher, presence_data(&watcher_id, channel, "watcher")).await?;
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .set_recv_buffer_size(4096)
        .map_err(|e| e.to_string())?;
    let stream = socket
        .connect(([127, 0, 0, 1], target.port).into())
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("ws://127.0.0.1:{}/app/{KEY}?protocol=7", target.port);
    let (mut slow, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .map_err(|e| e.to_string())?;
    let established = clients::next_json(&mut slow).await.ok_or("closed")?;
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap_or("{}"))
        .map_err(|e| e.to_string())?;
    let slow_id = data["socket_id"].as_str().ok_or("no socket_id")?.to_owned();
    subscribe(&mut slow, presence_data(&slow_id, channel, "slow")).await?;
    let publisher = Publisher::new(target.port);
    let payload = "z".repeat(150 * 1024);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        publisher.trigger(channel, "big", &payload).await?;
        loop {
            let frame = clients::next_json(&mut watcher)
                .await
                .ok_or("watcher closed")?;
            match frame["event"].as_str() {
                Some("pusher_internal:member_removed") => {
                    return Ok(started.elapsed().as_secs_f64())
                }
                Some("big") => break,
                _ => {}
            }
        }
    }
    drop(slow);
    Ok(started.elapsed().as_secs_f64())
}

/// One socket subscribing and unsubscribing 2,000 times beside 300 subscribers: the
/// `subscription_count` frames they receive.
async fn count_amplification(target: &Target) -> Result<f64, String> {
    let channel = "probe-counted";
    let mut subscribers = Vec::new();
    for _ in 0..300 {
        let (mut ws, _) = connect(target.port).await?;
        subscribe(&mut ws, json!({"channel": channel})).await?;
        subscribers.push(ws);
    }
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut counts = 0u64;
                let quiet = Duration::from_secs(2);
                while let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, ws.next()).await {
                    if let Message::Text(text) = message {
                        counts += u64::from(text.contains("pusher_internal:subscription_count"));
                    }
                }
                counts
            })
        })
        .collect();
    let (mut churner, _) = connect(target.port).await?;
    for _ in 0..2000 {
        let sub = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
        clients::send(&mut churner, sub).await?;
        let unsub = json!({"event": "pusher:unsubscribe", "data": {"channel": channel}});
        clients::send(&mut churner, unsub).await?;
    }
    let mut total = 0;
    for reader in readers {
        total += reader.await.map_err(|e| e.to_string())?;
    }
    Ok(total as f64)
}

/// Runs every probe against a fresh server each.
pub async fn hardening(server: &str) -> Result<Report, String> {
    let mut report = Report::new("hardening probes");
    let start = || {
        let (port, metrics_port) = (free_port(), free_port());
        Target::start(server, &config(port, metrics_port), port).map(|t| (t, metrics_port))
    };
    let (target, _) = start()?;
    report.add(
        "RSS growth, 40 unsigned 10 MB POSTs held",
        unsigned_bodies(&target).await?,
        "MiB",
    );
    drop(target);
    let (target, _) = start()?;
    report.add(
        "slow consumer: member_removed after",
        slow_consumer(&target).await?,
        "s",
    );
    drop(target);
    let (target, _) = start()?;
    report.add(
        "subscription_count frames, 2,000 pairs x 300 subscribers",
        count_amplification(&target).await?,
        "",
    );
    drop(target);
    let (target, metrics_port) = start()?;
    report.add(
        "idle metrics connection kept (cap 90)",
        idle_metrics(metrics_port).await?,
        "s",
    );
    drop(target);
    Ok(report)
}
