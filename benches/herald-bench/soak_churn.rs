//! The soak's churn: presence sockets joining and leaving channels of their own at a steady
//! pace (each join fires four webhooks), and short visits that connect, subscribe a channel of
//! their own (occupied, then vacated), stay a few seconds and go.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};

use crate::clients::{self, connect_lean, presence_data, subscribe, Socket};
use crate::receiver::WebhookCounter;
use crate::soak_load::{Progress, Stop};

/// The presence channels of the churn, `{PRESENCE_PREFIX}{i}` joined by user `u{i}` alone.
pub const PRESENCE_PREFIX: &str = "presence-soak-";
/// The visits' channels, `{VISIT_PREFIX}{n}`, one per visit.
pub const VISIT_PREFIX: &str = "soak-visit-";

/// How long the end of a churn waits for the server to answer.
const ANSWER_BOUND: Duration = Duration::from_secs(10);

/// Each socket joins and leaves its own presence channel `rate` times a second (staggered)
/// until `stop`, then proves its last leave was handled with a ping round trip. Each task
/// returns its index, completed cycles and its socket (closed with the others at the end).
pub fn spawn_presence(
    sockets: Vec<(Socket, String)>,
    rate: f64,
    stop: &Stop,
    progress: &Arc<Progress>,
) -> Vec<JoinHandle<(usize, u64, Socket)>> {
    let count = sockets.len().max(1);
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for (i, (mut ws, socket_id)) in sockets.into_iter().enumerate() {
        let first = started + period.mul_f64(i as f64 / count as f64);
        let (mut stop, progress) = (stop.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(first.into(), period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut cycles = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait() => break,
                }
                if stop.is_set() {
                    break;
                }
                if let Err(error) = cycle(&mut ws, &socket_id, i).await {
                    progress.error("presence churn", error);
                    return (i, cycles, ws);
                }
                cycles += 1;
                Progress::bump(&progress.cycles);
            }
            if let Err(error) = round_trip(&mut ws).await {
                progress.error("presence churn, last ping", error);
            }
            (i, cycles, ws)
        }));
    }
    tasks
}

/// One join (waiting for its success) and leave of `presence-soak-{i}` as user `u{i}`.
async fn cycle(ws: &mut Socket, socket_id: &str, i: usize) -> Result<(), String> {
    let channel = format!("{PRESENCE_PREFIX}{i}");
    subscribe(ws, presence_data(socket_id, &channel, &format!("u{i}"))).await?;
    let leave = json!({"event": "pusher:unsubscribe", "data": {"channel": channel}});
    clients::send(ws, leave).await
}

/// A `pusher:ping` answered: everything sent before it was handled.
async fn round_trip(ws: &mut Socket) -> Result<(), String> {
    clients::send(ws, json!({"event": "pusher:ping"})).await?;
    let pong = async {
        while clients::next_json(ws).await.ok_or("closed")?["event"] != "pusher:pong" {}
        Ok::<(), String>(())
    };
    tokio::time::timeout(ANSWER_BOUND, pong)
        .await
        .map_err(|_| "no pong".to_owned())?
}

/// Starts a visit `rate` times a second until `stop`: connect, subscribe `soak-visit-{n}`,
/// stay `stay`, then close with a close handshake (even n) or by dropping the connection (odd
/// n). Waits for the visits under way; returns the n of every visit that subscribed.
pub async fn visits(
    port: u16,
    rate: f64,
    stay: Duration,
    stop: Stop,
    progress: Arc<Progress>,
) -> Vec<u64> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut under_way, mut subscribed) = (JoinSet::new(), Vec::new());
    let mut reap = |done: Result<Option<u64>, tokio::task::JoinError>| {
        subscribed.extend(done.ok().flatten());
    };
    for n in 0u64.. {
        tick.tick().await;
        if stop.is_set() {
            break;
        }
        let progress = progress.clone();
        under_way.spawn(async move { visit(port, n, stay, &progress).await });
        while let Some(done) = under_way.try_join_next() {
            reap(done);
        }
    }
    while let Some(done) = under_way.join_next().await {
        reap(done);
    }
    subscribed
}

/// One visit; `Some(n)` when it subscribed (its channel's webhooks are then expected).
async fn visit(port: u16, n: u64, stay: Duration, progress: &Progress) -> Option<u64> {
    let (mut ws, _) = match connect_lean(port).await {
        Ok(connected) => connected,
        Err(error) => {
            progress.error("visit, connect", error);
            return None;
        }
    };
    let channel = format!("{VISIT_PREFIX}{n}");
    if let Err(error) = subscribe(&mut ws, json!({ "channel": channel })).await {
        progress.error("visit, subscribe", error);
        return None;
    }
    tokio::time::sleep(stay).await;
    if n.is_multiple_of(2) {
        let closed = async {
            ws.close(None).await.map_err(|e| e.to_string())?;
            while clients::next_json(&mut ws).await.is_some() {}
            Ok::<(), String>(())
        };
        match tokio::time::timeout(ANSWER_BOUND, closed).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => progress.error("visit, close", error),
            Err(_) => progress.error("visit, close", "no close from the server"),
        }
    }
    Progress::bump(&progress.connects);
    Some(n)
}

/// Lost and duplicated channel_occupied / channel_vacated events of the visits' channels: one
/// of each per visit that subscribed.
pub fn visit_webhooks(counter: &WebhookCounter, subscribed: &[u64]) -> (u64, u64) {
    let (mut lost, mut duplicated) = (0, 0);
    for n in subscribed {
        let channel = format!("{VISIT_PREFIX}{n}");
        for name in ["channel_occupied", "channel_vacated"] {
            let got = counter.count(name, &channel, "");
            lost += 1u64.saturating_sub(got);
            duplicated += got.saturating_sub(1);
        }
    }
    (lost, duplicated)
}
