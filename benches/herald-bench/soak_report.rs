//! The soak's figures: drift of memory and descriptors between the warm-up and the end,
//! latency over the whole run, and every count of lost, duplicated and out-of-order events.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use crate::receiver::WebhookCounter;
use crate::report::Report;
use crate::scenarios::lost_and_duplicated;
use crate::soak::{Outcome, Sizes};
use crate::soak_churn::{visit_webhooks, PRESENCE_PREFIX, VISIT_PREFIX};
use crate::soak_load::Progress;
use crate::soak_sampler::{Latencies, Sample};

/// Everything the soak gathered, for [`build`].
pub struct Findings<'a> {
    pub sizes: &'a Sizes,
    /// Seconds the load ran.
    pub load_secs: f64,
    /// Server RSS (MiB) and descriptors before the first socket, and after the last closed.
    pub before: (f64, usize),
    pub after: (f64, usize),
    pub samples: Vec<Sample>,
    /// The server's gauges once every socket closed and the webhooks settled.
    pub final_gauges: HashMap<&'static str, f64>,
    pub outcome: Outcome,
    pub settle_secs: f64,
    pub progress: &'a Progress,
    pub latencies: &'a Latencies,
    pub counter: &'a WebhookCounter,
}

/// The report; it fails when a webhook event, a delivery or a client event was lost, or a
/// load hit an error.
pub fn build(findings: &Findings) -> Report {
    let mut report = Report::new("soak");
    add_sizes(&mut report, findings);
    add_drift(&mut report, findings);
    add_queues(&mut report, findings);
    let mut failures = add_fanout(&mut report, findings);
    failures.extend(add_webhooks(&mut report, findings));
    failures.extend(add_client_events(&mut report, findings));
    report.samples = findings.samples.iter().map(Sample::json).collect();
    if !failures.is_empty() {
        report.failure = Some(failures.join("; "));
    }
    report
}

fn add_sizes(report: &mut Report, findings: &Findings) {
    let sizes = findings.sizes;
    report.add("load duration", findings.load_secs / 60.0, "min");
    report.add("fan-out subscribers", sizes.soak_subscribers as f64, "");
    report.add("fan-out publishes per second", sizes.soak_rate, "/s");
    report.add("presence sockets", sizes.soak_churn_sockets as f64, "");
    report.add(
        "presence cycles per second per socket",
        sizes.soak_churn_rate,
        "/s",
    );
    report.add("client event pairs", sizes.soak_pairs as f64, "");
    report.add(
        "client events per second per socket",
        sizes.soak_client_rate,
        "/s",
    );
    report.add("connects per second", sizes.soak_connect_rate, "/s");
    report.add("seconds each connect stays", sizes.soak_connect_stay, "s");
    report.add("samples", findings.samples.len() as f64, "");
    let cpu = |f: fn(&Sample) -> f64| {
        findings.samples.iter().map(f).sum::<f64>() / findings.samples.len().max(1) as f64
    };
    report.add(
        "server CPU, mean of samples",
        cpu(|s| s.server_cpu),
        "% core",
    );
    report.add(
        "load generator CPU, mean of samples",
        cpu(|s| s.bench_cpu),
        "% core",
    );
}

/// RSS and descriptors: before, at warm-up, at the end, their max, the drift, after closing.
fn add_drift(report: &mut Report, findings: &Findings) {
    let samples = &findings.samples;
    let warmup_secs = findings.sizes.warmup_secs();
    let Some(end) = samples.last() else {
        return;
    };
    let warm = samples
        .iter()
        .find(|s| s.elapsed >= warmup_secs - 0.5)
        .unwrap_or(end);
    report.add("warm-up sample taken at", warm.elapsed, "s");
    let max_rss = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    report.add("server RSS before the load", findings.before.0, "MiB");
    report.add("server RSS at warm-up", warm.rss_mib, "MiB");
    report.add("server RSS at the end", end.rss_mib, "MiB");
    report.add("server RSS max", max_rss, "MiB");
    report.add(
        "server RSS drift (end - warm-up)",
        end.rss_mib - warm.rss_mib,
        "MiB",
    );
    report.add(
        "server RSS after every socket closed",
        findings.after.0,
        "MiB",
    );
    let max_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    report.add(
        "server descriptors before the load",
        findings.before.1 as f64,
        "",
    );
    report.add("server descriptors at warm-up", warm.fds as f64, "");
    report.add("server descriptors at the end", end.fds as f64, "");
    report.add("server descriptors max", max_fds as f64, "");
    report.add(
        "server descriptors drift (end - warm-up)",
        end.fds as f64 - warm.fds as f64,
        "",
    );
    report.add(
        "server descriptors after every socket closed",
        findings.after.1 as f64,
        "",
    );
}

/// The server's queue gauges: their max over the samples, and once every socket closed.
fn add_queues(report: &mut Report, findings: &Findings) {
    let samples = &findings.samples;
    let gauge_max = |name: &str| {
        samples
            .iter()
            .filter_map(|s| s.gauges.get(name))
            .fold(0.0, |a: f64, b| a.max(*b))
    };
    report.add(
        "webhook queue events, max of samples",
        gauge_max("webhook_queue_events"),
        "",
    );
    report.add(
        "webhook queue oldest age, max of samples",
        gauge_max("webhook_queue_oldest_age_seconds"),
        "s",
    );
    let ended = |name: &str| findings.final_gauges.get(name).copied().unwrap_or(0.0);
    report.add(
        "webhook queue events after closing",
        ended("webhook_queue_events"),
        "",
    );
    report.add(
        "webhook events dropped by the server",
        ended("webhook_events_dropped"),
        "",
    );
    report.add(
        "webhook events given up by the server",
        ended("webhook_events_dead"),
        "",
    );
    report.add(
        "slow-consumer disconnects",
        ended("slow_consumer_disconnects"),
        "",
    );
}

/// Fan-out figures; the failures they show.
fn add_fanout(report: &mut Report, findings: &Findings) -> Vec<String> {
    let progress = findings.progress;
    let published = progress.published.load(Ordering::Relaxed);
    let delivered = progress.deliveries.load(Ordering::Relaxed);
    let expected = findings.outcome.expected_deliveries;
    let lost = expected.saturating_sub(delivered);
    report.add("fan-out events published", published as f64, "");
    report.add("fan-out deliveries", delivered as f64, "");
    report.add("fan-out lost deliveries", lost as f64, "");
    let closed = progress.subscribers_closed.load(Ordering::Relaxed);
    report.add(
        "fan-out subscribers closed before the end",
        closed as f64,
        "",
    );
    let (p50, p99, max) = findings
        .latencies
        .whole(|h| (h.percentile(50.0), h.percentile(99.0), h.max()));
    report.add("fan-out latency p50, whole run", p50 as f64 / 1000.0, "ms");
    report.add("fan-out latency p99, whole run", p99 as f64 / 1000.0, "ms");
    report.add("fan-out latency max, whole run", max as f64 / 1000.0, "ms");
    let worst = findings
        .samples
        .iter()
        .map(|s| s.p99_ms)
        .fold(0.0, f64::max);
    report.add("fan-out latency p99, max of samples", worst, "ms");
    let mut failures = Vec::new();
    if lost > 0 {
        failures.push(format!("{lost} fan-out deliveries lost"));
    }
    failures
}

/// Webhook figures of the presence churn and the visits; the failures they show.
fn add_webhooks(report: &mut Report, findings: &Findings) -> Vec<String> {
    let (counter, outcome) = (findings.counter, &findings.outcome);
    let cycles: u64 = outcome.cycles.iter().map(|(_, c)| c).sum();
    let (lost, duplicated) = lost_and_duplicated(counter, PRESENCE_PREFIX, &outcome.cycles);
    let (out_of_order, left_open) = counter.alternation(PRESENCE_PREFIX);
    report.add("presence cycles", cycles as f64, "");
    report.add("presence webhook events expected", (cycles * 4) as f64, "");
    report.add("presence webhook events lost", lost as f64, "");
    report.add("presence webhook events duplicated", duplicated as f64, "");
    report.add(
        "presence webhook events out of order",
        out_of_order as f64,
        "",
    );
    report.add("presence channels/members left open", left_open as f64, "");
    let visits = outcome.visits.len() as u64;
    let (visit_lost, visit_duplicated) = visit_webhooks(counter, &outcome.visits);
    let (visit_order, visit_open) = counter.alternation(VISIT_PREFIX);
    report.add(
        "connects done",
        findings.progress.connects.load(Ordering::Relaxed) as f64,
        "",
    );
    report.add(
        "connect channel webhook events expected",
        (visits * 2) as f64,
        "",
    );
    report.add("connect channel webhook events lost", visit_lost as f64, "");
    report.add(
        "connect channel webhook events duplicated",
        visit_duplicated as f64,
        "",
    );
    report.add(
        "connect channel webhook events out of order",
        visit_order as f64,
        "",
    );
    report.add("connect channels left open", visit_open as f64, "");
    let (posts, events) = counter.totals();
    report.add("webhook events received (all channels)", events as f64, "");
    report.add("webhook POSTs", posts as f64, "");
    report.add("webhooks settled after the load", findings.settle_secs, "s");
    let mut failures = Vec::new();
    if lost + visit_lost > 0 {
        failures.push(format!("{} webhook events lost", lost + visit_lost));
    }
    failures
}

/// Client events and load errors; the failures they show.
fn add_client_events(report: &mut Report, findings: &Findings) -> Vec<String> {
    let progress = findings.progress;
    let sent = progress.client_sent.load(Ordering::Relaxed);
    let received = progress.client_received.load(Ordering::Relaxed);
    let lost = sent.saturating_sub(received);
    report.add("client events sent", sent as f64, "");
    report.add("client events relayed", received as f64, "");
    report.add("client events lost", lost as f64, "");
    let errors = progress.errors.load(Ordering::Relaxed);
    report.add("load errors", errors as f64, "");
    let mut failures = Vec::new();
    if lost > 0 {
        failures.push(format!("{lost} client events lost"));
    }
    if errors > 0 {
        let first = progress.first_errors().join(" | ");
        failures.push(format!("{errors} load errors (first: {first})"));
    }
    failures
}
