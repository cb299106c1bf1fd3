//! The decision hooks scenario: connection setup and subscribe throughput with a local
//! allow-all hook against the same without hooks, per server CPU-second; then fan-out beside
//! sockets that keep subscribing, once without hooks and once through a hook that answers in
//! 50 ms (the same load both times: only the hook differs).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::clients::{connect, subscribe};
use crate::report::{percentile, Report};
use crate::scenarios::{publish_load, Placement, PublishLoad};
use crate::target::{self, free_port, Target};

/// Sizes of the hooks scenario.
pub struct Sizes {
    /// Sockets opened and subscribed in each setup run.
    pub connections: usize,
    /// Of which at most this many at once.
    pub concurrency: usize,
    /// Fan-out: subscribers of the one channel.
    pub subscribers: usize,
    /// Fan-out: REST publishes per second.
    pub rate: u64,
    /// Fan-out: seconds of publishing.
    pub secs: u64,
    /// Event data bytes.
    pub payload: usize,
}

/// A decision hook on an ephemeral loopback port that allows everything after `delay`;
/// returns its URL and its call count.
async fn start_hook(delay: Duration) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/decide", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/decide",
        post(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(delay).await;
                ([("content-type", "application/json")], r#"{"allow":true}"#)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

/// The bench config, with every decision hook asked at `hook` when given.
fn config(port: u16, hook: Option<&str>) -> Value {
    let mut config = target::config(port, None);
    if let Some(url) = hook {
        config["app_manager"]["array"]["apps"][0]["decision_hooks"] = json!({
            "url": url,
            "events": ["connection_starting", "subscription_starting", "client_event_sending"],
            "request_timeout_ms": 5000,
            "max_concurrent": 4096,
        });
    }
    config
}

/// Opens `sizes.connections` sockets, `sizes.concurrency` at a time, each connected and
/// subscribed to a public channel; returns each one's setup time (µs) and the seconds taken.
async fn open_all(port: u16, sizes: &Sizes) -> Result<(Vec<u64>, f64), String> {
    let gate = Arc::new(Semaphore::new(sizes.concurrency));
    let started = Instant::now();
    let tasks: Vec<_> = (0..sizes.connections)
        .map(|i| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                let began = Instant::now();
                let (mut ws, _) = connect(port).await?;
                subscribe(&mut ws, json!({"channel": format!("setup-{}", i % 100)})).await?;
                Ok::<_, String>((began.elapsed().as_micros() as u64, ws))
            })
        })
        .collect();
    let mut times = Vec::with_capacity(tasks.len());
    let mut sockets = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (took, ws) = task.await.map_err(|e| e.to_string())??;
        times.push(took);
        sockets.push(ws);
    }
    let secs = started.elapsed().as_secs_f64();
    drop(sockets);
    times.sort_unstable();
    Ok((times, secs))
}

/// One setup run on a fresh server, with or without the allow-all hook.
async fn setup(
    report: &mut Report,
    server: &str,
    hook: Option<&str>,
    sizes: &Sizes,
) -> Result<(), String> {
    let port = free_port();
    let target = Target::start(server, &config(port, hook), port)?;
    let cpu_before = target.cpu_seconds();
    let (times, secs) = open_all(port, sizes).await?;
    let cpu = target.cpu_seconds() - cpu_before;
    let name = if hook.is_some() {
        "allow-all hook"
    } else {
        "no hook"
    };
    let n = sizes.connections as f64;
    report.add(
        &format!("{name}: connect+subscribe per second"),
        n / secs,
        "/s",
    );
    report.add(
        &format!("{name}: connect+subscribe per server CPU-second"),
        n / cpu.max(1e-9),
        "/cpu-s",
    );
    report.add(
        &format!("{name}: setup p50"),
        percentile(&times, 50.0) as f64 / 1000.0,
        "ms",
    );
    report.add(
        &format!("{name}: setup p99"),
        percentile(&times, 99.0) as f64 / 1000.0,
        "ms",
    );
    Ok(())
}

/// Sockets beside the fan-out, the same load in both runs: 50 of them, each subscribing to a
/// channel of its own and leaving it again ten times a second, until `stop`. Through a hook,
/// each subscribe waits for it; returns the subscribes that succeeded.
fn paced_churn(port: u16, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Result<u64, String>> {
    tokio::spawn(async move {
        let workers: Vec<_> = (0..50)
            .map(|w| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let (mut ws, _) = connect(port).await?;
                    let channel = format!("churn-{w}");
                    let mut tick = tokio::time::interval(Duration::from_millis(100));
                    let mut done = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        subscribe(&mut ws, json!({"channel": channel})).await?;
                        let leave =
                            json!({"event": "pusher:unsubscribe", "data": {"channel": channel}});
                        crate::clients::send(&mut ws, leave).await?;
                        done += 1;
                    }
                    Ok::<u64, String>(done)
                })
            })
            .collect();
        let mut total = 0;
        for worker in workers {
            total += worker.await.map_err(|e| e.to_string())??;
        }
        Ok(total)
    })
}

/// One fan-out run beside the paced churn; the hook (when given) answers in its own time.
async fn fanout_beside_churn(
    server: &str,
    hook: Option<&str>,
    load: &PublishLoad,
) -> Result<(Report, u64), String> {
    let port = free_port();
    let target = Target::start(server, &config(port, hook), port)?;
    let stop = Arc::new(AtomicBool::new(false));
    let churn = paced_churn(port, stop.clone());
    let report = publish_load(&Placement::single(&target), load).await;
    stop.store(true, Ordering::Relaxed);
    let churned = churn.await.map_err(|e| e.to_string())??;
    Ok((report?, churned))
}

/// Fan-out beside 50 sockets subscribing ten times a second each: without hooks, then with
/// every hook answering in 50 ms.
async fn fanout(report: &mut Report, server: &str, sizes: &Sizes) -> Result<(), String> {
    let load = PublishLoad {
        name: "fan-out",
        channels: 1,
        per_channel: sizes.subscribers,
        rate: sizes.rate,
        secs: sizes.secs,
        payload: sizes.payload,
    };
    const KEPT: &[&str] = &[
        "lost deliveries",
        "deliveries per second",
        "latency p50",
        "latency p99",
        "deliveries per server CPU-second",
    ];
    let (without, churned) = fanout_beside_churn(server, None, &load).await?;
    report.add_from("fan-out, no hook: ", &without, KEPT);
    report.add(
        "fan-out, no hook: churn subscribes meanwhile",
        churned as f64,
        "",
    );
    let (url, calls) = start_hook(Duration::from_millis(50)).await;
    let (with, churned) = fanout_beside_churn(server, Some(&url), &load).await?;
    report.add_from("fan-out, 50 ms hook: ", &with, KEPT);
    report.add(
        "fan-out, 50 ms hook: churn subscribes meanwhile",
        churned as f64,
        "",
    );
    report.add(
        "fan-out, 50 ms hook: hook calls",
        calls.load(Ordering::Relaxed) as f64,
        "",
    );
    let ratio = |figure: &str| with.value(figure) / without.value(figure).max(1e-9);
    report.add(
        "fan-out deliveries per second, hooked / plain",
        ratio("deliveries per second"),
        "x",
    );
    report.add(
        "fan-out latency p99, hooked / plain",
        ratio("latency p99"),
        "x",
    );
    Ok(())
}

/// Runs the scenario; every server is stopped when it returns.
pub async fn hooks(server: &str, sizes: &Sizes) -> Result<Report, String> {
    let mut report = Report::new("decision hooks");
    setup(&mut report, server, None, sizes).await?;
    let (url, calls) = start_hook(Duration::ZERO).await;
    setup(&mut report, server, Some(&url), sizes).await?;
    report.add(
        "allow-all hook: calls",
        calls.load(Ordering::Relaxed) as f64,
        "",
    );
    fanout(&mut report, server, sizes).await?;
    Ok(report)
}
