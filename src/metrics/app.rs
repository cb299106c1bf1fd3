//! The figures of one app, labelled `app_id`, each also counted into its server-wide series.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::journal::AppJournal;

/// The label of every per-app series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AppLabel {
    pub app_id: String,
}

/// Webhook delivery latency buckets: 5 ms to about 80 s (retries included).
fn delivery_latency() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

type Counters = Family<AppLabel, Counter>;

/// The per-app families, registered once; [`AppMetrics`] holds one series of each.
pub(super) struct AppFamilies {
    connections: Family<AppLabel, Gauge>,
    subscriptions: Family<AppLabel, Gauge>,
    messages_in: Counters,
    messages_out: Counters,
    webhook_submitted: Counters,
    webhook_delivered: Counters,
    webhook_retried: Counters,
    webhook_dead: Counters,
    webhook_dropped: Counters,
    webhook_latency: Family<AppLabel, Histogram, fn() -> Histogram>,
    rest_requests: Counters,
}

impl AppFamilies {
    /// The families, registered in `registry`.
    pub fn register(registry: &mut Registry) -> AppFamilies {
        let families = AppFamilies {
            connections: Family::default(),
            subscriptions: Family::default(),
            messages_in: Counters::default(),
            messages_out: Counters::default(),
            webhook_submitted: Counters::default(),
            webhook_delivered: Counters::default(),
            webhook_retried: Counters::default(),
            webhook_dead: Counters::default(),
            webhook_dropped: Counters::default(),
            webhook_latency: Family::new_with_constructor(delivery_latency),
            rest_requests: Counters::default(),
        };
        let counters: [(&str, &str, &Counters); 8] = [
            ("app_http_requests", "Authenticated REST API requests, per app.", &families.rest_requests),
            ("app_ws_messages_received", "Frames received from clients, per app.", &families.messages_in),
            ("app_ws_messages_sent", "Frames queued to clients, per app.", &families.messages_out),
            ("app_webhook_events_submitted", "Webhook events handed to an endpoint queue, per app (one per endpoint).", &families.webhook_submitted),
            ("app_webhook_events_delivered", "Webhook events delivered, per app (one per endpoint).", &families.webhook_delivered),
            ("app_webhook_events_retried", "Webhook events in a request that failed and is retried, per app (one per attempt).", &families.webhook_retried),
            ("app_webhook_events_dead", "Webhook events given up on after retries or a final error, per app (one per endpoint).", &families.webhook_dead),
            ("app_webhook_events_dropped", "Webhook events dropped because a queue budget was exhausted, per app (partners suppressed included).", &families.webhook_dropped),
        ];
        for (name, help, family) in counters {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "app_connected",
            "Open WebSocket connections, per app.",
            families.connections.clone(),
        );
        registry.register(
            "app_subscriptions",
            "Channel subscriptions, per app.",
            families.subscriptions.clone(),
        );
        registry.register(
            "app_webhook_delivery_latency_seconds",
            "Time from a webhook event entering its endpoint queue to the 2xx that delivered it, per app.",
            families.webhook_latency.clone(),
        );
        families
    }

    /// Drops the series of an app that is gone; handles still held update nothing shown.
    pub fn forget(&self, app_id: &str) {
        let label = AppLabel {
            app_id: app_id.to_owned(),
        };
        let counters = [
            &self.messages_in,
            &self.messages_out,
            &self.webhook_submitted,
            &self.webhook_delivered,
            &self.webhook_retried,
            &self.webhook_dead,
            &self.webhook_dropped,
            &self.rest_requests,
        ];
        for family in counters {
            family.remove(&label);
        }
        self.connections.remove(&label);
        self.subscriptions.remove(&label);
        self.webhook_latency.remove(&label);
    }

    /// The series of one app (created at zero if new).
    pub fn of(&self, app_id: &str, totals: &Totals, journal: Arc<AppJournal>) -> AppMetrics {
        let label = AppLabel {
            app_id: app_id.to_owned(),
        };
        AppMetrics {
            connections: self.connections.get_or_create_owned(&label),
            subscriptions: self.subscriptions.get_or_create_owned(&label),
            messages_in: self.messages_in.get_or_create_owned(&label),
            messages_out: self.messages_out.get_or_create_owned(&label),
            webhook_submitted: self.webhook_submitted.get_or_create_owned(&label),
            webhook_delivered: self.webhook_delivered.get_or_create_owned(&label),
            webhook_retried: self.webhook_retried.get_or_create_owned(&label),
            webhook_dead: self.webhook_dead.get_or_create_owned(&label),
            webhook_dropped: self.webhook_dropped.get_or_create_owned(&label),
            webhook_latency: self.webhook_latency.get_or_create_owned(&label),
            rest_requests: self.rest_requests.get_or_create_owned(&label),
            totals: totals.clone(),
            journal,
        }
    }
}

/// The server-wide series that are the sum of the per-app ones.
#[derive(Clone, Default)]
pub(super) struct Totals {
    pub connections: Gauge,
    pub connections_total: Counter,
    pub subscriptions: Gauge,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub webhook_delivered: Counter,
    pub webhook_dead: Counter,
    pub webhook_dropped: Counter,
}

/// One app's series. Cloned handles of shared atomics: an update is one relaxed add per
/// series, with no lookup and no lock (the histogram takes a short uncontended one).
pub struct AppMetrics {
    connections: Gauge,
    subscriptions: Gauge,
    messages_in: Counter,
    messages_out: Counter,
    webhook_submitted: Counter,
    webhook_delivered: Counter,
    webhook_retried: Counter,
    webhook_dead: Counter,
    webhook_dropped: Counter,
    webhook_latency: Histogram,
    rest_requests: Counter,
    totals: Totals,
    journal: Arc<AppJournal>,
}

/// What the console's overview shows of an app, read from its series (and, in a cluster,
/// written to Redis for the other nodes' overviews).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppFigures {
    pub connections: i64,
    pub subscriptions: i64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub rest_requests: u64,
    pub webhook_delivered: u64,
    pub webhook_retried: u64,
    pub webhook_dead: u64,
}

/// Figures of several nodes add up to the cluster's.
impl std::ops::AddAssign for AppFigures {
    fn add_assign(&mut self, other: AppFigures) {
        self.connections += other.connections;
        self.subscriptions += other.subscriptions;
        self.messages_in += other.messages_in;
        self.messages_out += other.messages_out;
        self.rest_requests += other.rest_requests;
        self.webhook_delivered += other.webhook_delivered;
        self.webhook_retried += other.webhook_retried;
        self.webhook_dead += other.webhook_dead;
    }
}

impl AppMetrics {
    /// The app's console journal.
    pub fn journal(&self) -> &AppJournal {
        &self.journal
    }

    /// One authenticated REST API request of the app.
    pub fn rest_request(&self) {
        self.rest_requests.inc();
    }

    /// The figures the console shows, as they are now.
    pub fn figures(&self) -> AppFigures {
        AppFigures {
            connections: self.connections.get(),
            subscriptions: self.subscriptions.get(),
            messages_in: self.messages_in.get(),
            messages_out: self.messages_out.get(),
            rest_requests: self.rest_requests.get(),
            webhook_delivered: self.webhook_delivered.get(),
            webhook_retried: self.webhook_retried.get(),
            webhook_dead: self.webhook_dead.get(),
        }
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connection(&self, delta: i64) {
        self.connections.inc_by(delta);
        self.totals.connections.inc_by(delta);
        if delta > 0 {
            self.totals.connections_total.inc();
        }
    }

    /// A subscription added (`+1`) or removed (`-1`).
    pub fn subscription(&self, delta: i64) {
        self.subscriptions.inc_by(delta);
        self.totals.subscriptions.inc_by(delta);
    }

    /// One frame received from a client.
    pub fn message_in(&self) {
        self.messages_in.inc();
        self.totals.messages_in.inc();
    }

    /// `count` frames queued to sockets.
    pub fn messages_out(&self, count: usize) {
        self.messages_out.inc_by(count as u64);
        self.totals.messages_out.inc_by(count as u64);
    }

    /// `events` webhook events handed to endpoint queues.
    pub fn webhook_submitted(&self, events: usize) {
        self.webhook_submitted.inc_by(events as u64);
    }

    /// Webhook events delivered, each after waiting `waited` since it was queued.
    pub fn webhook_delivered(&self, waited: impl ExactSizeIterator<Item = Duration>) {
        let events = waited.len() as u64;
        for wait in waited {
            self.webhook_latency.observe(wait.as_secs_f64());
        }
        self.webhook_delivered.inc_by(events);
        self.totals.webhook_delivered.inc_by(events);
    }

    /// Webhook events delivered whose wait is not known (a cluster stream's batch).
    pub fn webhook_delivered_unmeasured(&self, events: usize) {
        self.webhook_delivered.inc_by(events as u64);
        self.totals.webhook_delivered.inc_by(events as u64);
    }

    /// `events` webhook events in a failed request that will be retried.
    pub fn webhook_retried(&self, events: usize) {
        self.webhook_retried.inc_by(events as u64);
    }

    /// Webhook events given up on after their retry window or a final error.
    pub fn webhook_dead(&self, events: usize) {
        self.webhook_dead.inc_by(events as u64);
        self.totals.webhook_dead.inc_by(events as u64);
    }

    /// One webhook event dropped because a queue was full.
    pub fn webhook_dropped(&self) {
        self.webhook_dropped.inc();
        self.totals.webhook_dropped.inc();
    }
}
