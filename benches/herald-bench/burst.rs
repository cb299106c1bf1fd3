//! The webhook-burst scenario: presence join/leave cycles as fast as the server takes them,
//! against a receiver that is slow, fails POSTs at random or is down for a while. Checks that
//! every webhook event arrives, once, in order per channel, and how long the tail takes.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};

use crate::clients::{self, connect, hmac_hex, presence_data, subscribe};
use crate::report::Report;
use crate::target::Target;

/// How the receiver behaves.
#[derive(Clone, Copy)]
pub struct Behaviour {
    /// Time taken by every request.
    pub delay: Duration,
    /// Share of POSTs answered with 503, each decided independently.
    pub fail_rate: f64,
    /// Nothing listens (connection refused) for this long after the burst starts.
    pub down_for: Duration,
}

/// The burst's size.
pub struct Burst {
    pub sockets: usize,
    pub channels_per_socket: usize,
}

type EventKey = (String, String, String);

#[derive(Default)]
struct Log {
    posts: u64,
    failed_posts: u64,
    bad_signatures: u64,
    /// Each webhook id's `events`, as first seen: a retry must carry the same.
    events_of_id: HashMap<String, String>,
    changed_retries: u64,
    posts_without_id: u64,
    /// For each event accepted with a 2xx: its arrival index, the ids it came under, and how
    /// often it came in a POST without an id (which cannot be told from a duplicate).
    accepted: HashMap<EventKey, (u64, HashSet<String>, u64)>,
    arrivals: u64,
    last_new_event: Option<Instant>,
}

#[derive(Clone)]
struct Receiver {
    log: Arc<Mutex<Log>>,
    behaviour: Behaviour,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let text = String::from_utf8_lossy(&body);
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let id = header("webhook-id");
    let fail = rand::rng().random_bool(receiver.behaviour.fail_rate.clamp(0.0, 1.0));
    {
        let mut log = receiver.log.lock().unwrap();
        log.posts += 1;
        if header("x-pusher-signature") != hmac_hex(&text) {
            log.bad_signatures += 1;
        }
        let events = json["events"].to_string();
        if id.is_empty() {
            log.posts_without_id += 1;
        } else {
            match log.events_of_id.get(&id) {
                Some(first) if *first != events => log.changed_retries += 1,
                Some(_) => {}
                None => {
                    log.events_of_id.insert(id.clone(), events);
                }
            }
        }
        if fail {
            log.failed_posts += 1;
        } else {
            for event in json["events"].as_array().into_iter().flatten() {
                let field = |k: &str| event[k].as_str().unwrap_or("").to_owned();
                let key = (field("name"), field("channel"), field("user_id"));
                let arrival = log.arrivals;
                let entry = log
                    .accepted
                    .entry(key)
                    .or_insert_with(|| (arrival, HashSet::new(), 0));
                let new = entry.1.is_empty() && entry.2 == 0;
                if id.is_empty() {
                    entry.2 += 1;
                } else {
                    entry.1.insert(id.clone());
                }
                if new {
                    log.arrivals += 1;
                    log.last_new_event = Some(Instant::now());
                }
            }
        }
    }
    tokio::time::sleep(receiver.behaviour.delay).await;
    if fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

impl Receiver {
    /// Serves on `addr`, after `behaviour.down_for`.
    fn start(addr: SocketAddr, behaviour: Behaviour) -> Receiver {
        let receiver = Receiver {
            log: Arc::default(),
            behaviour,
        };
        let app = Router::new()
            .route("/webhooks", post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            tokio::time::sleep(behaviour.down_for).await;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .expect("the receiver's port is free");
            axum::serve(listener, app).await
        });
        receiver
    }
}

fn channel(socket: usize, index: usize) -> String {
    format!("presence-burst-{socket}-{index}")
}

/// Runs every socket's join/leave cycles at once; returns when the server has processed all.
async fn churn(port: u16, burst: &Burst) -> Result<(), String> {
    let mut connected = Vec::with_capacity(burst.sockets);
    for _ in 0..burst.sockets {
        connected.push(connect(port).await?);
    }
    let mut tasks = Vec::new();
    for (i, (mut ws, socket_id)) in connected.into_iter().enumerate() {
        let channels = burst.channels_per_socket;
        tasks.push(tokio::spawn(async move {
            let user = format!("u{i}");
            for j in 0..channels {
                let channel = channel(i, j);
                subscribe(&mut ws, presence_data(&socket_id, &channel, &user)).await?;
                clients::send(
                    &mut ws,
                    json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
                )
                .await?;
            }
            // A ping round trip proves the last unsubscribe was processed.
            clients::send(&mut ws, json!({"event": "pusher:ping"})).await?;
            while clients::next_json(&mut ws).await.ok_or("closed")?["event"] != "pusher:pong" {}
            Ok::<_, String>(ws)
        }));
    }
    for task in tasks {
        // The sockets stay open until every task is done, so no disconnect adds events.
        let _ws = task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// The burst against `target`, whose webhook URL is `http://{addr}/webhooks`.
pub async fn webhook_burst(
    target: &Target,
    addr: SocketAddr,
    burst: &Burst,
    behaviour: Behaviour,
) -> Result<Report, String> {
    let receiver = Receiver::start(addr, behaviour);
    let started = Instant::now();
    let cpu_before = target.cpu_seconds();
    churn(target.port, burst).await?;
    let burst_secs = started.elapsed().as_secs_f64();
    let cycles = (burst.sockets * burst.channels_per_socket) as u64;
    let expected = cycles * 4;
    let wait_until = Instant::now() + behaviour.down_for + Duration::from_secs(120);
    while (receiver.log.lock().unwrap().accepted.len() as u64) < expected
        && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Late duplicates (a retry of something already accepted) would come within a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = target.cpu_seconds() - cpu_before;
    let log = receiver.log.lock().unwrap();
    let (mut lost, mut out_of_order) = (0u64, 0u64);
    let arrival = |name: &str, channel: &str, user: &str| {
        log.accepted
            .get(&(name.to_owned(), channel.to_owned(), user.to_owned()))
            .map(|(at, ..)| *at)
    };
    for i in 0..burst.sockets {
        let user = format!("u{i}");
        for j in 0..burst.channels_per_socket {
            let channel = channel(i, j);
            let occupied = arrival("channel_occupied", &channel, "");
            let vacated = arrival("channel_vacated", &channel, "");
            let added = arrival("member_added", &channel, &user);
            let removed = arrival("member_removed", &channel, &user);
            lost += [occupied, vacated, added, removed]
                .iter()
                .filter(|a| a.is_none())
                .count() as u64;
            for (opens, closes) in [(occupied, vacated), (added, removed)] {
                if let (Some(opens), Some(closes)) = (opens, closes) {
                    out_of_order += u64::from(closes < opens);
                }
            }
        }
    }
    let duplicated: u64 = log
        .accepted
        .values()
        .map(|(_, ids, anonymous)| ids.len() as u64 + anonymous - 1)
        .sum();
    let delivered = log.accepted.len() as u64;
    let tail = log
        .last_new_event
        .map_or(0.0, |at| at.duration_since(started).as_secs_f64());
    let mut report = Report::new("webhook burst");
    report.add("cycles", cycles as f64, "");
    report.add("burst seconds", burst_secs, "s");
    report.add("receiver delay", behaviour.delay.as_millis() as f64, "ms");
    report.add("receiver failure rate", behaviour.fail_rate, "");
    report.add("receiver down for", behaviour.down_for.as_secs_f64(), "s");
    report.add("webhook events expected", expected as f64, "");
    report.add("webhook events delivered", delivered as f64, "");
    report.add("lost events", lost as f64, "");
    report.add("duplicated events", duplicated as f64, "");
    report.add("out-of-order pairs", out_of_order as f64, "");
    report.add("POSTs", log.posts as f64, "");
    report.add("POSTs answered 503", log.failed_posts as f64, "");
    report.add(
        "retries with changed events",
        log.changed_retries as f64,
        "",
    );
    report.add(
        "POSTs without a webhook-id",
        log.posts_without_id as f64,
        "",
    );
    report.add("POSTs with a bad signature", log.bad_signatures as f64, "");
    report.add("first event to last delivery", tail, "s");
    report.add(
        "events delivered per second",
        delivered as f64 / tail.max(1e-9),
        "/s",
    );
    report.add("server CPU seconds", cpu, "s");
    Ok(report)
}
