//! The scenarios: each bounded in time and count, sizes set by flags.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::clients::{self, connect, now_micros, presence_data, subscribe, Publisher, Socket};
use crate::receiver::WebhookCounter;
use crate::report::{percentile, Report};
use crate::target::Target;

/// Opens `count` sockets, each subscribed by `data_for(i, socket_id)`, 200 handshakes at a time.
async fn open_subscribed(
    port: u16,
    count: usize,
    data_for: impl Fn(usize, &str) -> serde_json::Value + Send + Sync + 'static,
) -> Result<Vec<Socket>, String> {
    let gate = Arc::new(Semaphore::new(200));
    let data_for = Arc::new(data_for);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let (gate, data_for) = (gate.clone(), data_for.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            let (mut ws, socket_id) = connect(port).await?;
            subscribe(&mut ws, data_for(i, &socket_id)).await?;
            Ok::<Socket, String>(ws)
        }));
    }
    let mut sockets = Vec::with_capacity(count);
    for task in tasks {
        sockets.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok(sockets)
}

/// Reads `t=<micros>` from an event frame's data without a full JSON parse.
fn sent_at(text: &str) -> Option<u64> {
    let start = text.find("t=")? + 2;
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `subscribers` sockets on one public channel; `rate` REST publishes per second for `secs`.
pub async fn fanout(
    target: &Target,
    subscribers: usize,
    rate: u64,
    secs: u64,
    payload: usize,
) -> Result<Report, String> {
    let sockets = open_subscribed(
        target.port,
        subscribers,
        |_, _| json!({"channel": "fanout"}),
    )
    .await?;
    let events = rate * secs;
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(
        (events as usize) * subscribers,
    )));
    let deadline = Instant::now() + Duration::from_secs(secs + 15);
    let mut readers = Vec::new();
    for mut ws in sockets {
        let (received, latencies) = (received.clone(), latencies.clone());
        readers.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(events as usize);
            while (mine.len() as u64) < events {
                let next = tokio::time::timeout_at(deadline.into(), ws.next()).await;
                let Ok(Some(Ok(message))) = next else { break };
                if let Message::Text(text) = message {
                    if let Some(sent) = sent_at(&text) {
                        mine.push(now_micros().saturating_sub(sent));
                    }
                }
            }
            received.fetch_add(mine.len() as u64, Ordering::Relaxed);
            latencies.lock().unwrap().extend(mine);
        }));
    }
    let publisher = Arc::new(Publisher::new(target.port));
    let pad = "x".repeat(payload.saturating_sub(20));
    let cpu_before = target.cpu_seconds();
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut publishes = Vec::new();
    for i in 0..events {
        let scheduled = started + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let scheduled_micros = now_micros() - scheduled.elapsed().as_micros() as u64;
        let publisher = publisher.clone();
        let data = format!("t={scheduled_micros};{pad}");
        publishes.push(tokio::spawn(async move {
            publisher.trigger("fanout", "tick", &data).await
        }));
    }
    for publish in publishes {
        publish.await.map_err(|e| e.to_string())??;
    }
    for reader in readers {
        let _ = reader.await;
    }
    let cpu = target.cpu_seconds() - cpu_before;
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = received.load(Ordering::Relaxed);
    let mut samples = std::mem::take(&mut *latencies.lock().unwrap());
    samples.sort_unstable();
    let mut report = Report::new("fan-out");
    report.add("subscribers", subscribers as f64, "");
    report.add("events published", events as f64, "");
    report.add("deliveries", delivered as f64, "");
    report.add(
        "lost deliveries",
        (events * subscribers as u64 - delivered) as f64,
        "",
    );
    report.add("deliveries per second", delivered as f64 / elapsed, "/s");
    report.add(
        "latency p50",
        percentile(&samples, 50.0) as f64 / 1000.0,
        "ms",
    );
    report.add(
        "latency p99",
        percentile(&samples, 99.0) as f64 / 1000.0,
        "ms",
    );
    report.add(
        "latency max",
        samples.last().copied().unwrap_or(0) as f64 / 1000.0,
        "ms",
    );
    report.add("server CPU seconds", cpu, "s");
    report.add(
        "server CPU per delivery",
        cpu * 1e6 / delivered.max(1) as f64,
        "us",
    );
    report.add(
        "deliveries per server CPU-second",
        delivered as f64 / cpu.max(1e-9),
        "/cpu-s",
    );
    Ok(report)
}

/// `sockets` sockets each joining and leaving their own presence channel for `secs`, with a
/// webhook receiver counting every expected transition (grace period 0).
pub async fn presence_churn(
    target: &Target,
    counter: &WebhookCounter,
    sockets: usize,
    secs: u64,
) -> Result<Report, String> {
    let port = target.port;
    let mut connected = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        connected.push(connect(port).await?);
    }
    let cpu_before = target.cpu_seconds();
    let started = Instant::now();
    let stop = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (i, (mut ws, socket_id)) in connected.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let channel = format!("presence-churn-{i}");
            let user = format!("u{i}");
            let mut cycles = 0u64;
            while Instant::now() < stop {
                subscribe(&mut ws, presence_data(&socket_id, &channel, &user)).await?;
                clients::send(
                    &mut ws,
                    json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
                )
                .await?;
                cycles += 1;
            }
            // A ping round trip proves the last unsubscribe was processed.
            clients::send(&mut ws, json!({"event": "pusher:ping"})).await?;
            while clients::next_json(&mut ws).await.ok_or("closed")?["event"] != "pusher:pong" {}
            Ok::<(usize, u64), String>((i, cycles))
        }));
    }
    let mut per_socket = Vec::new();
    for task in tasks {
        per_socket.push(task.await.map_err(|e| e.to_string())??);
    }
    let churn_elapsed = started.elapsed().as_secs_f64();
    let cpu = target.cpu_seconds() - cpu_before;
    let cycles: u64 = per_socket.iter().map(|(_, c)| c).sum();
    let expected = cycles * 4;
    let wait_until = Instant::now() + Duration::from_secs(15);
    while counter.totals().1 < expected && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivery_elapsed = started.elapsed().as_secs_f64();
    let (mut lost, mut duplicated) = (0u64, 0u64);
    for (i, cycles) in &per_socket {
        let channel = format!("presence-churn-{i}");
        let user = format!("u{i}");
        for (name, who) in [
            ("channel_occupied", ""),
            ("channel_vacated", ""),
            ("member_added", user.as_str()),
            ("member_removed", user.as_str()),
        ] {
            let got = counter.count(name, &channel, who);
            lost += cycles.saturating_sub(got);
            duplicated += got.saturating_sub(*cycles);
        }
    }
    let (posts, events) = counter.totals();
    let mut report = Report::new("presence churn");
    report.add("sockets", sockets as f64, "");
    report.add("cycles", cycles as f64, "");
    report.add("cycles per second", cycles as f64 / churn_elapsed, "/s");
    report.add(
        "cycles per server CPU-second",
        cycles as f64 / cpu.max(1e-9),
        "/cpu-s",
    );
    report.add("webhook events expected", expected as f64, "");
    report.add("webhook events received", events as f64, "");
    report.add(
        "webhook events per second",
        events as f64 / delivery_elapsed,
        "/s",
    );
    report.add("webhook POSTs", posts as f64, "");
    report.add("events per POST", events as f64 / posts.max(1) as f64, "");
    report.add("lost events", lost as f64, "");
    report.add("duplicated events", duplicated as f64, "");
    Ok(report)
}

/// `connections` idle sockets, each subscribed to its own channel: RSS growth per connection.
pub async fn idle(target: &Target, connections: usize) -> Result<Report, String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = target.rss_bytes();
    let started = Instant::now();
    let sockets = open_subscribed(
        target.port,
        connections,
        |i, _| json!({"channel": format!("idle-{i}")}),
    )
    .await?;
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = target.rss_bytes();
    let mut report = Report::new("idle connections");
    report.add("connections", sockets.len() as f64, "");
    report.add("time to open and subscribe", open_secs, "s");
    report.add(
        "server RSS growth",
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0 / 1024.0,
        "MiB",
    );
    report.add(
        "server RSS per connection",
        rss_after.saturating_sub(rss_before) as f64 / sockets.len().max(1) as f64 / 1024.0,
        "KiB",
    );
    drop(sockets);
    Ok(report)
}
