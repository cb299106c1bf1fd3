//! Client events: pairs of sockets on private channels, each sending stamped client events.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::clients::{self, connect, now_micros, subscribe};
use crate::report::{percentile, Report};
use crate::target::{own_cpu_seconds, Target, KEY};

/// The subscribe data of a private channel, signed.
pub fn private_data(socket_id: &str, channel: &str) -> serde_json::Value {
    let auth = format!(
        "{KEY}:{}",
        clients::hmac_hex(&format!("{socket_id}:{channel}"))
    );
    json!({"auth": auth, "channel": channel})
}

/// `pairs` pairs on `private-pair-{i}`; every socket sends `rate` client events per second for
/// `secs`; each event is measured at the partner.
pub async fn client_events(
    target: &Target,
    pairs: usize,
    rate: u64,
    secs: u64,
) -> Result<Report, String> {
    let mut sockets = Vec::with_capacity(pairs * 2);
    for i in 0..pairs * 2 {
        let (mut ws, socket_id) = connect(target.port).await?;
        let channel = format!("private-pair-{}", i / 2);
        subscribe(&mut ws, private_data(&socket_id, &channel)).await?;
        sockets.push((ws, channel));
    }
    let cpu_before = target.cpu_seconds();
    let own_cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let stop = started + Duration::from_secs(secs);
    let drain_until = stop + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for (i, (ws, channel)) in sockets.into_iter().enumerate() {
        // Stagger the senders so the load is spread over each interval.
        let offset = Duration::from_secs_f64((i as f64 / (pairs * 2) as f64) / rate as f64);
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let mut tick = tokio::time::interval_at((started + offset).into(), Duration::from_secs_f64(1.0 / rate as f64));
            let (mut sent, mut latencies) = (0u64, Vec::new());
            loop {
                tokio::select! {
                    _ = tick.tick(), if Instant::now() < stop => {
                        let frame = json!({"event": "client-ping", "channel": channel, "data": format!("t={}", now_micros())});
                        futures_util::SinkExt::send(&mut sink, Message::text(frame.to_string())).await.map_err(|e| e.to_string())?;
                        sent += 1;
                    }
                    next = tokio::time::timeout_at(drain_until.into(), stream.next()) => match next {
                        Ok(Some(Ok(Message::Text(text)))) => {
                            if let Some(at) = text.find("t=") {
                                let digits: String = text[at + 2..].chars().take_while(char::is_ascii_digit).collect();
                                if let Ok(stamp) = digits.parse::<u64>() {
                                    latencies.push(now_micros().saturating_sub(stamp));
                                }
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    },
                }
            }
            Ok::<(u64, Vec<u64>), String>((sent, latencies))
        }));
    }
    let (mut sent, mut samples) = (0u64, Vec::new());
    for task in tasks {
        let (s, l) = task.await.map_err(|e| e.to_string())??;
        sent += s;
        samples.extend(l);
    }
    let cpu = target.cpu_seconds() - cpu_before;
    let own_cpu = own_cpu_seconds() - own_cpu_before;
    samples.sort_unstable();
    let delivered = samples.len() as u64;
    let mut report = Report::new("client events");
    report.add("pairs", pairs as f64, "");
    report.add("client events sent", sent as f64, "");
    report.add("client events delivered", delivered as f64, "");
    report.add(
        "lost client events",
        sent.saturating_sub(delivered) as f64,
        "",
    );
    report.add(
        "client events per second",
        delivered as f64 / secs as f64,
        "/s",
    );
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
    report.add("server CPU seconds", cpu, "s");
    report.add(
        "client events per server CPU-second",
        delivered as f64 / cpu.max(1e-9),
        "/cpu-s",
    );
    report.add("load generator CPU seconds", own_cpu, "s");
    Ok(report)
}
