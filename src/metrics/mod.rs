//! Prometheus counters, gauges and histograms on `prometheus-client`, rendered in the text
//! exposition format (0.0.4).
//!
//! Server-wide series keep the names they always had; per-app series carry an `app_id` label.
//! The hot path holds [`AppMetrics`] handles: one relaxed add per series per fan-out (not per
//! subscriber), no lookup.

mod app;
mod hooks;
mod redis;
mod webhook_queue;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use app::{AppFigures, AppMetrics};
pub use hooks::{HookMetrics, HookOutcome};
pub use redis::RedisLinkMetrics;
pub use webhook_queue::{WebhookHealth, WebhookQueueGauges, WebhookQueueReading};

use crate::journal::{AppJournal, Journal};
use app::{AppFamilies, Totals};
use hooks::HookFamilies;
use webhook_queue::WebhookQueues;

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    totals: Totals,
    families: AppFamilies,
    hooks: HookFamilies,
    /// Each app's series, resolved once (an app a reload adds on first use).
    apps: RwLock<HashMap<String, Arc<AppMetrics>>>,
    slow_consumer_disconnects: Counter,
    tls_handshake_failures: Counter,
    rate_limited: Counter,
    rate_limit_local_fallbacks: Counter,
    /// 1 while the app database answers (always 1 with apps from the file).
    app_database_up: Gauge,
    rest_requests: Family<StatusLabel, Counter>,
    rest_latency: Histogram,
    webhook_requests_delivered: Counter,
    webhook_attempts_failed: Counter,
    webhook_events_abandoned: Counter,
    webhook_queues: Arc<WebhookQueues>,
    cluster_resyncs: Counter,
    redis_failovers: Counter,
    redis_link: RedisLinkMetrics,
    journal: Journal,
    epoch: Instant,
}

impl Metrics {
    /// Metrics whose names start with `prefix` (joined with `_`), with per-app series for
    /// `app_ids` present from the start, and no console journal.
    pub fn new<'a>(prefix: &str, app_ids: impl IntoIterator<Item = &'a str> + Clone) -> Metrics {
        Metrics::with_console(prefix, app_ids, false)
    }

    /// The same, with each app's console journal recording when `console` is true.
    pub fn with_console<'a>(
        prefix: &str,
        app_ids: impl IntoIterator<Item = &'a str> + Clone,
        console: bool,
    ) -> Metrics {
        let journal = Journal::new(console, app_ids.clone());
        let mut registry = match prefix.trim_end_matches('_') {
            "" => Registry::default(),
            prefix => Registry::with_prefix(prefix),
        };
        let totals = Totals::default();
        register_totals(&mut registry, &totals);
        let families = AppFamilies::register(&mut registry);
        let hooks = HookFamilies::register(&mut registry);
        let apps = app_ids
            .into_iter()
            .map(|id| {
                (
                    id.to_owned(),
                    Arc::new(families.of(id, &totals, journal.app(id))),
                )
            })
            .collect();
        let metrics = Metrics {
            totals,
            families,
            hooks,
            apps: RwLock::new(apps),
            slow_consumer_disconnects: Counter::default(),
            tls_handshake_failures: Counter::default(),
            rate_limited: Counter::default(),
            rate_limit_local_fallbacks: Counter::default(),
            app_database_up: Gauge::default(),
            rest_requests: Family::default(),
            // 0.1 ms to about 3 s.
            rest_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            webhook_requests_delivered: Counter::default(),
            webhook_attempts_failed: Counter::default(),
            webhook_events_abandoned: Counter::default(),
            webhook_queues: Arc::new(WebhookQueues::default()),
            cluster_resyncs: Counter::default(),
            redis_failovers: Counter::default(),
            redis_link: RedisLinkMetrics::default(),
            epoch: Instant::now(),
            journal,
            registry,
        };
        metrics.register_server_series()
    }

    fn register_server_series(mut self) -> Metrics {
        self.register_edge_counters();
        let r = &mut self.registry;
        let counters = [
            (
                "slow_consumer_disconnects",
                "Sockets closed with 4100 because their outbound queue overflowed.",
                &self.slow_consumer_disconnects,
            ),
            (
                "webhook_requests_delivered",
                "Webhook requests answered with 2xx.",
                &self.webhook_requests_delivered,
            ),
            (
                "webhook_attempts_failed",
                "Webhook attempts that failed (retried or not).",
                &self.webhook_attempts_failed,
            ),
            (
                "webhook_events_abandoned",
                "Webhook events still undelivered when the shutdown bound ran out.",
                &self.webhook_events_abandoned,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "http_requests",
            "REST API requests by status.",
            self.rest_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "REST API request latency, from the request head to the response head.",
            self.rest_latency.clone(),
        );
        r.register(
            "cluster_resyncs",
            "Times this cluster node put its sockets back into Redis after an outage or a data loss.",
            self.cluster_resyncs.clone(),
        );
        self.app_database_up.set(1);
        r.register(
            "app_database_up",
            "1 while the app database answers lookups, 0 after one failed (always 1 with apps from the file).",
            self.app_database_up.clone(),
        );
        r.register(
            "redis_failovers",
            "Times this cluster node followed Sentinel to a new primary.",
            self.redis_failovers.clone(),
        );
        self.redis_link.register(r);
        r.register_collector(Box::new(self.webhook_queues.clone()));
        self
    }

    /// The counters of what the edge refuses: failed TLS handshakes, rate limits and quotas.
    fn register_edge_counters(&mut self) {
        let counters = [
            (
                "tls_handshake_failures",
                "TLS handshakes that failed or stalled past http_api.header_timeout_ms.",
                &self.tls_handshake_failures,
            ),
            (
                "rate_limited",
                "Requests and upgrades refused with 429 by a rate limit or an app's quota.",
                &self.rate_limited,
            ),
            (
                "rate_limit_local_fallbacks",
                "Rate-limit and quota counts made in this node's memory because Redis could not be reached.",
                &self.rate_limit_local_fallbacks,
            ),
        ];
        for (name, help, counter) in counters {
            self.registry.register(name, help, counter.clone());
        }
    }

    /// Whether the app database answered the last lookup.
    pub fn app_database_answered(&self, up: bool) {
        self.app_database_up.set(i64::from(up));
    }

    /// This cluster node resynced with Redis.
    pub fn cluster_resync(&self) {
        self.cluster_resyncs.inc();
    }

    /// The series of this cluster node's Redis connections.
    pub fn redis_link(&self) -> &RedisLinkMetrics {
        &self.redis_link
    }

    /// This cluster node moved its connections to a new primary.
    pub fn redis_failover(&self) {
        self.redis_failovers.inc();
    }

    /// Failovers this cluster node followed so far.
    pub fn redis_failovers(&self) -> u64 {
        self.redis_failovers.get()
    }

    /// The series of one app; an app not given to [`Metrics::new`] gets its series now.
    pub fn app(&self, app_id: &str) -> Arc<AppMetrics> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        if let Some(app) = apps.get(app_id) {
            return app.clone();
        }
        drop(apps);
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let app = apps.entry(app_id.to_owned()).or_insert_with(|| {
            let journal = self.journal.app(app_id);
            Arc::new(self.families.of(app_id, &self.totals, journal))
        });
        app.clone()
    }

    /// Drops the per-app series of an app a reload removed (its decision hooks' with them).
    pub fn forget_app(&self, app_id: &str) {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        apps.remove(app_id);
        self.webhook_queues.remove(app_id);
        self.families.forget(app_id);
        self.hooks.forget(app_id);
    }

    /// The console journal of one app.
    pub fn journal(&self, app_id: &str) -> Arc<AppJournal> {
        self.journal.app(app_id)
    }

    /// The series of one app's decision hook of type `hook` (created at zero).
    pub fn decision_hook(&self, app_id: &str, hook: &'static str) -> HookMetrics {
        self.hooks.of(app_id, hook)
    }

    /// A socket closed because its outbound queue overflowed.
    pub fn slow_consumer_disconnect(&self) {
        self.slow_consumer_disconnects.inc();
    }

    /// A request or upgrade refused by a rate limit or a quota.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// A shared window counted locally because Redis could not be reached.
    pub fn rate_limit_local_fallback(&self) {
        self.rate_limit_local_fallbacks.inc();
    }

    /// A TLS handshake failed or stalled.
    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// A REST API request answered with `status` after `elapsed`.
    pub fn rest_request(&self, status: u16, elapsed: Duration) {
        self.rest_requests
            .get_or_create(&StatusLabel { status })
            .inc();
        self.rest_latency.observe(elapsed.as_secs_f64());
    }

    /// A webhook request succeeded.
    pub fn webhook_request_delivered(&self) {
        self.webhook_requests_delivered.inc();
    }

    /// One webhook attempt failed (it may be retried).
    pub fn webhook_attempt_failed(&self) {
        self.webhook_attempts_failed.inc();
    }

    /// Webhook events still undelivered when the shutdown bound ran out.
    pub fn webhook_events_abandoned(&self, events: u64) {
        self.webhook_events_abandoned.inc_by(events);
    }

    /// Registers the webhook queue gauges of an app with `endpoints` endpoints.
    pub fn register_webhook_queue(&self, app: &str, endpoints: usize) -> Arc<WebhookQueueGauges> {
        let gauges = Arc::new(WebhookQueueGauges::new(app, endpoints, self.epoch));
        self.webhook_queues.add(gauges.clone());
        gauges
    }

    /// The webhook queue reading of one app, when it has endpoints.
    pub fn webhook_queue(&self, app: &str) -> Option<WebhookQueueReading> {
        self.webhook_queues.read(app)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// Registers the server-wide sums of the per-app series under their historical names.
fn register_totals(registry: &mut Registry, totals: &Totals) {
    registry.register(
        "connected",
        "Open WebSocket connections.",
        totals.connections.clone(),
    );
    registry.register(
        "subscriptions",
        "Channel subscriptions.",
        totals.subscriptions.clone(),
    );
    let counters = [
        ("connections", "WebSocket connections accepted.", &totals.connections_total),
        ("ws_messages_received", "Frames received from clients.", &totals.messages_in),
        ("ws_messages_sent", "Frames queued to clients.", &totals.messages_out),
        ("webhook_events_delivered", "Webhook events delivered.", &totals.webhook_delivered),
        ("webhook_events_dead", "Webhook events given up on after retries or a final error.", &totals.webhook_dead),
        ("webhook_events_dropped", "Webhook events dropped because a queue budget was exhausted (partners suppressed included).", &totals.webhook_dropped),
    ];
    for (name, help, counter) in counters {
        registry.register(name, help, counter.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn an_app_added_at_run_time_gets_series_and_a_removed_one_loses_them() {
        let m = Metrics::new("h_", ["a"]);
        m.app("b").rest_request();
        assert!(m.render().contains("app_id=\"b\""), "{}", m.render());
        m.app("a").rest_request();
        m.register_webhook_queue("a", 1);
        m.register_webhook_queue("a", 2);
        let queues = |m: &Metrics| {
            m.render()
                .matches("webhook_queue_events{app=\"a\"}")
                .count()
        };
        assert_eq!(
            queues(&m),
            1,
            "registered again, shown once: {}",
            m.render()
        );
        m.forget_app("a");
        assert!(!m.render().contains("app_id=\"a\""), "{}", m.render());
        assert_eq!(queues(&m), 0, "{}", m.render());
        m.app("a").rest_request();
        assert!(
            has(&m.render(), "h_app_http_requests_total{app_id=\"a\"} 1"),
            "{}",
            m.render()
        );
    }

    #[test]
    fn renders_server_series_under_their_names() {
        let m = Metrics::new("h_", ["a"]);
        m.app("a").connection(1);
        m.rest_request(200, Duration::from_millis(3));
        m.rest_request(200, Duration::from_millis(3));
        m.rest_request(401, Duration::from_millis(1));
        let text = m.render();
        for line in [
            "h_connected 1",
            "h_connections_total 1",
            "h_http_requests_total{status=\"200\"} 2",
            "h_http_requests_total{status=\"401\"} 1",
            "h_http_request_duration_seconds_count 3",
            "# TYPE h_http_request_duration_seconds histogram",
        ] {
            assert!(has(&text, line), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn per_app_series_start_at_zero_and_add_up_to_the_totals() {
        let m = Metrics::new("herald_", ["a", "b"]);
        let text = m.render();
        for app in ["a", "b"] {
            for name in [
                "app_connected",
                "app_ws_messages_sent_total",
                "app_webhook_events_delivered_total",
            ] {
                let line = format!("herald_{name}{{app_id=\"{app}\"}} 0");
                assert!(has(&text, &line), "{line:?} in\n{text}");
            }
        }
        let (a, b) = (m.app("a"), m.app("b"));
        a.connection(1);
        b.connection(1);
        b.connection(-1);
        a.message_in();
        a.messages_out(5);
        b.messages_out(2);
        a.webhook_submitted(2);
        a.webhook_delivered([Duration::from_millis(10), Duration::from_millis(30)].into_iter());
        a.webhook_retried(1);
        b.webhook_dead(1);
        b.webhook_dropped();
        let text = m.render();
        for line in [
            "herald_app_connected{app_id=\"a\"} 1",
            "herald_app_connected{app_id=\"b\"} 0",
            "herald_connected 1",
            "herald_connections_total 2",
            "herald_app_ws_messages_received_total{app_id=\"a\"} 1",
            "herald_ws_messages_received_total 1",
            "herald_app_ws_messages_sent_total{app_id=\"a\"} 5",
            "herald_app_ws_messages_sent_total{app_id=\"b\"} 2",
            "herald_ws_messages_sent_total 7",
            "herald_app_webhook_events_submitted_total{app_id=\"a\"} 2",
            "herald_app_webhook_events_delivered_total{app_id=\"a\"} 2",
            "herald_webhook_events_delivered_total 2",
            "herald_app_webhook_events_retried_total{app_id=\"a\"} 1",
            "herald_app_webhook_events_dead_total{app_id=\"b\"} 1",
            "herald_webhook_events_dead_total 1",
            "herald_app_webhook_events_dropped_total{app_id=\"b\"} 1",
            "herald_webhook_events_dropped_total 1",
            "herald_app_webhook_delivery_latency_seconds_count{app_id=\"a\"} 2",
            "herald_app_webhook_delivery_latency_seconds_bucket{app_id=\"a\",le=\"0.02\"} 1",
        ] {
            assert!(has(&text, line), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn webhook_queue_gauges_count_and_bound() {
        let m = Metrics::new("h_", []);
        let g = m.register_webhook_queue("a\"b", 2);
        assert!(g.try_add(2, 100, 150, false));
        assert!(!g.try_add(1, 60, 150, false), "over the budget");
        assert!(g.try_add(1, 60, 150, true), "forced");
        g.set_oldest(1, Some(Instant::now()));
        std::thread::sleep(Duration::from_millis(20));
        let reading = m.webhook_queue("a\"b").unwrap();
        assert_eq!((reading.events, reading.bytes), (3, 160));
        assert!(reading.oldest_age.unwrap() >= Duration::from_millis(20));
        assert!(has(
            &m.render(),
            "h_app_webhook_queue_depth{app_id=\"a\\\"b\"} 3"
        ));
        g.remove(3, 160);
        g.record_drop(false);
        let text = m.render();
        for line in [
            "h_webhook_queue_bytes{app=\"a\\\"b\"} 0",
            "h_webhook_queue_dropped_total{app=\"a\\\"b\"} 1",
            "# TYPE h_webhook_queue_dropped_total counter",
            "# TYPE h_webhook_queue_oldest_age_seconds gauge",
        ] {
            assert!(has(&text, line), "{line:?} in\n{text}");
        }
        assert!(m.webhook_queue("a\"b").unwrap().dropped_recently);
    }
}
