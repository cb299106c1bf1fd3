//! Redis backends compared (not part of `all`): two nodes sharing one Redis, a Redis Cluster of
//! three shards (three primaries, three replicas) with classic `PUBLISH`, and the same with
//! sharded `SPUBLISH`. For each, cross-node fan-out over many channels (subscribers on B,
//! publishes into A) with the deliveries per CPU-second of every process (both nodes and every
//! Redis), and the publish ceiling: the highest of the stepped rates whose p99 stays under one
//! second with nothing lost.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{redis_server, start_redis, KEPT, NO_REDIS};
use crate::report::Report;
use crate::scenarios::{publish_load, Placement, PublishLoad};
use crate::target::{self, free_port, Target};

/// Sizes of the scenario.
pub struct Sizes {
    /// Channels the events are spread over.
    pub channels: usize,
    /// Subscribers of each channel (all on node B).
    pub per_channel: usize,
    /// REST publishes per second in the fan-out run.
    pub rate: u64,
    /// Seconds of the fan-out run.
    pub secs: u64,
    /// Event data bytes.
    pub payload: usize,
    /// The rates tried for the ceiling, in order, each for `ceiling_secs`.
    pub ceiling_rates: Vec<u64>,
    /// Seconds of each ceiling step.
    pub ceiling_secs: u64,
}

/// Where the two nodes keep their shared state.
#[derive(Clone, Copy)]
enum Backend {
    OneRedis,
    ShardsPublish,
    ShardsSpublish,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::OneRedis => "one Redis",
            Backend::ShardsPublish => "3 shards PUBLISH",
            Backend::ShardsSpublish => "3 shards SPUBLISH",
        }
    }
}

/// The Redis processes of a backend, and the adapter that reaches them.
struct Redis {
    servers: Vec<Target>,
    adapter: Value,
    /// Node files of a Redis Cluster, removed at the end.
    files: Vec<std::path::PathBuf>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.servers.clear();
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Runs the scenario; every child process is stopped when it returns, on errors too.
pub async fn shards(server: &str, sizes: &Sizes) -> Result<Report, String> {
    let binary = redis_server().ok_or(NO_REDIS)?;
    let mut report = Report::new("shards");
    for backend in [
        Backend::OneRedis,
        Backend::ShardsPublish,
        Backend::ShardsSpublish,
    ] {
        let redis = match backend {
            Backend::OneRedis => one_redis(&binary)?,
            Backend::ShardsPublish => redis_cluster(&binary, false)?,
            Backend::ShardsSpublish => redis_cluster(&binary, true)?,
        };
        run_backend(&mut report, server, backend, &redis, sizes).await?;
    }
    Ok(report)
}

async fn run_backend(
    report: &mut Report,
    server: &str,
    backend: Backend,
    redis: &Redis,
    sizes: &Sizes,
) -> Result<(), String> {
    let name = backend.name();
    let a = start_node(server, &redis.adapter, "bench-a")?;
    let b = start_node(server, &redis.adapter, "bench-b")?;
    let mut servers = vec![&a, &b];
    servers.extend(redis.servers.iter());
    let place = Placement {
        subscribe_ports: vec![b.port],
        publish_port: a.port,
        servers,
    };
    let load = |rate: u64, secs: u64| PublishLoad {
        name: "shards",
        channels: sizes.channels,
        per_channel: sizes.per_channel,
        rate,
        secs,
        payload: sizes.payload,
    };
    let redis_cpu = || redis.servers.iter().map(|s| s.cpu_seconds()).sum::<f64>();
    let redis_before = redis_cpu();
    let run = publish_load(&place, &load(sizes.rate, sizes.secs)).await?;
    let redis_cpu = redis_cpu() - redis_before;
    report.add_from(&format!("{name}: "), &run, KEPT);
    // Redis's share: what shards on machines of their own would take off the nodes' cores.
    let events = sizes.rate * sizes.secs;
    report.add(
        &format!("{name}: Redis CPU seconds (every process)"),
        redis_cpu,
        "s",
    );
    report.add(
        &format!("{name}: Redis CPU per event"),
        redis_cpu * 1e6 / events.max(1) as f64,
        "us",
    );
    let nodes = [&a, &b];
    let ceiling = ceiling(report, name, (&place, nodes), &load, sizes).await?;
    report.add(
        &format!("{name}: publish ceiling (p99 under 1 s, nothing lost)"),
        ceiling as f64,
        "/s",
    );
    Ok(())
}

/// Steps through the rates until one's p99 reaches a second or loses a delivery; the last
/// rate that did neither (0: none).
async fn ceiling(
    report: &mut Report,
    name: &str,
    (place, nodes): (&Placement<'_>, [&Target; 2]),
    load: &dyn Fn(u64, u64) -> PublishLoad,
    sizes: &Sizes,
) -> Result<u64, String> {
    let mut ceiling = 0;
    for rate in &sizes.ceiling_rates {
        let step = match publish_load(place, &load(*rate, sizes.ceiling_secs)).await {
            Ok(step) => step,
            // Past the ceiling the publisher's requests can fail too (refused, timed out):
            // the step failed, unless a node died, which is a failure of the run.
            Err(error) => {
                if !nodes.iter().all(|node| node.running()) {
                    return Err(format!("{name}: a node died at {rate}/s: {error}"));
                }
                eprintln!("{name}: the {rate}/s step failed: {error}");
                report.add(&format!("{name}: {rate}/s failed"), 1.0, "");
                break;
            }
        };
        let (p99, lost) = (step.value("latency p99"), step.value("lost deliveries"));
        report.add(&format!("{name}: {rate}/s p99"), p99, "ms");
        report.add(&format!("{name}: {rate}/s lost deliveries"), lost, "");
        if p99 >= 1000.0 || lost > 0.0 {
            break;
        }
        ceiling = *rate;
    }
    Ok(ceiling)
}

fn start_node(server: &str, adapter: &Value, id: &str) -> Result<Target, String> {
    let port = free_port();
    let mut config = target::config(port, None);
    let mut adapter = adapter.clone();
    adapter["node_id"] = json!(id);
    config["adapter"] = adapter;
    Target::start(server, &config, port)
}

fn one_redis(binary: &std::path::Path) -> Result<Redis, String> {
    let redis = start_redis(binary)?;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    Ok(Redis {
        adapter: json!({"driver": "redis", "redis": {"url": url}}),
        servers: vec![redis],
        files: Vec::new(),
    })
}

/// Six `redis-server`s joined into three primaries with a replica each.
fn redis_cluster(binary: &std::path::Path, sharded: bool) -> Result<Redis, String> {
    let mut redis = Redis {
        servers: Vec::new(),
        adapter: Value::Null,
        files: Vec::new(),
    };
    for (port, bus) in distinct_port_pairs(6)? {
        let (server, files) = cluster_server(binary, port, bus)?;
        redis.servers.push(server);
        redis.files.extend(files);
    }
    let addresses: Vec<String> = (redis.servers.iter())
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .output()
        .map_err(|e| format!("redis-cli: {e}"))?;
    if !created.status.success() {
        return Err(format!(
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        ));
    }
    wait_until_ok(&redis.servers)?;
    redis.adapter = json!({"driver": "redis-cluster", "cluster": {
        "nodes": addresses[..2], "use_sharded_pubsub": sharded}});
    Ok(redis)
}

/// `count` pairs of distinct free ports (a client port and a bus port each), held open together
/// while they are picked: one picked after another is released could repeat it.
fn distinct_port_pairs(count: usize) -> Result<Vec<(u16, u16)>, String> {
    let held: Vec<std::net::TcpListener> = (0..count * 2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let ports: Vec<u16> = (held.iter())
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.port())
        .collect();
    Ok(ports.chunks(2).map(|pair| (pair[0], pair[1])).collect())
}

/// One cluster-enabled `redis-server`, and the files it will leave (removed at the end).
fn cluster_server(
    binary: &std::path::Path,
    port: u16,
    bus: u16,
) -> Result<(Target, Vec<std::path::PathBuf>), String> {
    let dir = std::env::temp_dir();
    let nodes = dir.join(format!(
        "herald-bench-cluster-{}-{port}.conf",
        std::process::id()
    ));
    // A replica writes what it syncs to its RDB file, and a server loads it at start: one of
    // its own, never the working directory's `dump.rdb`.
    let rdb = format!("herald-bench-cluster-{}-{port}.rdb", std::process::id());
    let command = format!(
        "'{}' --bind 127.0.0.1 --port {port} --cluster-enabled yes \
         --cluster-config-file '{}' --cluster-node-timeout 1000 --cluster-port {bus} \
         --save '' --appendonly no --maxmemory-policy noeviction --loglevel warning \
         --dir '{}' --dbfilename '{rdb}'",
        binary.display(),
        nodes.display(),
        dir.display(),
    );
    let server = Target::start(&command, &json!({}), port)?;
    Ok((server, vec![nodes, dir.join(rdb)]))
}

/// Waits (30 s at most) until every server says every slot is served.
fn wait_until_ok(servers: &[Target]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ok = servers.iter().all(|s| {
            let info = Command::new("redis-cli")
                .args(["-p", &s.port.to_string(), "CLUSTER", "INFO"])
                .output();
            info.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        });
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("the Redis Cluster was not ok within 30 s".into())
}
