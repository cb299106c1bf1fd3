//! Prometheus counters and gauges, rendered in the text exposition format.
//!
//! Plain atomics: the hot path pays one relaxed add per fan-out (not per subscriber).

mod webhook_queue;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use webhook_queue::{WebhookHealth, WebhookQueueGauges, WebhookQueueReading};

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
    use std::time::Duration;

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
