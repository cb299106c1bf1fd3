//! The soak's readings: a latency histogram for the whole run and one for the current window,
//! and every `--soak-sample-secs` a sample of the server (RSS, open descriptors, the queue and
//! connection gauges of its Prometheus endpoint, CPU) beside what the loads have done so far.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::receiver::WebhookCounter;
use crate::soak_load::Progress;
use crate::target::{own_cpu_seconds, Target};

/// Linear sub-buckets per power of two: values are kept within about 3%.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;

/// A log-linear histogram of microseconds: fixed memory however long the run.
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; ((64 - SUB_BITS + 1) * SUB as u32) as usize],
            total: 0,
            max: 0,
        }
    }

    fn bucket(value: u64) -> usize {
        if value < SUB {
            return value as usize;
        }
        let exponent = 63 - value.leading_zeros();
        let sub = (value >> (exponent - SUB_BITS)) - SUB;
        ((exponent - SUB_BITS + 1) as u64 * SUB + sub) as usize
    }

    /// The largest value of bucket `index`.
    fn upper(index: usize) -> u64 {
        let index = index as u64;
        if index < SUB {
            return index;
        }
        let shift = index / SUB - 1;
        let low = (SUB + index % SUB) << shift;
        low + (1 << shift) - 1
    }

    fn record(&mut self, value: u64) {
        self.counts[Self::bucket(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    /// The p-th percentile (the upper bound of its bucket, at most the largest value seen).
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::upper(index).min(self.max);
            }
        }
        self.max
    }

    /// The largest value recorded.
    pub fn max(&self) -> u64 {
        self.max
    }
}

/// Fan-out delivery latencies: the whole run and the window since the last sample.
pub struct Latencies(Mutex<(Histogram, Histogram)>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(Mutex::new((Histogram::new(), Histogram::new())))
    }
}

impl Latencies {
    /// Records one delivery's latency in microseconds.
    pub fn record(&self, micros: u64) {
        let mut both = self.0.lock().unwrap();
        both.0.record(micros);
        both.1.record(micros);
    }

    /// The window's p99 in microseconds; starts a new window.
    fn take_window_p99(&self) -> u64 {
        let mut both = self.0.lock().unwrap();
        let p99 = both.1.percentile(99.0);
        both.1 = Histogram::new();
        p99
    }

    /// Runs `read` on the whole run's histogram.
    pub fn whole<T>(&self, read: impl FnOnce(&Histogram) -> T) -> T {
        read(&self.0.lock().unwrap().0)
    }
}

/// The Prometheus series a sample keeps: (column, metric name without the `herald_` prefix).
const GAUGES: [(&str, &str); 8] = [
    ("connected", "connected"),
    ("subscriptions", "subscriptions"),
    ("webhook_queue_events", "webhook_queue_events"),
    ("webhook_queue_bytes", "webhook_queue_bytes"),
    (
        "webhook_queue_oldest_age_seconds",
        "webhook_queue_oldest_age_seconds",
    ),
    (
        "slow_consumer_disconnects",
        "slow_consumer_disconnects_total",
    ),
    ("webhook_events_dropped", "webhook_events_dropped_total"),
    ("webhook_events_dead", "webhook_events_dead_total"),
];

/// One reading.
pub struct Sample {
    /// Seconds since the load started.
    pub elapsed: f64,
    pub rss_mib: f64,
    pub fds: usize,
    /// The [`GAUGES`] the server exposed (absent when it has no such series).
    pub gauges: HashMap<&'static str, f64>,
    /// Fan-out p99 of the window since the previous sample, in milliseconds.
    pub p99_ms: f64,
    pub deliveries: u64,
    pub webhooks: u64,
    pub client_events: u64,
    pub connects: u64,
    /// Percent of one core since the previous sample.
    pub server_cpu: f64,
    pub bench_cpu: f64,
}

impl Sample {
    /// The header of [`Sample::line`].
    pub fn header() -> String {
        format!(
            "{:>7} {:>8} {:>6} {:>6} {:>6} {:>7} {:>8} {:>6} {:>8} {:>11} {:>9} {:>9} {:>8} {:>6} {:>6}",
            "elapsed", "rss MiB", "fds", "conns", "subs", "whq ev", "whq KiB", "whq s",
            "p99 ms", "deliveries", "webhooks", "client ev", "connects", "srv %", "bench %"
        )
    }

    /// One printed line; `-` where the server exposed no such gauge.
    pub fn line(&self) -> String {
        let gauge = |name: &str, scale: f64, decimals: usize| {
            self.gauges
                .get(name)
                .map_or("-".to_owned(), |v| format!("{:.decimals$}", v / scale))
        };
        format!(
            "{:>6.0}s {:>8.1} {:>6} {:>6} {:>6} {:>7} {:>8} {:>6} {:>8.2} {:>11} {:>9} {:>9} {:>8} {:>6.1} {:>6.1}",
            self.elapsed,
            self.rss_mib,
            self.fds,
            gauge("connected", 1.0, 0),
            gauge("subscriptions", 1.0, 0),
            gauge("webhook_queue_events", 1.0, 0),
            gauge("webhook_queue_bytes", 1024.0, 1),
            gauge("webhook_queue_oldest_age_seconds", 1.0, 2),
            self.p99_ms,
            self.deliveries,
            self.webhooks,
            self.client_events,
            self.connects,
            self.server_cpu,
            self.bench_cpu,
        )
    }

    /// The sample for the JSON report.
    pub fn json(&self) -> Value {
        let mut out = json!({
            "elapsed_s": self.elapsed, "rss_mib": self.rss_mib, "fds": self.fds,
            "p99_ms": self.p99_ms, "deliveries": self.deliveries, "webhooks": self.webhooks,
            "client_events": self.client_events, "connects": self.connects,
            "server_cpu_percent": self.server_cpu, "bench_cpu_percent": self.bench_cpu,
        });
        for (name, value) in &self.gauges {
            out[*name] = json!(value);
        }
        out
    }
}

/// Takes samples of one server and the loads against it.
pub struct Sampler<'a> {
    pub target: &'a Target,
    metrics_url: String,
    client: reqwest::Client,
    /// What the loads did, and their latencies.
    pub progress: Arc<Progress>,
    pub latencies: Arc<Latencies>,
    counter: WebhookCounter,
    started: Instant,
    /// (when, server CPU seconds, own CPU seconds) at the previous sample.
    last: (Instant, f64, f64),
}

impl<'a> Sampler<'a> {
    /// A sampler whose clock starts now; the server's metrics are on `metrics_port`.
    pub fn new(
        target: &'a Target,
        metrics_port: u16,
        progress: Arc<Progress>,
        latencies: Arc<Latencies>,
        counter: WebhookCounter,
    ) -> Sampler<'a> {
        let now = Instant::now();
        Sampler {
            target,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            // No idle connection kept: the server's descriptor count is the load's alone.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client"),
            progress,
            latencies,
            counter,
            started: now,
            last: (now, target.cpu_seconds(), own_cpu_seconds()),
        }
    }

    /// Starts the clock (and the CPU readings) again, now.
    pub fn restart(&mut self) {
        self.started = Instant::now();
        self.last = (self.started, self.target.cpu_seconds(), own_cpu_seconds());
    }

    /// Seconds since the sampler started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Reads everything now.
    pub async fn take(&mut self) -> Sample {
        let gauges = self.scrape().await;
        let now = Instant::now();
        let (cpu, own) = (self.target.cpu_seconds(), own_cpu_seconds());
        let wall = now.duration_since(self.last.0).as_secs_f64().max(1e-9);
        let percent = |used: f64| used / wall * 100.0;
        let sample = Sample {
            elapsed: now.duration_since(self.started).as_secs_f64(),
            rss_mib: self.target.rss_bytes() as f64 / 1024.0 / 1024.0,
            fds: self.target.open_fds(),
            gauges,
            p99_ms: self.latencies.take_window_p99() as f64 / 1000.0,
            deliveries: self.progress.deliveries.load(Ordering::Relaxed),
            webhooks: self.counter.totals().1,
            client_events: self.progress.client_received.load(Ordering::Relaxed),
            connects: self.progress.connects.load(Ordering::Relaxed),
            server_cpu: percent(cpu - self.last.1),
            bench_cpu: percent(own - self.last.2),
        };
        self.last = (now, cpu, own);
        sample
    }

    /// The [`GAUGES`] from the server's metrics endpoint (none when it does not answer).
    pub async fn scrape(&self) -> HashMap<&'static str, f64> {
        let request = self.client.get(&self.metrics_url).send();
        let text = match tokio::time::timeout(Duration::from_secs(5), request).await {
            Ok(Ok(response)) => response.text().await.unwrap_or_default(),
            _ => String::new(),
        };
        let series = parse_metrics(&text);
        GAUGES
            .iter()
            .filter_map(|(column, name)| {
                series
                    .get(&format!("herald_{name}"))
                    .map(|value| (*column, *value))
            })
            .collect()
    }
}

/// Each series name of a Prometheus text exposition with its values summed over labels.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(value) = value {
            *series.entry(line[..name_end].to_owned()).or_default() += value;
        }
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_values_within_a_few_percent() {
        for value in [0, 1, 31, 32, 33, 63, 64, 1000, 123_456, 10_000_000] {
            let upper = Histogram::upper(Histogram::bucket(value));
            assert!(upper >= value, "{value}: {upper}");
            assert!(
                upper as f64 <= value as f64 * 1.04 + 1.0,
                "{value}: {upper}"
            );
        }
        assert_eq!(
            Histogram::bucket(u64::MAX) + 1,
            Histogram::new().counts.len()
        );
    }

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut histogram = Histogram::new();
        for value in 1..=1000 {
            histogram.record(value);
        }
        let p99 = histogram.percentile(99.0);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(histogram.percentile(100.0), 1000);
    }

    #[test]
    fn sums_series_over_labels() {
        let text = "# HELP x y\nherald_connected 12\nherald_webhook_queue_events{app=\"a\"} 3\n\
                    herald_webhook_queue_events{app=\"b\"} 4\n";
        let series = parse_metrics(text);
        assert_eq!(series["herald_connected"], 12.0);
        assert_eq!(series["herald_webhook_queue_events"], 7.0);
    }
}
