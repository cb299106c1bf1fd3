//! The soak scenario (`--scenario soak --minutes M`, not part of `all`): fan-out, presence
//! churn with webhooks, client events and connect/disconnect churn together against one server
//! for M minutes, sampled every 10 s; at the end the drift of memory and descriptors, latency
//! over the whole run, and what was lost, duplicated or out of order.
//!
//! SIGINT or SIGTERM ends the load early; the drain, the webhook settling and the report
//! still run (each bounded), and the server is stopped as in every scenario.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clients::{connect_lean, Publisher, Socket};
use crate::receiver::WebhookCounter;
use crate::report::Report;
use crate::scenarios::{lost_and_duplicated, open_subscribed};
use crate::soak_churn::{self, PRESENCE_PREFIX};
use crate::soak_load::{self, Progress, Stop};
use crate::soak_report::{self, Findings};
use crate::soak_sampler::{Latencies, Sample, Sampler};
use crate::target::{self, free_port, Target};

/// The fan-out channel.
const FANOUT_CHANNEL: &str = "soak-fanout";

/// The soak's duration and sizes (`--minutes`, `--soak-...`).
#[derive(clap::Args)]
pub struct Sizes {
    /// Soak: minutes of load (fractions allowed, e.g. 0.5).
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Soak: fan-out subscribers on the one channel.
    #[arg(long, default_value_t = 1000)]
    pub soak_subscribers: usize,
    /// Soak: REST publishes per second to that channel.
    #[arg(long, default_value_t = 20.0)]
    pub soak_rate: f64,
    /// Soak: presence sockets, each joining and leaving a presence channel of its own.
    #[arg(long, default_value_t = 100)]
    pub soak_churn_sockets: usize,
    /// Soak: join/leave cycles per second of each presence socket (four webhooks each).
    #[arg(long, default_value_t = 1.0)]
    pub soak_churn_rate: f64,
    /// Soak: pairs of sockets sending client events on private channels.
    #[arg(long, default_value_t = 100)]
    pub soak_pairs: usize,
    /// Soak: client events per second of each pair socket.
    #[arg(long, default_value_t = 2.0)]
    pub soak_client_rate: f64,
    /// Soak: sockets per second that connect, subscribe a channel of their own, stay and close.
    #[arg(long, default_value_t = 5.0)]
    pub soak_connect_rate: f64,
    /// Soak: seconds each of those stays connected.
    #[arg(long, default_value_t = 3.0)]
    pub soak_connect_stay: f64,
    /// Soak: seconds between samples.
    #[arg(long, default_value_t = 10)]
    pub soak_sample_secs: u64,
    /// Soak: the warm-up sample is the first at or after this many seconds (default: 10% of
    /// the run, at most 120).
    #[arg(long)]
    pub soak_warmup_secs: Option<f64>,
    /// Soak: the server's activity_timeout in seconds (unset: the server's default, 120 for
    /// Herald; the fan-out subscribers only listen, so they answer its pings).
    #[arg(long)]
    pub soak_activity_timeout: Option<u64>,
}

impl Sizes {
    /// The load's duration.
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.minutes.max(0.0) * 60.0)
    }

    /// When the warm-up sample is taken, in seconds from the load's start.
    pub fn warmup_secs(&self) -> f64 {
        let default = (self.duration().as_secs_f64() * 0.1).min(120.0);
        self.soak_warmup_secs.unwrap_or(default)
    }
}

/// The soak's config: webhooks to `webhook_url` (grace period 0, batching on, from
/// [`target::config`]) and metrics on `metrics_port`.
fn config(port: u16, metrics_port: u16, webhook_url: &str, sizes: &Sizes) -> Value {
    let mut config = target::config(port, Some(webhook_url));
    config["metrics"] = json!({"enabled": true, "host": "127.0.0.1", "port": metrics_port,
        "prometheus": {"prefix": "herald_"}});
    if let Some(secs) = sizes.soak_activity_timeout {
        config["activity_timeout"] = json!(secs);
    }
    config
}

/// The sockets of the steady loads, connected before the clock starts.
struct Sockets {
    subscribers: Vec<Socket>,
    pairs: Vec<(Socket, String)>,
    presence: Vec<(Socket, String)>,
}

impl Sockets {
    async fn open(port: u16, sizes: &Sizes) -> Result<Sockets, String> {
        let subscribers = open_subscribed(
            &[port],
            sizes.soak_subscribers,
            |_, _| json!({ "channel": FANOUT_CHANNEL }),
        )
        .await?;
        let pairs = soak_load::open_pairs(port, sizes.soak_pairs).await?;
        let mut presence = Vec::with_capacity(sizes.soak_churn_sockets);
        for _ in 0..sizes.soak_churn_sockets {
            presence.push(connect_lean(port).await?);
        }
        Ok(Sockets {
            subscribers,
            pairs,
            presence,
        })
    }
}

/// The load's tasks.
struct Running {
    subscribers: Vec<JoinHandle<()>>,
    publisher: JoinHandle<()>,
    pairs: Vec<JoinHandle<()>>,
    presence: Vec<JoinHandle<(usize, u64, Socket)>>,
    visits: JoinHandle<Vec<u64>>,
}

/// What the load did, once drained.
pub struct Outcome {
    /// Each presence socket's index and completed cycles.
    pub cycles: Vec<(usize, u64)>,
    /// The visits that subscribed.
    pub visits: Vec<u64>,
    /// Published events times subscribers.
    pub expected_deliveries: u64,
}

impl Running {
    fn start(
        sockets: Sockets,
        sizes: &Sizes,
        (port, payload): (u16, usize),
        stop: &Stop,
        progress: &Arc<Progress>,
        latencies: &Arc<Latencies>,
    ) -> Running {
        let publisher = tokio::spawn(soak_load::publish_until(
            Arc::new(Publisher::new(port)),
            FANOUT_CHANNEL,
            (sizes.soak_rate, payload),
            stop.clone(),
            progress.clone(),
        ));
        let stay = Duration::from_secs_f64(sizes.soak_connect_stay.max(0.0));
        let visits = soak_churn::visits(
            port,
            sizes.soak_connect_rate,
            stay,
            stop.clone(),
            progress.clone(),
        );
        Running {
            subscribers: soak_load::spawn_subscribers(sockets.subscribers, progress, latencies),
            publisher,
            pairs: soak_load::spawn_pairs(sockets.pairs, sizes.soak_client_rate, stop, progress),
            presence: soak_churn::spawn_presence(
                sockets.presence,
                sizes.soak_churn_rate,
                stop,
                progress,
            ),
            visits: tokio::spawn(visits),
        }
    }

    /// Waits for the publishes, the deliveries (bounded), the churn and the client events
    /// (bounded), then closes every socket.
    async fn finish(self, progress: &Progress, subscribers: usize) -> Outcome {
        let _ = self.publisher.await;
        let expected_deliveries = progress.published.load(Ordering::Relaxed) * subscribers as u64;
        let delivered = || progress.deliveries.load(Ordering::Relaxed) >= expected_deliveries;
        wait_for(delivered, Duration::from_secs(20)).await;
        let (mut cycles, mut presence) = (Vec::new(), Vec::new());
        for (i, done, ws) in join_all(self.presence).await {
            cycles.push((i, done));
            presence.push(ws);
        }
        let visits = self.visits.await.unwrap_or_default();
        let relayed = || {
            progress.client_received.load(Ordering::Relaxed)
                >= progress.client_sent.load(Ordering::Relaxed)
        };
        wait_for(relayed, Duration::from_secs(10)).await;
        for task in self.subscribers.iter().chain(&self.pairs) {
            task.abort();
        }
        drop(presence);
        Outcome {
            cycles,
            visits,
            expected_deliveries,
        }
    }
}

/// The results of the tasks that did not panic.
async fn join_all<T>(tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.extend(task.await.ok());
    }
    results
}

/// Polls `done` every 50 ms until it holds or `bound` passed; returns the seconds waited.
async fn wait_for(done: impl Fn() -> bool, bound: Duration) -> f64 {
    let started = Instant::now();
    while !done() && started.elapsed() < bound {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed().as_secs_f64()
}

/// A stop set after `duration`, on SIGINT or SIGTERM, or through the returned sender.
fn stop_after(duration: Duration) -> (Arc<watch::Sender<bool>>, Stop) {
    let (sender, receiver) = watch::channel(false);
    let sender = Arc::new(sender);
    let setter = sender.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(term) => term.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = tokio::signal::ctrl_c() => eprintln!("soak: interrupted, ending the load early"),
            _ = terminated => eprintln!("soak: terminated, ending the load early"),
        }
        let _ = setter.send(true);
    });
    (sender, Stop(receiver))
}

/// A sample every `every` until the stop, and one at the stop; printed as they come. A server
/// that exits sets the stop.
async fn sample_until(
    sampler: &mut Sampler<'_>,
    mut stop: Stop,
    every: Duration,
    stopper: &watch::Sender<bool>,
) -> Vec<Sample> {
    println!("{}", Sample::header());
    let mut samples: Vec<Sample> = Vec::new();
    let mut tick = tokio::time::interval_at((Instant::now() + every).into(), every);
    loop {
        let stopped = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait() => true,
        };
        let last = samples.last().map_or(0.0, |s| s.elapsed);
        if !stopped || sampler.elapsed() - last > 1.0 {
            let sample = sampler.take().await;
            println!("{}", sample.line());
            samples.push(sample);
        }
        if !sampler.target.running() {
            eprintln!("soak: the server exited");
            let _ = stopper.send(true);
        }
        if stopped || stop.is_set() {
            return samples;
        }
    }
}

/// Waits (bounded) for the server to count no connection and no queued webhook; returns its
/// memory and descriptors, and its gauges then.
async fn after_close(sampler: &Sampler<'_>) -> ((f64, usize), HashMap<&'static str, f64>) {
    let started = Instant::now();
    let mut gauges = sampler.scrape().await;
    let zero = |g: &HashMap<&str, f64>, name| g.get(name).is_none_or(|v| *v == 0.0);
    while started.elapsed() < Duration::from_secs(15)
        && !(zero(&gauges, "connected") && zero(&gauges, "webhook_queue_events"))
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        gauges = sampler.scrape().await;
    }
    (footprint(sampler.target), gauges)
}

/// Server memory (MiB) and open descriptors now.
fn footprint(target: &Target) -> (f64, usize) {
    let rss = target.rss_bytes() as f64 / 1024.0 / 1024.0;
    (rss, target.open_fds())
}

/// Waits (bounded) until every expected presence and visit webhook arrived; returns the
/// seconds waited.
async fn settle(counter: &WebhookCounter, outcome: &Outcome) -> f64 {
    let arrived = || {
        lost_and_duplicated(counter, PRESENCE_PREFIX, &outcome.cycles).0 == 0
            && soak_churn::visit_webhooks(counter, &outcome.visits).0 == 0
    };
    wait_for(arrived, Duration::from_secs(30)).await
}

/// Runs the load until the stop, sampling; then drains it. Returns the samples, the load's
/// seconds and what it did.
async fn run(
    sampler: &mut Sampler<'_>,
    sockets: Sockets,
    sizes: &Sizes,
    (port, payload): (u16, usize),
) -> (Vec<Sample>, f64, Outcome) {
    let (progress, latencies) = (sampler.progress.clone(), sampler.latencies.clone());
    let (stopper, stop) = stop_after(sizes.duration());
    let running = Running::start(
        sockets,
        sizes,
        (port, payload),
        &stop,
        &progress,
        &latencies,
    );
    sampler.restart();
    let every = Duration::from_secs(sizes.soak_sample_secs.max(1));
    let samples = sample_until(sampler, stop, every, &stopper).await;
    let load_secs = sampler.elapsed();
    let outcome = running.finish(&progress, sizes.soak_subscribers).await;
    (samples, load_secs, outcome)
}

/// The soak: see the module's doc.
pub async fn soak(server: &str, sizes: &Sizes, payload: usize) -> Result<Report, String> {
    let counter = WebhookCounter::default();
    let url = counter.start().await;
    let (port, metrics_port) = (free_port(), free_port());
    let target = Target::start(server, &config(port, metrics_port, &url, sizes), port)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = footprint(&target);
    let sockets = Sockets::open(port, sizes).await?;
    println!(
        "soak: server pid {}, {} sockets open, load for {:.1} min",
        target.pid(),
        sockets.subscribers.len() + sockets.pairs.len() + sockets.presence.len(),
        sizes.minutes
    );
    let (progress, latencies) = (Arc::default(), Arc::default());
    let mut sampler = Sampler::new(&target, metrics_port, progress, latencies, counter.clone());
    let (samples, load_secs, outcome) = run(&mut sampler, sockets, sizes, (port, payload)).await;
    let settle_secs = settle(&counter, &outcome).await;
    let (after, final_gauges) = after_close(&sampler).await;
    let findings = Findings {
        sizes,
        load_secs,
        before,
        after,
        samples,
        final_gauges,
        outcome,
        settle_secs,
        progress: &sampler.progress,
        latencies: &sampler.latencies,
        counter: &counter,
    };
    Ok(soak_report::build(&findings))
}
