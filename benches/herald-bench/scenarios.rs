//! The scenarios: each bounded in time and count, sizes set by flags.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;

use crate::clients::{self, connect, now_micros, presence_data, subscribe, Publisher, Socket};
use crate::reader::{Frame, FrameReader};
use crate::receiver::WebhookCounter;
use crate::report::{percentile, Report};
use crate::target::{own_cpu_seconds, Target};

/// Opens `count` sockets, the i-th on `ports[i % len]`, each subscribed by
/// `data_for(i, socket_id)`, 200 handshakes at a time.
pub async fn open_subscribed(
    ports: &[u16],
    count: usize,
    data_for: impl Fn(usize, &str) -> serde_json::Value + Send + Sync + 'static,
) -> Result<Vec<Socket>, String> {
    let gate = Arc::new(Semaphore::new(200));
    let data_for = Arc::new(data_for);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let (gate, data_for) = (gate.clone(), data_for.clone());
        let port = ports[i % ports.len()];
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

/// Sizes of a publish scenario: `channels` channels with `per_channel` subscribers each,
/// `rate` REST publishes per second (round-robin over the channels) for `secs`.
pub struct PublishLoad {
    pub name: &'static str,
    pub channels: usize,
    pub per_channel: usize,
    pub rate: u64,
    pub secs: u64,
    pub payload: usize,
}

/// Where a publish load runs: its subscribers spread round-robin over `subscribe_ports`, its
/// REST publishes into `publish_port`, and the server processes whose CPU it counts.
pub struct Placement<'a> {
    pub subscribe_ports: Vec<u16>,
    pub publish_port: u16,
    pub servers: Vec<&'a Target>,
}

impl<'a> Placement<'a> {
    /// Everything on one server.
    pub fn single(target: &'a Target) -> Placement<'a> {
        Placement {
            subscribe_ports: vec![target.port],
            publish_port: target.port,
            servers: vec![target],
        }
    }

    /// CPU seconds of all its servers together.
    fn cpu_seconds(&self) -> f64 {
        self.servers.iter().map(|s| s.cpu_seconds()).sum()
    }
}

/// Latency samples (microseconds) and the count of each reader, gathered once it finishes.
struct Readers {
    received: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts one lean reader per socket, each expecting `expected` stamped events before `deadline`.
fn spawn_readers(sockets: Vec<Socket>, expected: u64, deadline: Instant) -> Readers {
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::with_capacity(sockets.len());
    for ws in sockets {
        let (received, latencies) = (received.clone(), latencies.clone());
        let mut reader = FrameReader::new(ws);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(expected as usize);
            while (mine.len() as u64) < expected {
                match tokio::time::timeout_at(deadline.into(), reader.next()).await {
                    Ok(Some(Frame::Stamped(sent))) => mine.push(now_micros().saturating_sub(sent)),
                    Ok(Some(Frame::Other)) => {}
                    _ => break,
                }
            }
            received.fetch_add(mine.len() as u64, Ordering::Relaxed);
            latencies.lock().unwrap().extend(mine);
        }));
    }
    Readers {
        received,
        latencies,
        tasks,
    }
}

impl Readers {
    /// Waits for every reader; returns (deliveries, sorted latencies).
    async fn finish(self) -> (u64, Vec<u64>) {
        for task in self.tasks {
            let _ = task.await;
        }
        let mut samples = std::mem::take(&mut *self.latencies.lock().unwrap());
        samples.sort_unstable();
        (self.received.load(Ordering::Relaxed), samples)
    }
}

fn add_latency(report: &mut Report, prefix: &str, samples: &[u64]) {
    report.add(
        &format!("{prefix}latency p50"),
        percentile(samples, 50.0) as f64 / 1000.0,
        "ms",
    );
    report.add(
        &format!("{prefix}latency p99"),
        percentile(samples, 99.0) as f64 / 1000.0,
        "ms",
    );
    report.add(
        &format!("{prefix}latency max"),
        samples.last().copied().unwrap_or(0) as f64 / 1000.0,
        "ms",
    );
}

/// Publishes `count` stamped events at `rate`, the i-th on `channel(i)`; latency counts from
/// the scheduled send time, so a publisher that falls behind shows up as latency.
pub async fn publish_at_rate(
    publisher: Arc<Publisher>,
    count: u64,
    rate: u64,
    payload: usize,
    channel: impl Fn(u64) -> String,
) -> Result<(), String> {
    let pad = "x".repeat(payload.saturating_sub(20));
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut publishes = Vec::with_capacity(count as usize);
    for i in 0..count {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let scheduled_micros = now_micros() - scheduled.elapsed().as_micros() as u64;
        let (publisher, channel) = (publisher.clone(), channel(i));
        let data = format!("t={scheduled_micros};{pad}");
        publishes.push(tokio::spawn(async move {
            publisher.trigger(&channel, "tick", &data).await
        }));
    }
    for publish in publishes {
        publish.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Fan-out (one channel, many subscribers) and many channels (many channels, few subscribers).
pub async fn publish_load(place: &Placement<'_>, load: &PublishLoad) -> Result<Report, String> {
    let channels = load.channels;
    let sockets = open_subscribed(
        &place.subscribe_ports,
        channels * load.per_channel,
        move |i, _| json!({"channel": format!("load-{}", i % channels)}),
    )
    .await?;
    let events = load.rate * load.secs;
    let per_channel_events = events / channels as u64;
    let events = per_channel_events * channels as u64;
    let deadline = Instant::now() + Duration::from_secs(load.secs + 15);
    let readers = spawn_readers(sockets, per_channel_events, deadline);
    let publisher = Arc::new(Publisher::new(place.publish_port));
    let cpu_before = place.cpu_seconds();
    let own_cpu_before = own_cpu_seconds();
    let started = Instant::now();
    publish_at_rate(publisher, events, load.rate, load.payload, |i| {
        format!("load-{}", i % channels as u64)
    })
    .await?;
    let (delivered, samples) = readers.finish().await;
    let cpu = place.cpu_seconds() - cpu_before;
    let own_cpu = own_cpu_seconds() - own_cpu_before;
    let elapsed = started.elapsed().as_secs_f64();
    let expected = events * load.per_channel as u64;
    let mut report = Report::new(load.name);
    report.add("channels", channels as f64, "");
    report.add("subscribers per channel", load.per_channel as f64, "");
    report.add("events published", events as f64, "");
    report.add("deliveries", delivered as f64, "");
    report.add(
        "lost deliveries",
        expected.saturating_sub(delivered) as f64,
        "",
    );
    report.add("deliveries per second", delivered as f64 / elapsed, "/s");
    add_latency(&mut report, "", &samples);
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
    report.add("load generator CPU seconds", own_cpu, "s");
    Ok(report)
}

/// Lost and duplicated webhook events of presence channels `{prefix}{i}`, each joined and left
/// `cycles` times by user `u{i}` alone: each cycle fires channel_occupied, member_added,
/// member_removed and channel_vacated once.
pub fn lost_and_duplicated(
    counter: &WebhookCounter,
    prefix: &str,
    per_channel: &[(usize, u64)],
) -> (u64, u64) {
    let (mut lost, mut duplicated) = (0u64, 0u64);
    for (i, cycles) in per_channel {
        let channel = format!("{prefix}{i}");
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
    (lost, duplicated)
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
    let (lost, duplicated) = lost_and_duplicated(counter, "presence-churn-", &per_socket);
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
        &[target.port],
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
