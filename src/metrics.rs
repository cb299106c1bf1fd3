//! Prometheus counters and gauges, rendered in the text exposition format.
//!
//! Plain atomics: the hot path pays one relaxed add per fan-out (not per subscriber).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Within this long after a drop, an app's webhook queue reports itself degraded.
const DEGRADED_AFTER_DROP: Duration = Duration::from_secs(60);

/// Depth and age of one app's webhook queues. The byte count is also what the app's queue
/// budget is checked against, so the gauge and the budget cannot disagree.
pub struct WebhookQueueGauges {
    app: String,
    epoch: Instant,
    events: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    suppressed: AtomicU64,
    /// Microseconds since `epoch` of the last drop, plus one; 0 = never.
    last_drop: AtomicU64,
    /// Per endpoint: microseconds since `epoch` at which its oldest undelivered event was
    /// queued, plus one; 0 = nothing undelivered.
    oldest: Vec<AtomicU64>,
}

/// A reading of [`WebhookQueueGauges`].
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookQueueReading {
    /// Events queued, held or in flight (one per endpoint queue that holds it).
    pub events: u64,
    /// Their serialized JSON bytes.
    pub bytes: u64,
    /// Age of the oldest event waiting for delivery, if any.
    pub oldest_age: Option<Duration>,
    /// Events dropped because a budget was exhausted.
    pub dropped: u64,
    /// Closing events not sent because their opening partner was dropped.
    pub suppressed: u64,
    /// A drop happened within the last minute.
    pub dropped_recently: bool,
}

impl WebhookQueueGauges {
    fn new(app: &str, endpoints: usize, epoch: Instant) -> WebhookQueueGauges {
        WebhookQueueGauges {
            app: app.to_owned(),
            epoch,
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            last_drop: AtomicU64::new(0),
            oldest: (0..endpoints).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64 + 1
    }

    /// Queued bytes right now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Adds `bytes` to the queue if that keeps it within `max`; forced additions always succeed.
    pub fn try_add(&self, events: u64, bytes: u64, max: u64, force: bool) -> bool {
        let before = self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if !force && bytes > 0 && before + bytes > max {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        self.events.fetch_add(events, Ordering::Relaxed);
        true
    }

    /// Takes delivered (or given-up) events off the queue.
    pub fn remove(&self, events: u64, bytes: u64) {
        self.events.fetch_sub(events, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// An event was dropped (`suppressed`: because its partner was).
    pub fn record_drop(&self, suppressed: bool) {
        let counter = if suppressed {
            &self.suppressed
        } else {
            &self.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_drop
            .store(self.stamp(Instant::now()), Ordering::Relaxed);
    }

    /// The queue time of endpoint `index`'s oldest undelivered event.
    pub fn set_oldest(&self, index: usize, since: Option<Instant>) {
        if let Some(slot) = self.oldest.get(index) {
            slot.store(since.map_or(0, |at| self.stamp(at)), Ordering::Relaxed);
        }
    }

    /// The current depth, age and drop counts.
    pub fn read(&self) -> WebhookQueueReading {
        let now = self.stamp(Instant::now());
        let oldest = self
            .oldest
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|&stamp| stamp != 0)
            .min();
        let last_drop = self.last_drop.load(Ordering::Relaxed);
        WebhookQueueReading {
            events: self.events.load(Ordering::Relaxed),
            bytes: self.bytes(),
            oldest_age: oldest.map(|stamp| Duration::from_micros(now.saturating_sub(stamp))),
            dropped: self.dropped.load(Ordering::Relaxed),
            suppressed: self.suppressed.load(Ordering::Relaxed),
            dropped_recently: last_drop != 0
                && Duration::from_micros(now - last_drop) < DEGRADED_AFTER_DROP,
        }
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The server's metrics.
pub struct Metrics {
    prefix: String,
    connections: AtomicI64,
    connections_total: AtomicU64,
    subscriptions: AtomicI64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    slow_consumer_disconnects: AtomicU64,
    rest_requests: Mutex<BTreeMap<u16, u64>>,
    webhook_events_delivered: AtomicU64,
    webhook_posts_delivered: AtomicU64,
    webhook_attempts_failed: AtomicU64,
    webhook_events_dead: AtomicU64,
    webhook_events_dropped: AtomicU64,
    webhook_events_abandoned: AtomicU64,
    webhook_queues: Mutex<Vec<Arc<WebhookQueueGauges>>>,
    epoch: Instant,
}

impl Metrics {
    /// Metrics whose names start with `prefix`.
    pub fn new(prefix: &str) -> Metrics {
        Metrics {
            prefix: prefix.to_owned(),
            connections: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            subscriptions: AtomicI64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            slow_consumer_disconnects: AtomicU64::new(0),
            rest_requests: Mutex::new(BTreeMap::new()),
            webhook_events_delivered: AtomicU64::new(0),
            webhook_posts_delivered: AtomicU64::new(0),
            webhook_attempts_failed: AtomicU64::new(0),
            webhook_events_dead: AtomicU64::new(0),
            webhook_events_dropped: AtomicU64::new(0),
            webhook_events_abandoned: AtomicU64::new(0),
            webhook_queues: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        }
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connection(&self, delta: i64) {
        self.connections.fetch_add(delta, Ordering::Relaxed);
        if delta > 0 {
            self.connections_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A subscription added (`+1`) or removed (`-1`).
    pub fn subscription(&self, delta: i64) {
        self.subscriptions.fetch_add(delta, Ordering::Relaxed);
    }

    /// One frame received from a client.
    pub fn message_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    /// `count` frames queued to sockets.
    pub fn messages_out(&self, count: usize) {
        self.messages_out.fetch_add(count as u64, Ordering::Relaxed);
    }

    /// A socket closed because its outbound queue overflowed.
    pub fn slow_consumer_disconnect(&self) {
        self.slow_consumer_disconnects
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A REST API request answered with `status`.
    pub fn rest_request(&self, status: u16) {
        let mut by_status = self.rest_requests.lock().unwrap_or_else(|e| e.into_inner());
        *by_status.entry(status).or_default() += 1;
    }

    /// A webhook request carrying `events` events succeeded.
    pub fn webhook_delivered(&self, events: usize) {
        self.webhook_posts_delivered.fetch_add(1, Ordering::Relaxed);
        self.webhook_events_delivered
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    /// One webhook attempt failed (it may be retried).
    pub fn webhook_attempt_failed(&self) {
        self.webhook_attempts_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Webhook events given up on after their retry window or a final error.
    pub fn webhook_events_dead(&self, events: usize) {
        self.webhook_events_dead
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Webhook events dropped because a queue was full.
    pub fn webhook_events_dropped(&self, events: usize) {
        self.webhook_events_dropped
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Webhook events still undelivered when the shutdown bound ran out.
    pub fn webhook_events_abandoned(&self, events: u64) {
        self.webhook_events_abandoned
            .fetch_add(events, Ordering::Relaxed);
    }

    /// Registers the webhook queue gauges of an app with `endpoints` endpoints.
    pub fn register_webhook_queue(&self, app: &str, endpoints: usize) -> Arc<WebhookQueueGauges> {
        let gauges = Arc::new(WebhookQueueGauges::new(app, endpoints, self.epoch));
        self.webhook_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(gauges.clone());
        gauges
    }

    /// The webhook queue reading of one app, when it has endpoints.
    pub fn webhook_queue(&self, app: &str) -> Option<WebhookQueueReading> {
        self.webhook_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|g| g.app == app)
            .map(|g| g.read())
    }

    fn render_webhook_queues(&self, out: &mut String) {
        let p = &self.prefix;
        let readings: Vec<(String, WebhookQueueReading)> = self
            .webhook_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|g| (label(&g.app), g.read()))
            .collect();
        type Field = fn(&WebhookQueueReading) -> String;
        let families: [(&str, &str, &str, Field); 5] = [
            ("webhook_queue_events", "gauge", "Webhook events queued, held or in flight, per app (one per endpoint queue).", |r| r.events.to_string()),
            ("webhook_queue_bytes", "gauge", "Serialized bytes of those events, per app.", |r| r.bytes.to_string()),
            ("webhook_queue_oldest_age_seconds", "gauge", "Age of the oldest undelivered webhook event, per app (0 when none).", |r| format!("{:.3}", r.oldest_age.unwrap_or_default().as_secs_f64())),
            ("webhook_queue_dropped_total", "counter", "Webhook events dropped because a queue budget was exhausted, per app.", |r| r.dropped.to_string()),
            ("webhook_queue_suppressed_total", "counter", "Closing webhook events not sent because their opening partner was dropped, per app.", |r| r.suppressed.to_string()),
        ];
        for (name, kind, help, field) in families {
            let _ = writeln!(out, "# HELP {p}{name} {help}\n# TYPE {p}{name} {kind}");
            for (app, reading) in &readings {
                let _ = writeln!(out, "{p}{name}{{app=\"{app}\"}} {}", field(reading));
            }
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let p = &self.prefix;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {p}{name} {help}\n# TYPE {p}{name} {kind}\n{p}{name} {value}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric(
            "connected",
            "gauge",
            "Open WebSocket connections.",
            self.connections.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "connections_total",
            "counter",
            "WebSocket connections accepted.",
            load(&self.connections_total),
        );
        metric(
            "subscriptions",
            "gauge",
            "Channel subscriptions.",
            self.subscriptions.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "ws_messages_received_total",
            "counter",
            "Frames received from clients.",
            load(&self.messages_in),
        );
        metric(
            "ws_messages_sent_total",
            "counter",
            "Frames queued to clients.",
            load(&self.messages_out),
        );
        metric(
            "slow_consumer_disconnects_total",
            "counter",
            "Sockets closed with 4100 because their outbound queue overflowed.",
            load(&self.slow_consumer_disconnects),
        );
        metric(
            "webhook_events_delivered_total",
            "counter",
            "Webhook events delivered.",
            load(&self.webhook_events_delivered),
        );
        metric(
            "webhook_requests_delivered_total",
            "counter",
            "Webhook requests answered with 2xx.",
            load(&self.webhook_posts_delivered),
        );
        metric(
            "webhook_attempts_failed_total",
            "counter",
            "Webhook attempts that failed (retried or not).",
            load(&self.webhook_attempts_failed),
        );
        metric(
            "webhook_events_dead_total",
            "counter",
            "Webhook events given up on after retries or a final error.",
            load(&self.webhook_events_dead),
        );
        metric(
            "webhook_events_dropped_total",
            "counter",
            "Webhook events dropped because a queue budget was exhausted (partners suppressed included).",
            load(&self.webhook_events_dropped),
        );
        metric(
            "webhook_events_abandoned_total",
            "counter",
            "Webhook events still undelivered when the shutdown bound ran out.",
            load(&self.webhook_events_abandoned),
        );
        let _ = writeln!(
            out,
            "# HELP {p}http_requests_total REST API requests by status.\n# TYPE {p}http_requests_total counter"
        );
        for (status, count) in self
            .rest_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{p}http_requests_total{{status=\"{status}\"}} {count}");
        }
        self.render_webhook_queues(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::new("h_");
        m.connection(1);
        m.rest_request(200);
        m.rest_request(200);
        m.rest_request(401);
        let text = m.render();
        assert!(text.contains("h_connected 1\n"), "{text}");
        assert!(
            text.contains("h_http_requests_total{status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("h_http_requests_total{status=\"401\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn webhook_queue_gauges_count_and_bound() {
        let m = Metrics::new("h_");
        let g = m.register_webhook_queue("a\"b", 2);
        assert!(g.try_add(2, 100, 150, false));
        assert!(!g.try_add(1, 60, 150, false), "over the budget");
        assert!(g.try_add(1, 60, 150, true), "forced");
        g.set_oldest(1, Some(Instant::now()));
        std::thread::sleep(Duration::from_millis(20));
        let reading = m.webhook_queue("a\"b").unwrap();
        assert_eq!((reading.events, reading.bytes), (3, 160));
        assert!(reading.oldest_age.unwrap() >= Duration::from_millis(20));
        g.remove(3, 160);
        g.record_drop(false);
        let text = m.render();
        assert!(
            text.contains("h_webhook_queue_bytes{app=\"a\\\"b\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("h_webhook_queue_dropped_total{app=\"a\\\"b\"} 1\n"),
            "{text}"
        );
        assert!(m.webhook_queue("a\"b").unwrap().dropped_recently);
    }
}
