//! Slow consumer: one subscriber stops reading while the others keep up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::clients::{connect, subscribe, Publisher};
use crate::reader::{Frame, FrameReader};
use crate::report::{percentile, Report};
use crate::scenarios::publish_at_rate;
use crate::target::Target;

/// `readers` subscribers read everything; one more never reads. Events of `payload` bytes are
/// published at `rate` for `secs`. Reports the readers' latency in the first and second half,
/// whether and how the slow one was disconnected, and the server's RSS before and after.
pub async fn slow_consumer(
    target: &Target,
    readers: usize,
    rate: u64,
    secs: u64,
    payload: usize,
) -> Result<Report, String> {
    let mut sockets = Vec::with_capacity(readers);
    for _ in 0..readers {
        let (mut ws, _) = connect(target.port).await?;
        subscribe(&mut ws, json!({"channel": "slow"})).await?;
        sockets.push(ws);
    }
    let (mut slow, _) = connect(target.port).await?;
    subscribe(&mut slow, json!({"channel": "slow"})).await?;
    let rss_before = target.rss_bytes();
    let events = rate * secs;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs + 15);
    let mut tasks = Vec::new();
    for ws in sockets {
        let mut reader = FrameReader::new(ws);
        tasks.push(tokio::spawn(async move {
            // (micros since start at receipt, latency) for each event.
            let mut samples = Vec::with_capacity(events as usize);
            while (samples.len() as u64) < events {
                match tokio::time::timeout_at(deadline.into(), reader.next()).await {
                    Ok(Some(Frame::Stamped(sent))) => {
                        let now = crate::clients::now_micros();
                        samples.push((
                            started.elapsed().as_micros() as u64,
                            now.saturating_sub(sent),
                        ));
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            samples
        }));
    }
    let publisher = Arc::new(Publisher::new(target.port));
    let publishing = publish_at_rate(publisher, events, rate, payload, |_| "slow".to_owned());
    tokio::pin!(publishing);
    // Sample the server's memory once a second while publishing.
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    let mut max_rss = rss_before;
    loop {
        tokio::select! {
            published = &mut publishing => {
                published?;
                break;
            }
            _ = sample.tick() => max_rss = max_rss.max(target.rss_bytes()),
        }
    }
    let half = secs * 1_000_000 / 2;
    let (mut first, mut second, mut delivered) = (Vec::new(), Vec::new(), 0u64);
    for task in tasks {
        for (at, latency) in task.await.map_err(|e| e.to_string())? {
            delivered += 1;
            if at < half {
                first.push(latency)
            } else {
                second.push(latency)
            }
        }
    }
    first.sort_unstable();
    second.sort_unstable();
    max_rss = max_rss.max(target.rss_bytes());
    // Now read what reached the slow socket: it ends in a close frame or a dropped connection.
    let mut slow_reader = FrameReader::new(slow);
    let mut close_code = None;
    let mut disconnected = false;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(until.into(), slow_reader.next()).await {
            Ok(Some(Frame::Close(code))) => {
                close_code = code;
                disconnected = true;
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                disconnected = true;
                break;
            }
            Err(_) => break,
        }
    }
    let mut report = Report::new("slow consumer");
    report.add("reading subscribers", readers as f64, "");
    report.add("events published", events as f64, "");
    report.add("payload bytes", payload as f64, "");
    report.add("deliveries to reading subscribers", delivered as f64, "");
    report.add(
        "lost deliveries (reading subscribers)",
        (events * readers as u64).saturating_sub(delivered) as f64,
        "",
    );
    report.add(
        "latency p50, first half",
        percentile(&first, 50.0) as f64 / 1000.0,
        "ms",
    );
    report.add(
        "latency p99, first half",
        percentile(&first, 99.0) as f64 / 1000.0,
        "ms",
    );
    report.add(
        "latency p50, second half",
        percentile(&second, 50.0) as f64 / 1000.0,
        "ms",
    );
    report.add(
        "latency p99, second half",
        percentile(&second, 99.0) as f64 / 1000.0,
        "ms",
    );
    report.add(
        "slow consumer disconnected",
        if disconnected { 1.0 } else { 0.0 },
        "",
    );
    report.add(
        "slow consumer close code (0: dropped)",
        f64::from(close_code.unwrap_or(0)),
        "",
    );
    report.add("server RSS before", rss_before as f64 / 1048576.0, "MiB");
    report.add(
        "server RSS peak (sampled)",
        max_rss as f64 / 1048576.0,
        "MiB",
    );
    Ok(report)
}
