//! The soak's steady loads: fan-out (REST publishes to one channel with many subscribers) and
//! client events between pairs on private channels; and what every load has done so far.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;

use crate::clients::{connect_lean, now_micros, subscribe, Publisher, Socket};
use crate::pairs::private_data;
use crate::reader::{Frame, FrameReader};
use crate::soak_sampler::Latencies;

/// Load errors whose text is kept for the report (all are counted).
const KEPT_ERRORS: usize = 5;

/// What the loads have done so far, read by the sampler and the report.
#[derive(Default)]
pub struct Progress {
    /// REST publishes answered with a 2xx.
    pub published: AtomicU64,
    /// Stamped events read by the fan-out subscribers.
    pub deliveries: AtomicU64,
    /// Fan-out subscribers whose connection ended before the run did.
    pub subscribers_closed: AtomicU64,
    pub client_sent: AtomicU64,
    pub client_received: AtomicU64,
    /// Presence join/leave cycles completed.
    pub cycles: AtomicU64,
    /// Connect/disconnect visits completed.
    pub connects: AtomicU64,
    pub errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Progress {
    /// Counts a load error, keeping the text of the first few.
    pub fn error(&self, what: &str, error: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.first_errors.lock().unwrap();
        if kept.len() < KEPT_ERRORS {
            kept.push(format!("{what}: {error}"));
        }
    }

    /// The first errors' text.
    pub fn first_errors(&self) -> Vec<String> {
        self.first_errors.lock().unwrap().clone()
    }

    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The end of the load: the deadline, or a signal that ended the run early.
#[derive(Clone)]
pub struct Stop(pub watch::Receiver<bool>);

impl Stop {
    /// Whether the load should stop.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the load should stop (at once when the sender is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

/// One lean reader per fan-out subscriber, counting and timing every stamped event until it
/// is aborted; a connection that ends early is counted.
pub fn spawn_subscribers(
    sockets: Vec<Socket>,
    progress: &Arc<Progress>,
    latencies: &Arc<Latencies>,
) -> Vec<JoinHandle<()>> {
    let spawn = |ws: Socket| {
        let (progress, latencies) = (progress.clone(), latencies.clone());
        tokio::spawn(async move {
            let mut reader = FrameReader::new(ws);
            loop {
                match reader.next().await {
                    Some(Frame::Stamped(sent)) => {
                        Progress::bump(&progress.deliveries);
                        latencies.record(now_micros().saturating_sub(sent));
                    }
                    Some(Frame::Other) => {}
                    Some(Frame::Close(_)) | None => {
                        Progress::bump(&progress.subscribers_closed);
                        return;
                    }
                }
            }
        })
    };
    sockets.into_iter().map(spawn).collect()
}

/// Publishes stamped events to `channel` at `rate` per second until `stop`, then waits for the
/// requests in flight. Latency counts from each event's scheduled send time, so a publisher
/// that falls behind shows up as latency.
pub async fn publish_until(
    publisher: Arc<Publisher>,
    channel: &'static str,
    (rate, payload): (f64, usize),
    stop: Stop,
    progress: Arc<Progress>,
) {
    let pad = "x".repeat(payload.saturating_sub(20));
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let started = Instant::now();
    let mut in_flight = JoinSet::new();
    for i in 0u64.. {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        if stop.is_set() {
            break;
        }
        let stamp = now_micros() - scheduled.elapsed().as_micros() as u64;
        let (publisher, progress) = (publisher.clone(), progress.clone());
        let data = format!("t={stamp};{pad}");
        in_flight.spawn(async move {
            match publisher.trigger(channel, "tick", &data).await {
                Ok(()) => Progress::bump(&progress.published),
                Err(error) => progress.error("publish", error),
            }
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

/// `pairs` pairs of sockets, the two of pair i on `private-soak-pair-{i}`.
pub async fn open_pairs(port: u16, pairs: usize) -> Result<Vec<(Socket, String)>, String> {
    let mut sockets = Vec::with_capacity(pairs * 2);
    for i in 0..pairs * 2 {
        let (mut ws, socket_id) = connect_lean(port).await?;
        let channel = format!("private-soak-pair-{}", i / 2);
        subscribe(&mut ws, private_data(&socket_id, &channel)).await?;
        sockets.push((ws, channel));
    }
    Ok(sockets)
}

/// Every pair socket sends `rate` client events per second until `stop` (staggered over the
/// interval) and counts those its partner sent, until it is aborted.
pub fn spawn_pairs(
    sockets: Vec<(Socket, String)>,
    rate: f64,
    stop: &Stop,
    progress: &Arc<Progress>,
) -> Vec<JoinHandle<()>> {
    let count = sockets.len().max(1);
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for (i, (ws, channel)) in sockets.into_iter().enumerate() {
        let first = started + period.mul_f64(i as f64 / count as f64);
        let (stop, progress) = (stop.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(first.into(), period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            if let Err(error) = relay(ws, &channel, &mut tick, &stop, &progress).await {
                progress.error("client events", error);
            }
        }));
    }
    tasks
}

/// One pair socket's loop: send on every tick before `stop`, count the partner's events.
async fn relay(
    ws: Socket,
    channel: &str,
    tick: &mut tokio::time::Interval,
    stop: &Stop,
    progress: &Progress,
) -> Result<(), String> {
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            _ = tick.tick(), if !stop.is_set() => {
                let frame = json!({"event": "client-soak", "channel": channel, "data": "{}"});
                sink.send(Message::text(frame.to_string())).await.map_err(|e| e.to_string())?;
                Progress::bump(&progress.client_sent);
            }
            next = stream.next() => match next {
                Some(Ok(Message::Text(text))) if text.contains("\"client-soak\"") => {
                    Progress::bump(&progress.client_received);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.to_string()),
                None if stop.is_set() => return Ok(()),
                None => return Err("closed by the server".to_owned()),
            },
        }
    }
}
