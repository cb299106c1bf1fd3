//! The scale scenario's cluster part: K Herald nodes on one private `redis-server`, each with
//! its own client processes near the descriptor cap. Every socket holds two subscriptions: a
//! channel of its own (one in ten instead shares one of four large channels) and `scale-all`,
//! which every socket is on. Then broadcasts by REST to `scale-all`: the time from the publish
//! to the last delivery on any socket, against the sendfloor floor of the same run.

use std::time::{Duration, Instant};

use crate::clients::Publisher;
use crate::cluster::{redis_server, start_redis, with_adapter, NO_REDIS};
use crate::floor;
use crate::kernel::monotonic_nanos;
use crate::report::{percentile, Report};
use crate::scale::{connect_bound, server_config, server_room, Indexes, Sizes};
use crate::scale_conn::MARK_EVENT;
use crate::scale_fleet::{Connected, Fleet, Plan};
use crate::target::{free_port, Target};

/// The channel every socket of the cluster is on.
const ALL: &str = "scale-all";
/// sendfloor rounds: enough writes per socket for a steady figure, a few seconds in all.
const FLOOR_ROUNDS: usize = 20;
/// How long a broadcast may take to reach every socket before the rest count as lost.
const DELIVERY_BOUND: Duration = Duration::from_secs(30);

/// CPU seconds of every process of the run.
struct Cpu {
    nodes: Vec<f64>,
    redis: f64,
    clients: f64,
}

impl Cpu {
    fn sample(nodes: &[Target], redis: &Target, fleets: &[Fleet]) -> Cpu {
        Cpu {
            nodes: nodes.iter().map(Target::cpu_seconds).collect(),
            redis: redis.cpu_seconds(),
            clients: fleets.iter().map(Fleet::cpu_seconds).sum(),
        }
    }

    /// What was spent since `before`.
    fn since(&self, before: &Cpu) -> Cpu {
        let nodes = self.nodes.iter().zip(&before.nodes);
        Cpu {
            nodes: nodes.map(|(now, then)| now - then).collect(),
            redis: self.redis - before.redis,
            clients: self.clients - before.clients,
        }
    }

    fn add_rows(&self, report: &mut Report, prefix: &str) {
        for (i, cpu) in self.nodes.iter().enumerate() {
            report.add(&format!("{prefix}CPU seconds, node {i}"), *cpu, "s");
        }
        report.add(
            &format!("{prefix}CPU seconds, redis-server"),
            self.redis,
            "s",
        );
        report.add(&format!("{prefix}CPU seconds, clients"), self.clients, "s");
    }
}

/// Sockets per node: the flag, or what a node's descriptor limit allows.
fn per_node(sizes: &Sizes) -> u64 {
    let room = server_room().unwrap_or(100_000);
    sizes.node_connections.unwrap_or(room).min(room)
}

/// Runs the cluster part; every process it started is stopped when it returns.
pub async fn cluster(
    server: &str,
    sizes: &Sizes,
    indexes: &mut Indexes,
    report: &mut Report,
) -> Result<(), String> {
    let redis_binary = redis_server().ok_or(NO_REDIS)?;
    let (k, per_node) = (sizes.nodes, per_node(sizes));
    // Alone, before anything else runs: the writes of one node's share of a broadcast.
    let floor = floor::sendfloor_rounds(&sizes.sendfloor, per_node as usize, FLOOR_ROUNDS)
        .and_then(|f| f["us_cpu_per_write"].as_f64())
        .map(|us| Floor::new(us, per_node * k as u64, k));
    // Declared first, dropped last: the fleets go, then the nodes, then Redis.
    let redis = start_redis(&redis_binary)?;
    let nodes = start_nodes(server, &redis, k, per_node)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_empty: u64 = nodes.iter().map(Target::rss_bytes).sum();
    let mut fleets = Vec::with_capacity(k);
    for node in &nodes {
        let plan = Plan {
            port: node.port,
            count: per_node,
            first: indexes.take(per_node),
            concurrency: sizes.concurrency,
            extra: ["--shared", ALL, "--big-every", "10", "--big-channels", "4"]
                .map(String::from)
                .to_vec(),
        };
        fleets.push(Fleet::start(&plan).await?);
    }
    let total = per_node * k as u64;
    report.add("cluster: nodes", k as f64, "");
    report.add("cluster: sockets per node", per_node as f64, "");
    report.add("cluster: subscriptions per socket", 2.0, "");
    let processes: usize = fleets.iter().map(Fleet::processes).sum();
    report.add("cluster: client processes", processes as f64, "");
    connect_all(&nodes, &redis, &mut fleets, total, report).await?;
    let rss: u64 = nodes.iter().map(Target::rss_bytes).sum();
    let per_socket = rss.saturating_sub(rss_empty) as f64 / total as f64 / 1024.0;
    report.add("cluster: node RSS per socket", per_socket, "KiB");
    let redis_rss = redis.rss_bytes() as f64 / 1048576.0;
    report.add("cluster: redis-server RSS", redis_rss, "MiB");
    let mut processes = Processes {
        nodes: &nodes,
        redis: &redis,
        fleets: &mut fleets,
    };
    broadcasts(&mut processes, sizes.broadcasts, floor, report).await?;
    for fleet in fleets {
        fleet.stop().await;
    }
    Ok(())
}

/// `k` nodes on `redis`, each allowed `per_node` sockets, with Pusher's activity timeout.
fn start_nodes(
    server: &str,
    redis: &Target,
    k: usize,
    per_node: u64,
) -> Result<Vec<Target>, String> {
    let mut nodes = Vec::with_capacity(k);
    for i in 0..k {
        let port = free_port();
        let config = server_config(port, per_node, 120);
        let config = with_adapter(config, redis, &format!("scale-{i}"));
        nodes.push(Target::start(server, &config, port)?);
    }
    Ok(nodes)
}

/// The broadcast's floor: sendfloor's CPU per write, and that for every socket spread over
/// the cores the nodes can write on in parallel.
#[derive(Clone, Copy)]
struct Floor {
    us_per_write: f64,
    ms: f64,
}

impl Floor {
    fn new(us_per_write: f64, total: u64, k: usize) -> Floor {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ms = us_per_write * total as f64 / k.min(cores) as f64 / 1000.0;
        Floor { us_per_write, ms }
    }
}

/// Every process of the cluster run.
struct Processes<'a> {
    nodes: &'a [Target],
    redis: &'a Target,
    fleets: &'a mut [Fleet],
}

impl Processes<'_> {
    fn cpu(&self) -> Cpu {
        Cpu::sample(self.nodes, self.redis, self.fleets)
    }
}

/// Connects every node's sockets at once; adds the connect phase's rows.
async fn connect_all(
    nodes: &[Target],
    redis: &Target,
    fleets: &mut [Fleet],
    total: u64,
    report: &mut Report,
) -> Result<(), String> {
    let before = Cpu::sample(nodes, redis, fleets);
    for fleet in fleets.iter_mut() {
        fleet.start_connecting().await?;
    }
    let deadline = Instant::now() + connect_bound(total);
    let mut all: Option<Connected> = None;
    for fleet in fleets.iter_mut() {
        let connected = fleet.connected(deadline).await?;
        match all.as_mut() {
            Some(all) => all.add(connected),
            None => all = Some(connected),
        }
    }
    let all = all.ok_or("no nodes")?;
    let cpu = Cpu::sample(nodes, redis, fleets).since(&before);
    if all.failed > 0 {
        let errors = &all.errors;
        return Err(format!(
            "{} of {total} cluster sockets failed: {errors:?}",
            all.failed
        ));
    }
    report.add("cluster connect: sockets", all.ready as f64, "");
    report.add("cluster connect: seconds", all.secs(), "s");
    report.add(
        "cluster connect: connect+subscribe per second",
        all.ready as f64 / all.secs(),
        "/s",
    );
    let node_cpu: f64 = cpu.nodes.iter().sum();
    report.add(
        "cluster connect: node CPU per connection",
        node_cpu * 1e6 / total as f64,
        "us",
    );
    report.add(
        "cluster connect: Redis CPU per connection",
        cpu.redis * 1e6 / total as f64,
        "us",
    );
    cpu.add_rows(report, "cluster connect: ");
    Ok(())
}

/// One broadcast's figures.
struct Broadcast {
    last_ms: f64,
    node_cpu: f64,
    redis_cpu: f64,
    deliveries: u64,
    lost: u64,
    duplicated: u64,
}

/// `count` broadcasts to every socket, one at a time; adds each one's rows and the medians.
async fn broadcasts(
    processes: &mut Processes<'_>,
    count: usize,
    floor: Option<Floor>,
    report: &mut Report,
) -> Result<(), String> {
    let publisher = Publisher::new(processes.nodes[0].port);
    // A first request opens the publisher's connection, so no broadcast pays for it.
    publisher.get("/channels", &[]).await?;
    let mut runs = Vec::with_capacity(count);
    for marker in 1..=count as u32 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        runs.push(broadcast(processes, &publisher, marker, report).await?);
    }
    add_medians(report, &runs, floor);
    let duplicated: u64 = runs.iter().map(|b| b.duplicated).sum();
    report.add("cluster: duplicated deliveries", duplicated as f64, "");
    let lost: u64 = runs.iter().map(|b| b.lost).sum();
    report.add("cluster: lost deliveries", lost as f64, "");
    Ok(())
}

/// One broadcast of `marker` to every socket; adds its rows.
async fn broadcast(
    processes: &mut Processes<'_>,
    publisher: &Publisher,
    marker: u32,
    report: &mut Report,
) -> Result<Broadcast, String> {
    let before = processes.cpu();
    let published = monotonic_nanos();
    publisher
        .trigger(ALL, MARK_EVENT, &format!("m={marker}"))
        .await?;
    let answered_ms = (monotonic_nanos() - published) as f64 / 1e6;
    let (mut got, mut expected, mut duplicated, mut times) = (0, 0, 0, Vec::new());
    for fleet in processes.fleets.iter_mut() {
        let arrivals = fleet.arrivals(marker, DELIVERY_BOUND).await?;
        (got, expected) = (got + arrivals.got, expected + arrivals.expected);
        duplicated += arrivals.duplicates;
        let after = arrivals
            .times
            .iter()
            .map(|t| t.saturating_sub(published) / 1000);
        times.extend(after);
    }
    let cpu = processes.cpu().since(&before);
    times.sort_unstable();
    let p = format!("broadcast {marker}: ");
    let last_ms = times.last().copied().unwrap_or(0) as f64 / 1000.0;
    report.add(&format!("{p}publish to last delivery"), last_ms, "ms");
    report.add(
        &format!("{p}p50"),
        percentile(&times, 50.0) as f64 / 1000.0,
        "ms",
    );
    report.add(
        &format!("{p}p99"),
        percentile(&times, 99.0) as f64 / 1000.0,
        "ms",
    );
    report.add(&format!("{p}REST answered"), answered_ms, "ms");
    report.add(&format!("{p}deliveries"), got as f64, "");
    cpu.add_rows(report, &p);
    Ok(Broadcast {
        last_ms,
        node_cpu: cpu.nodes.iter().sum(),
        redis_cpu: cpu.redis,
        deliveries: got,
        lost: expected.saturating_sub(got),
        duplicated,
    })
}

fn add_medians(report: &mut Report, runs: &[Broadcast], floor: Option<Floor>) {
    let median = |figure: fn(&Broadcast) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(figure).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    let last = median(|b| b.last_ms);
    let per_delivery = median(|b| b.node_cpu * 1e6 / b.deliveries.max(1) as f64);
    report.add("broadcast median: publish to last delivery", last, "ms");
    report.add(
        "broadcast median: node CPU per delivery",
        per_delivery,
        "us",
    );
    let redis_ms = median(|b| b.redis_cpu * 1e3);
    report.add("broadcast median: Redis CPU per broadcast", redis_ms, "ms");
    if let Some(floor) = floor {
        let us = floor.us_per_write;
        report.add("sendfloor CPU per write (same run)", us, "us");
        report.add(
            "broadcast floor: writes of all sockets over the cores",
            floor.ms,
            "ms",
        );
        report.add("broadcast median / floor", last / floor.ms.max(1e-9), "x");
        report.add(
            "node CPU per delivery / sendfloor",
            per_delivery / us.max(1e-9),
            "x",
        );
    }
}
