//! Webhooks under load and failure: a burst past the old per-queue cap, random failures and
//! delays, a receiver that is down at first, several requests in flight with per-channel order,
//! the queue depth and age gauges, and the overflow policy of a tiny byte budget.
//!
//! Receivers here answer after the events were recorded, so "accepted" below means the first
//! 2xx-answered request of each `webhook-id`, in the order the receiver saw them arrive.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::receiver::{Received, Receiver};
use crate::support::*;

/// Bound of the waits for thousands of events or for a backlog after an outage.
const LONG_WAIT: Duration = Duration::from_secs(15);

/// After everything expected arrived, how long to keep listening for anything extra.
const SETTLE: Duration = Duration::from_millis(300);

const OCCUPANCY: [&str; 4] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
];

/// A server whose app has `hooks`, no grace period, batching window `batch_ms`.
async fn server(hooks: Value, batch_ms: u64, edit: impl FnOnce(&mut Value)) -> TestServer {
    TestServer::start_with(|c| {
        TestServer::app(c)["webhooks"] = hooks;
        c["webhooks"] =
            json!({"grace_period_ms": 0, "batching": {"enabled": true, "duration": batch_ms}});
        edit(c);
    })
    .await
}

/// An endpoint taking the occupancy and membership events, with short retries and a request
/// timeout long enough for a receiver that holds requests for a while.
fn endpoint(url: String, max_in_flight: u64) -> Value {
    json!({
        "url": url,
        "event_types": OCCUPANCY,
        "max_in_flight": max_in_flight,
        "request_timeout_ms": 15_000,
        "retry": {"initial_backoff_ms": 20, "max_backoff_ms": 100, "max_elapsed_time_ms": 20_000}
    })
}

/// A `pusher:subscribe` frame: a presence channel as `user` when given, else a public one.
fn subscribe_frame(client: &Client, channel: &str, user: Option<&str>) -> Value {
    let data = match user {
        Some(user) => client.presence_data(
            channel,
            &json!({"user_id": user, "user_info": {"name": user}}),
        ),
        None => json!({"auth": "", "channel": channel}),
    };
    json!({"event": "pusher:subscribe", "data": data})
}

fn unsubscribe_frame(channel: &str) -> Value {
    json!({"event": "pusher:unsubscribe", "data": {"channel": channel}})
}

/// Sends `frames` without waiting for replies, then a `pusher:ping`. The server handles a
/// socket's frames in order, so the pong proves every frame before it was handled (and its
/// webhook events submitted); every reply before it must be a subscription success.
async fn send_all(client: &mut Client, frames: Vec<Value>) {
    let subscribes = frames
        .iter()
        .filter(|f| f["event"] == "pusher:subscribe")
        .count();
    for frame in frames {
        client.send(frame).await;
    }
    client
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    let mut succeeded = 0;
    loop {
        let frame = client.recv().await;
        match frame["event"].as_str() {
            Some("pusher:pong") => break,
            Some("pusher_internal:subscription_succeeded") => succeeded += 1,
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert_eq!(succeeded, subscribes, "every subscription succeeded");
}

/// Waits for every socket task; a panic in one fails the test.
async fn join_all(mut tasks: JoinSet<()>) {
    while let Some(done) = tokio::time::timeout(LONG_WAIT, tasks.join_next())
        .await
        .expect("socket tasks finish in time")
    {
        done.expect("socket task");
    }
}

/// Checks every attempt the receiver saw: all requests of one `webhook-id` carry exactly the
/// events of its first attempt and a valid signature of their own body; every id was accepted
/// in the end, and nothing was sent under it after it was accepted. Returns how many ids had
/// more than one attempt.
fn check_attempts(received: &[Received]) -> usize {
    let mut by_id: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for request in received {
        by_id
            .entry(request.header("webhook-id"))
            .or_default()
            .push(request);
    }
    let mut retried = 0;
    for (id, attempts) in &by_id {
        let first = attempts[0].events();
        assert!(!first.is_empty(), "{id}: a request without events");
        for attempt in attempts {
            assert_eq!(
                attempt.events(),
                first,
                "{id}: a retry changed the events of its first attempt"
            );
            assert_eq!(
                attempt.header("x-pusher-signature"),
                hmac_hex(SECRET, &attempt.body),
                "{id}: signature"
            );
        }
        let statuses: Vec<u16> = attempts.iter().map(|a| a.status).collect();
        let accepted = statuses
            .iter()
            .position(|s| (200..300).contains(s))
            .unwrap_or_else(|| panic!("{id} was never accepted: {statuses:?}"));
        assert_eq!(
            accepted,
            attempts.len() - 1,
            "{id} was sent again after a 2xx: {statuses:?}"
        );
        if attempts.len() > 1 {
            retried += 1;
        }
    }
    retried
}

/// The events of the first 2xx-answered request of each `webhook-id`, in arrival order.
fn accepted_events(received: &[Received]) -> Vec<Value> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter(|r| r.accepted() && seen.insert(r.header("webhook-id")))
        .flat_map(Received::events)
        .collect()
}

/// Per channel, its events in order: `channel_occupied`, `member_added u1`, ...
fn by_channel(events: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut channels: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in events {
        let name = event["name"].as_str().expect("name");
        let entry = match event["user_id"].as_str() {
            Some(user) => format!("{name} {user}"),
            None => name.to_owned(),
        };
        channels
            .entry(event["channel"].as_str().expect("channel").to_owned())
            .or_default()
            .push(entry);
    }
    channels
}

/// A presence channel's life with one member: occupied, added, removed, vacated.
fn presence_life(user: &str) -> Vec<String> {
    vec![
        "channel_occupied".to_owned(),
        format!("member_added {user}"),
        format!("member_removed {user}"),
        "channel_vacated".to_owned(),
    ]
}

async fn metrics_text(server: &TestServer) -> String {
    server.metrics_text().await
}

/// The value of `herald_{name}` for the test app (or the global one when it has no label).
fn metric(text: &str, name: &str) -> f64 {
    let per_app = format!("herald_{name}{{app=\"{APP_ID}\"}} ");
    let global = format!("herald_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&per_app).or_else(|| l.strip_prefix(&global)))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `GET /up/{app}`: always 200; returns the `webhooks` object.
async fn up(server: &TestServer) -> Value {
    let (status, body) =
        send(reqwest::Client::new().get(server.http_url(&format!("/up/{APP_ID}")))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    body["webhooks"].clone()
}

/// Waits until the app's webhook queue gauges are back to empty.
async fn wait_drained(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = metrics_text(server).await;
        let gauges = [
            metric(&text, "webhook_queue_events"),
            metric(&text, "webhook_queue_bytes"),
            metric(&text, "webhook_queue_oldest_age_seconds"),
        ];
        if gauges == [0.0; 3] {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue did not drain: events, bytes, age = {gauges:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// No event dropped, suppressed or given up on.
fn assert_nothing_lost(text: &str) {
    for name in [
        "webhook_queue_dropped_total",
        "webhook_queue_suppressed_total",
        "webhook_events_dropped_total",
        "webhook_events_dead_total",
    ] {
        assert_eq!(metric(text, name), 0.0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_old_cap_arrives_whole() {
    const SOCKETS: usize = 60;
    const CYCLES: usize = 50;
    // 3,000 join/leave cycles, four events each.
    let expected = SOCKETS * CYCLES * 4;
    assert!(expected > 10_000);
    let receiver = Receiver::start().await;
    // The first requests stay unanswered until the whole burst is queued.
    receiver.hold();
    let server = server(json!([endpoint(receiver.url("/h"), 8)]), 50, |_| {}).await;
    let mut sockets = JoinSet::new();
    for s in 0..SOCKETS {
        let url = server.ws_url(KEY);
        sockets.spawn(async move {
            let mut client = Client::connect(&url).await;
            let user = format!("u{s}");
            let mut frames = Vec::new();
            for c in 0..CYCLES {
                let channel = format!("presence-burst-{s}-{c}");
                frames.push(subscribe_frame(&client, &channel, Some(&user)));
                frames.push(unsubscribe_frame(&channel));
            }
            send_all(&mut client, frames).await;
        });
    }
    join_all(sockets).await;
    let text = metrics_text(&server).await;
    assert_eq!(
        metric(&text, "webhook_queue_events"),
        expected as f64,
        "the whole burst is queued at once"
    );
    assert_nothing_lost(&text);
    receiver.release();
    receiver.wait_accepted_events(expected, LONG_WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let received = receiver.received();
    check_attempts(&received);
    let events = accepted_events(&received);
    assert_eq!(events.len(), expected, "no event twice under two ids");
    let channels = by_channel(&events);
    assert_eq!(channels.len(), SOCKETS * CYCLES);
    for s in 0..SOCKETS {
        for c in 0..CYCLES {
            let channel = format!("presence-burst-{s}-{c}");
            assert_eq!(
                channels.get(&channel),
                Some(&presence_life(&format!("u{s}"))),
                "{channel}"
            );
        }
    }
    wait_drained(&server).await;
    assert_nothing_lost(&metrics_text(&server).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_failures_and_delays_lose_nothing_and_retry_with_the_same_id() {
    const SOCKETS: usize = 30;
    const CHANNELS: usize = 10;
    let expected = SOCKETS * CHANNELS * 4;
    let receiver = Receiver::start().await;
    receiver.chaos(0.3, 503, Duration::ZERO..=Duration::from_millis(30));
    // Batches of at most 10 events: well over a hundred requests, so failures are certain.
    let server = server(json!([endpoint(receiver.url("/h"), 8)]), 20, |c| {
        c["webhooks"]["batching"]["max_events"] = json!(10)
    })
    .await;
    let mut sockets = JoinSet::new();
    for s in 0..SOCKETS {
        let url = server.ws_url(KEY);
        sockets.spawn(async move {
            let mut client = Client::connect(&url).await;
            // Staggered, so the joins' batches go out at once instead of queueing, and the
            // leaves meet them in flight or in retry.
            tokio::time::sleep(Duration::from_millis(10 * s as u64)).await;
            let user = format!("u{s}");
            let channels: Vec<String> = (0..CHANNELS)
                .map(|c| format!("presence-chaos-{s}-{c}"))
                .collect();
            let joins = channels
                .iter()
                .map(|c| subscribe_frame(&client, c, Some(&user)))
                .collect();
            send_all(&mut client, joins).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
            send_all(
                &mut client,
                channels.iter().map(|c| unsubscribe_frame(c)).collect(),
            )
            .await;
        });
    }
    join_all(sockets).await;
    receiver.wait_accepted_events(expected, LONG_WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let received = receiver.received();
    let failed = received.iter().filter(|r| !r.accepted()).count();
    assert!(failed > 0, "the receiver failed some requests");
    let retried = check_attempts(&received);
    assert!(retried > 0, "some batches were retried");
    let events = accepted_events(&received);
    assert_eq!(events.len(), expected, "no event twice under two ids");
    let channels = by_channel(&events);
    assert_eq!(channels.len(), SOCKETS * CHANNELS);
    for s in 0..SOCKETS {
        for c in 0..CHANNELS {
            let channel = format!("presence-chaos-{s}-{c}");
            assert_eq!(
                channels.get(&channel),
                Some(&presence_life(&format!("u{s}"))),
                "{channel}"
            );
        }
    }
    wait_drained(&server).await;
    let text = metrics_text(&server).await;
    assert_nothing_lost(&text);
    // Every 503 counts as a failed attempt (a connection-level failure would count too).
    assert!(
        metric(&text, "webhook_attempts_failed_total") >= failed as f64,
        "a 503 was taken for a success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_the_backlog_when_it_returns() {
    const SOCKETS: usize = 10;
    const CHANNELS: usize = 20;
    let expected = SOCKETS * CHANNELS * 4;
    // Bound but not listening: every connection is refused until the receiver starts.
    let pending = Receiver::reserve();
    let server = server(json!([endpoint(pending.url("/h"), 8)]), 20, |_| {}).await;
    let mut sockets = JoinSet::new();
    for s in 0..SOCKETS {
        let url = server.ws_url(KEY);
        sockets.spawn(async move {
            let mut client = Client::connect(&url).await;
            let user = format!("u{s}");
            let channels: Vec<String> = (0..CHANNELS)
                .map(|c| format!("presence-down-{s}-{c}"))
                .collect();
            let joins = channels
                .iter()
                .map(|c| subscribe_frame(&client, c, Some(&user)))
                .collect();
            send_all(&mut client, joins).await;
            // The joins' batches are failing by now; the leaves wait behind them.
            tokio::time::sleep(Duration::from_millis(200)).await;
            send_all(
                &mut client,
                channels.iter().map(|c| unsubscribe_frame(c)).collect(),
            )
            .await;
        });
    }
    join_all(sockets).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = metrics_text(&server).await;
    assert!(
        metric(&text, "webhook_attempts_failed_total") > 0.0,
        "the server tried the dead endpoint"
    );
    assert_eq!(
        metric(&text, "webhook_queue_events"),
        expected as f64,
        "everything waits for the receiver"
    );
    assert!(metric(&text, "webhook_queue_oldest_age_seconds") >= 1.0);
    assert_nothing_lost(&text);
    let receiver = pending.start();
    receiver.wait_accepted_events(expected, LONG_WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let received = receiver.received();
    assert!(
        received.iter().all(Received::accepted),
        "the receiver accepts everything"
    );
    assert_eq!(
        check_attempts(&received),
        0,
        "attempts that were refused never reached the receiver"
    );
    let events = accepted_events(&received);
    assert_eq!(events.len(), expected, "no event twice under two ids");
    let channels = by_channel(&events);
    assert_eq!(channels.len(), SOCKETS * CHANNELS);
    for s in 0..SOCKETS {
        for c in 0..CHANNELS {
            let channel = format!("presence-down-{s}-{c}");
            assert_eq!(
                channels.get(&channel),
                Some(&presence_life(&format!("u{s}"))),
                "{channel}"
            );
        }
    }
    wait_drained(&server).await;
    assert_nothing_lost(&metrics_text(&server).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_order_holds_with_several_requests_in_flight() {
    const SOCKETS: usize = 20;
    const CHANNELS: usize = 10;
    const ROUNDS: usize = 4;
    const MAX_IN_FLIGHT: usize = 8;
    let expected = SOCKETS * CHANNELS * ROUNDS * 2;
    let receiver = Receiver::start().await;
    receiver.chaos(0.3, 503, Duration::ZERO..=Duration::from_millis(30));
    let server = server(
        json!([endpoint(receiver.url("/h"), MAX_IN_FLIGHT as u64)]),
        20,
        // Small batches: many requests, several of them in flight.
        |c| c["webhooks"]["batching"]["max_events"] = json!(25),
    )
    .await;
    let mut sockets = JoinSet::new();
    for s in 0..SOCKETS {
        let url = server.ws_url(KEY);
        sockets.spawn(async move {
            let mut client = Client::connect(&url).await;
            let channels: Vec<String> = (0..CHANNELS).map(|c| format!("order-{s}-{c}")).collect();
            for _ in 0..ROUNDS {
                let mut frames = Vec::new();
                for channel in &channels {
                    frames.push(subscribe_frame(&client, channel, None));
                    frames.push(unsubscribe_frame(channel));
                }
                send_all(&mut client, frames).await;
                // The next cycle of each channel meets the previous one in flight or in retry.
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        });
    }
    join_all(sockets).await;
    receiver.wait_accepted_events(expected, LONG_WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let received = receiver.received();
    assert!(check_attempts(&received) > 0, "some batches were retried");
    let events = accepted_events(&received);
    assert_eq!(events.len(), expected, "no event twice under two ids");
    let channels = by_channel(&events);
    assert_eq!(channels.len(), SOCKETS * CHANNELS);
    let life: Vec<String> = ["channel_occupied", "channel_vacated"]
        .repeat(ROUNDS)
        .into_iter()
        .map(str::to_owned)
        .collect();
    for s in 0..SOCKETS {
        for c in 0..CHANNELS {
            let channel = format!("order-{s}-{c}");
            assert_eq!(channels.get(&channel), Some(&life), "{channel}");
        }
    }
    let concurrent = receiver.max_concurrent();
    assert!(
        (2..=MAX_IN_FLIGHT).contains(&concurrent),
        "requests at once: {concurrent}, want 2..={MAX_IN_FLIGHT}"
    );
    wait_drained(&server).await;
    assert_nothing_lost(&metrics_text(&server).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_and_age_metrics_move() {
    let receiver = Receiver::start().await;
    receiver.hold();
    let server = server(json!([endpoint(receiver.url("/h"), 8)]), 50, |_| {}).await;
    let mut client = server.client().await;
    let channels: Vec<String> = (0..5).map(|i| format!("depth-{i}")).collect();
    for channel in &channels {
        client.subscribe(channel).await;
    }
    let bytes: usize = channels
        .iter()
        .map(|c| {
            json!({"name": "channel_occupied", "channel": c})
                .to_string()
                .len()
        })
        .sum();
    // The first batch reached the receiver, which does not answer.
    receiver.wait_until(|r| !r.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = metrics_text(&server).await;
    assert_eq!(metric(&text, "webhook_queue_events"), 5.0);
    assert_eq!(metric(&text, "webhook_queue_bytes"), bytes as f64);
    let age = metric(&text, "webhook_queue_oldest_age_seconds");
    assert!((1.0..10.0).contains(&age), "oldest age {age}");
    let health = up(&server).await;
    assert_eq!(health["queued_events"], 5, "{health}");
    assert_eq!(health["queued_bytes"], bytes, "{health}");
    let oldest = health["oldest_undelivered_ms"].as_u64().expect("a number");
    assert!((1000..10_000).contains(&oldest), "{health}");
    assert_eq!(health["degraded"], false, "{health}");
    assert_eq!(health["dropped_events"], 0, "{health}");
    receiver.release();
    receiver.wait_accepted_events(5, WAIT).await;
    wait_drained(&server).await;
    let health = up(&server).await;
    assert_eq!(
        health,
        json!({"degraded": false, "queued_events": 0, "queued_bytes": 0, "oldest_undelivered_ms": 0,
               "dropped_events": 0, "suppressed_events": 0})
    );
    let mut arrived: Vec<String> = by_channel(&receiver.events_at("/h"))
        .into_iter()
        .map(|(channel, events)| format!("{channel}: {}", events.join(", ")))
        .collect();
    arrived.sort();
    let want: Vec<String> = channels
        .iter()
        .map(|c| format!("{c}: channel_occupied"))
        .collect();
    assert_eq!(arrived, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_budget_drops_openers_and_suppresses_their_closers() {
    const CHANNELS: usize = 20;
    let receiver = Receiver::start().await;
    // Nothing is delivered, so nothing returns to the budget while the channels open and close.
    receiver.hold();
    let server = server(json!([endpoint(receiver.url("/h"), 8)]), 50, |c| {
        c["webhooks"]["queue"] = json!({"max_bytes": 300})
    })
    .await;
    let mut client = server.client().await;
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("tiny-{i:02}")).collect();
    for channel in &channels {
        client.subscribe(channel).await;
    }
    send_all(
        &mut client,
        channels.iter().map(|c| unsubscribe_frame(c)).collect(),
    )
    .await;
    let text = metrics_text(&server).await;
    let dropped = metric(&text, "webhook_queue_dropped_total") as usize;
    let suppressed = metric(&text, "webhook_queue_suppressed_total") as usize;
    // About 47 bytes per event: a handful of openers fit in 300 bytes.
    assert!(
        (1..CHANNELS).contains(&dropped),
        "some but not all openers dropped: {dropped}"
    );
    assert_eq!(
        suppressed, dropped,
        "every closer of a dropped opener is suppressed"
    );
    assert_eq!(
        metric(&text, "webhook_events_dropped_total"),
        (dropped + suppressed) as f64
    );
    let admitted = CHANNELS - dropped;
    assert_eq!(
        metric(&text, "webhook_queue_events"),
        (2 * admitted) as f64,
        "closers of admitted openers go in over the budget"
    );
    let health = up(&server).await;
    assert_eq!(health["degraded"], true, "{health}");
    assert_eq!(health["dropped_events"], dropped, "{health}");
    assert_eq!(health["suppressed_events"], suppressed, "{health}");
    assert_eq!(health["queued_events"], 2 * admitted, "{health}");

    receiver.release();
    receiver.wait_accepted_events(2 * admitted, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let received = receiver.received();
    check_attempts(&received);
    let arrived = by_channel(&accepted_events(&received));
    for (channel, events) in &arrived {
        assert!(channels.contains(channel), "{channel}");
        assert_eq!(
            events,
            &["channel_occupied", "channel_vacated"],
            "{channel}: vacated iff occupied"
        );
    }
    assert_eq!(arrived.len(), admitted);
    wait_drained(&server).await;
    let health = up(&server).await;
    assert_eq!(
        health["degraded"], true,
        "a drop within the last minute: {health}"
    );
    assert_eq!(health["queued_events"], 0, "{health}");

    // Delivered events returned their bytes: a new channel gets through whole.
    client.subscribe("tiny-after").await;
    send_all(&mut client, vec![unsubscribe_frame("tiny-after")]).await;
    receiver.wait_accepted_events(2 * admitted + 2, WAIT).await;
    let arrived = by_channel(&accepted_events(&receiver.received()));
    assert_eq!(
        arrived.get("tiny-after").map(Vec::as_slice),
        Some(&["channel_occupied".to_owned(), "channel_vacated".to_owned()][..])
    );
    let text = metrics_text(&server).await;
    assert_eq!(metric(&text, "webhook_queue_dropped_total"), dropped as f64);
    assert_eq!(
        metric(&text, "webhook_queue_suppressed_total"),
        suppressed as f64
    );
}

#[tokio::test]
async fn shutdown_counts_what_it_could_not_deliver() {
    let receiver = Receiver::start().await;
    receiver.hold();
    let server = server(json!([endpoint(receiver.url("/h"), 8)]), 0, |c| {
        c["shutdown_grace_period"] = json!(1);
    })
    .await;
    let mut client = server.client().await;
    for i in 0..3 {
        client.subscribe(&format!("stuck-{i}")).await;
    }
    receiver.wait_until(|r| !r.is_empty()).await;
    let shared = server.running.shared.clone();
    let started = tokio::time::Instant::now();
    tokio::time::timeout(WAIT, server.running.shutdown())
        .await
        .expect("shutdown within its bound")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // Three occupied at once, three vacated when the socket closed at shutdown: none answered.
    let text = shared.metrics().render();
    assert_eq!(
        metric(&text, "webhook_events_abandoned_total"),
        6.0,
        "{text}"
    );
    receiver.release();
}
