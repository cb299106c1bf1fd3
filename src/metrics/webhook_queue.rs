//! Depth, age and drops of one app's webhook queues.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Within this long after a drop, an app's webhook queue reports itself degraded.
const DEGRADED_AFTER_DROP: Duration = Duration::from_secs(60);

/// Depth and age of one app's webhook queues. The byte count is also what the app's queue
/// budget is checked against, so the gauge and the budget cannot disagree.
pub struct WebhookQueueGauges {
    pub(super) app: String,
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
#[derive(Clone, Debug, Default, PartialEq)]
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

/// The state of one app's webhook queues, for `GET /up/{app_id}`.
#[derive(Clone, Debug)]
pub struct WebhookHealth {
    /// Depth, age and drop counts.
    pub queue: WebhookQueueReading,
    /// A drop within the last minute, or a budget at least 90% used.
    pub degraded: bool,
}

impl WebhookQueueGauges {
    pub(super) fn new(app: &str, endpoints: usize, epoch: Instant) -> WebhookQueueGauges {
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

/// Every app's [`WebhookQueueGauges`], read on each scrape.
#[derive(Default)]
pub(super) struct WebhookQueues(Mutex<Vec<Arc<WebhookQueueGauges>>>);

impl std::fmt::Debug for WebhookQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookQueues")
    }
}

type Field = fn(&WebhookQueueReading) -> Value;

enum Value {
    Gauge(u64),
    Seconds(f64),
    Counter(u64),
}

/// Each family: name, help, and its value in a reading.
const FAMILIES: [(&str, &str, Field); 5] = [
    (
        "webhook_queue_events",
        "Webhook events queued, held or in flight, per app (one per endpoint queue).",
        |r| Value::Gauge(r.events),
    ),
    (
        "webhook_queue_bytes",
        "Serialized bytes of those events, per app.",
        |r| Value::Gauge(r.bytes),
    ),
    (
        "webhook_queue_oldest_age_seconds",
        "Age of the oldest undelivered webhook event, per app (0 when none).",
        |r| Value::Seconds(r.oldest_age.unwrap_or_default().as_secs_f64()),
    ),
    (
        "webhook_queue_dropped",
        "Webhook events dropped because a queue budget was exhausted, per app.",
        |r| Value::Counter(r.dropped),
    ),
    (
        "webhook_queue_suppressed",
        "Closing webhook events not sent because their opening partner was dropped, per app.",
        |r| Value::Counter(r.suppressed),
    ),
];

impl WebhookQueues {
    /// Adds an app's queue (replacing the one it had, when a removed app comes back).
    pub(super) fn add(&self, gauges: Arc<WebhookQueueGauges>) {
        let mut queues = self.0.lock().unwrap_or_else(|e| e.into_inner());
        queues.retain(|g| g.app != gauges.app);
        queues.push(gauges);
    }

    /// Drops the queue of an app that is gone.
    pub(super) fn remove(&self, app: &str) {
        let mut queues = self.0.lock().unwrap_or_else(|e| e.into_inner());
        queues.retain(|g| g.app != app);
    }

    pub(super) fn read(&self, app: &str) -> Option<WebhookQueueReading> {
        let queues = self.0.lock().unwrap_or_else(|e| e.into_inner());
        queues.iter().find(|g| g.app == app).map(|g| g.read())
    }

    fn readings(&self) -> Vec<(String, WebhookQueueReading)> {
        let queues = self.0.lock().unwrap_or_else(|e| e.into_inner());
        queues.iter().map(|g| (g.app.clone(), g.read())).collect()
    }
}

impl Collector for WebhookQueues {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let readings = self.readings();
        for (name, help, field) in FAMILIES {
            let kind = match field(&WebhookQueueReading::default()) {
                Value::Gauge(_) | Value::Seconds(_) => MetricType::Gauge,
                Value::Counter(_) => MetricType::Counter,
            };
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (app, reading) in &readings {
                let label = [("app", app.as_str())];
                let series = family.encode_family(&label)?;
                match field(reading) {
                    Value::Gauge(value) => ConstGauge::new(value).encode(series)?,
                    Value::Seconds(value) => ConstGauge::new(value).encode(series)?,
                    Value::Counter(value) => ConstCounter::new(value).encode(series)?,
                }
            }
        }
        // Queue depth, also as a per-app series under the `app_id` label the others use.
        let mut depth = encoder.encode_descriptor(
            "app_webhook_queue_depth",
            "Webhook events queued, held or in flight, per app (one per endpoint queue).",
            None,
            MetricType::Gauge,
        )?;
        for (app, reading) in &readings {
            let label = [("app_id", app.as_str())];
            ConstGauge::new(reading.events).encode(depth.encode_family(&label)?)?;
        }
        Ok(())
    }
}
