//! The cluster scenario: two nodes sharing a private `redis-server`, against a single node
//! without an adapter, all on loopback. Fan-out within one node and across nodes (latency, and
//! deliveries per CPU-second of every process involved), then presence churn moving between
//! the nodes with every webhook checked at a real receiver.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::clients::{self, connect, presence_data, subscribe, Publisher, Socket};
use crate::receiver::WebhookCounter;
use crate::report::Report;
use crate::scenarios::{lost_and_duplicated, publish_load, Placement, PublishLoad};
use crate::target::{self, free_port, Target};

/// Why the scenario cannot run without Redis.
pub const NO_REDIS: &str =
    "the cluster scenario needs redis-server on PATH (Debian: apt-get install -y redis-server)";

/// Sizes of the cluster scenario.
pub struct Sizes {
    /// Subscribers of the one channel in each fan-out run.
    pub subscribers: usize,
    /// REST publishes per second.
    pub rate: u64,
    /// Seconds of publishing per fan-out run.
    pub secs: u64,
    /// Event data bytes.
    pub payload: usize,
    /// Churn: users, each with a socket on either node.
    pub churn_users: usize,
    /// Churn: seconds.
    pub churn_secs: u64,
}

/// The figures of each fan-out run that the cluster reports keep.
pub const KEPT: &[&str] = &[
    "deliveries",
    "lost deliveries",
    "deliveries per second",
    "latency p50",
    "latency p99",
    "latency max",
    "server CPU seconds",
    "deliveries per server CPU-second",
    "load generator CPU seconds",
];

const CHURN_PREFIX: &str = "presence-cluster-";

/// The `redis-server` executable on PATH, if any.
pub fn redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|file| {
            file.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A private Redis on a free loopback port without persistence, stopped by PID when dropped
/// (`Target` gives it the same start, CPU accounting and cleanup as the servers).
pub fn start_redis(binary: &Path) -> Result<Target, String> {
    let port = free_port();
    // Its own RDB file name: a server loads what it finds at start, and the working
    // directory's `dump.rdb` may hold another run's keys.
    let command = format!(
        "'{}' --bind 127.0.0.1 --port {port} --save '' --appendonly no --daemonize no \
         --maxmemory-policy noeviction --loglevel warning --dir '{}' \
         --dbfilename 'herald-bench-{}-{port}.rdb'",
        binary.display(),
        std::env::temp_dir().display(),
        std::process::id()
    );
    Target::start(&command, &json!({}), port)
}

/// A node's config: the single node's, plus the Redis adapter under its own node id.
/// `database.redis` repeats the address for servers that read only Sockudo's keys.
pub fn node_config(port: u16, webhook: &str, redis: &Target, node_id: &str) -> Value {
    with_adapter(target::config(port, Some(webhook)), redis, node_id)
}

/// `config` with the Redis adapter under `node_id`.
pub fn with_adapter(mut config: Value, redis: &Target, node_id: &str) -> Value {
    let url = format!("redis://127.0.0.1:{}", redis.port);
    config["adapter"] = json!({"driver": "redis", "node_id": node_id, "redis": {"url": url}});
    config["database"] = json!({"redis": {"host": "127.0.0.1", "port": redis.port}});
    config
}

fn start_node(server: &str, webhook: &str, redis: &Target, id: &str) -> Result<Target, String> {
    let port = free_port();
    Target::start(server, &node_config(port, webhook, redis, id), port)
}

fn fanout(name: &'static str, sizes: &Sizes) -> PublishLoad {
    PublishLoad {
        name,
        channels: 1,
        per_channel: sizes.subscribers,
        rate: sizes.rate,
        secs: sizes.secs,
        payload: sizes.payload,
    }
}

/// Occupied channels under `prefix`, as the node on `port` reads them.
async fn occupied(rest: &Publisher, prefix: &str) -> Result<usize, String> {
    let listed = rest
        .get("/channels", &[("filter_by_prefix", prefix.to_owned())])
        .await?;
    Ok(listed["channels"].as_object().map_or(0, |c| c.len()))
}

/// Waits (10 s at most) until no channel under `prefix` is occupied, so the leaves of one run's
/// subscribers are not paid for in the next run.
async fn wait_empty(port: u16, prefix: &str) -> Result<(), String> {
    let rest = Publisher::new(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while occupied(&rest, prefix).await? > 0 {
        if Instant::now() > deadline {
            return Err(format!("{prefix}* still occupied 10 s after the run"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Runs the scenario; every child process is stopped when it returns, on errors too.
pub async fn cluster(server: &str, sizes: &Sizes) -> Result<Report, String> {
    let redis_binary = redis_server().ok_or(NO_REDIS)?;
    let counter = WebhookCounter::default();
    let webhook = counter.start().await;
    let mut report = Report::new("cluster");
    // The single node runs alone and is stopped before the cluster starts, so neither idles
    // beside the other's measurement.
    let single = {
        let port = free_port();
        let target = Target::start(server, &target::config(port, Some(&webhook)), port)?;
        publish_load(&Placement::single(&target), &fanout("single", sizes)).await?
    };
    report.add_from("single node: ", &single, KEPT);
    // Declared first, dropped last: the nodes leave Redis before it stops.
    let redis = start_redis(&redis_binary)?;
    let a = start_node(server, &webhook, &redis, "bench-a")?;
    let b = start_node(server, &webhook, &redis, "bench-b")?;
    let servers = vec![&a, &b, &redis];
    let cross = Placement {
        subscribe_ports: vec![b.port],
        publish_port: a.port,
        servers: servers.clone(),
    };
    let cross = publish_load(&cross, &fanout("A->B", sizes)).await?;
    wait_empty(a.port, "load-").await?;
    report.add_from("A->B: ", &cross, KEPT);
    let split = Placement {
        subscribe_ports: vec![a.port, b.port],
        publish_port: a.port,
        servers,
    };
    let split = publish_load(&split, &fanout("A->A+B", sizes)).await?;
    wait_empty(a.port, "load-").await?;
    report.add_from("A->A+B: ", &split, KEPT);
    compare(
        &mut report,
        &single,
        &[("A->B", &cross), ("A->A+B", &split)],
    );
    churn(&mut report, [&a, &b], &redis, &counter, sizes).await?;
    node_death(&mut report, server, &webhook, &redis, &a, &counter).await?;
    Ok(report)
}

/// A node killed without a goodbye (SIGKILL), with the default heartbeat (1 s) and node timeout
/// (8 s) and the bench's grace period of 0: the seconds until a survivor's cleanup webhooks
/// arrive, for a channel only the dead node had and a member of a channel that node A keeps.
async fn node_death(
    report: &mut Report,
    server: &str,
    webhook: &str,
    redis: &Target,
    a: &Target,
    counter: &WebhookCounter,
) -> Result<(), String> {
    let (alone, shared) = ("presence-death-alone", "presence-death-shared");
    let mut c = start_node(server, webhook, redis, "bench-c")?;
    let mut sockets = Vec::new();
    for (port, channel, user) in [
        (c.port, alone, "dies-1"),
        (c.port, shared, "dies-2"),
        (a.port, shared, "stays"),
    ] {
        let (mut ws, socket_id) = connect(port).await?;
        subscribe(&mut ws, presence_data(&socket_id, channel, user)).await?;
        sockets.push(ws);
    }
    let count = |name: &str, channel: &str, user: &str| counter.count(name, channel, user);
    let added = || {
        count("member_added", shared, "stays") == 1 && count("member_added", alone, "dies-1") == 1
    };
    wait_for(added, Duration::from_secs(10)).await?;
    let killed = Instant::now();
    c.kill();
    let cleaned = || {
        count("channel_vacated", alone, "") == 1
            && count("member_removed", alone, "dies-1") == 1
            && count("member_removed", shared, "dies-2") == 1
    };
    wait_for(cleaned, Duration::from_secs(30)).await?;
    let took = killed.elapsed().as_secs_f64();
    // Anything sent twice, or for the channel node A keeps, would show up by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let wrong = count("channel_vacated", shared, "") + count("member_removed", shared, "stays");
    let twice = [
        ("channel_vacated", alone, ""),
        ("member_removed", alone, "dies-1"),
        ("member_removed", shared, "dies-2"),
    ]
    .iter()
    .map(|(name, channel, user)| count(name, channel, user).saturating_sub(1))
    .sum::<u64>();
    report.add(
        "node death: SIGKILL to its cleanup webhooks (timeout 8 s, grace 0)",
        took,
        "s",
    );
    report.add("node death: cleanup events duplicated", twice as f64, "");
    report.add(
        "node death: events for the channel node A keeps",
        wrong as f64,
        "",
    );
    drop(sockets);
    Ok(())
}

/// Polls `done` every 20 ms until it holds, or fails after `bound`.
async fn wait_for(done: impl Fn() -> bool, bound: Duration) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("not done within {} s", bound.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// What the cluster adds: latency over the single node's, and CPU per delivery against it.
fn compare(report: &mut Report, single: &Report, runs: &[(&str, &Report)]) {
    let per_cpu = "deliveries per server CPU-second";
    for (name, run) in runs {
        for p in ["p50", "p99"] {
            let figure = format!("latency {p}");
            let added = run.value(&figure) - single.value(&figure);
            report.add(&format!("{name}: {p} - single-node {p}"), added, "ms");
        }
        let ratio = single.value(per_cpu) / run.value(per_cpu).max(1e-9);
        report.add(
            &format!("{name}: CPU per delivery / single node"),
            ratio,
            "x",
        );
    }
}

/// Presence churn moving between the nodes: user `u{i}` joins and leaves its own channel from
/// its socket on A, then from its socket on B, and so on. Each leave is confirmed before the
/// next join, so the truth is strict alternation with every join firing its four webhooks.
async fn churn(
    report: &mut Report,
    nodes: [&Target; 2],
    redis: &Target,
    counter: &WebhookCounter,
    sizes: &Sizes,
) -> Result<(), String> {
    let ports = [nodes[0].port, nodes[1].port];
    let cpu = || nodes[0].cpu_seconds() + nodes[1].cpu_seconds() + redis.cpu_seconds();
    let mut users = Vec::with_capacity(sizes.churn_users);
    for _ in 0..sizes.churn_users {
        users.push([connect(ports[0]).await?, connect(ports[1]).await?]);
    }
    let cpu_before = cpu();
    let (joins, churn_secs) = churn_all(users, ports, sizes.churn_secs).await?;
    let settled = settle(counter, &joins).await;
    // After the settling: the webhook deliveries are part of the churn's cost.
    let cpu = cpu() - cpu_before;
    let total: u64 = joins.iter().map(|(_, n)| n).sum();
    let (lost, duplicated) = lost_and_duplicated(counter, CHURN_PREFIX, &joins);
    let (out_of_order, left_open) = counter.alternation(CHURN_PREFIX);
    let mut still_occupied = 0;
    for port in ports {
        still_occupied += occupied(&Publisher::new(port), CHURN_PREFIX).await?;
    }
    report.add(
        "churn: users (a socket on A and on B)",
        sizes.churn_users as f64,
        "",
    );
    report.add("churn: joins, alternately on A and B", total as f64, "");
    report.add("churn: joins per second", total as f64 / churn_secs, "/s");
    report.add(
        "churn: joins per CPU-second (A+B+Redis)",
        total as f64 / cpu.max(1e-9),
        "/cpu-s",
    );
    report.add("churn: webhook events expected", (total * 4) as f64, "");
    report.add("churn: webhooks settled after the churn", settled, "s");
    report.add("churn: lost events", lost as f64, "");
    report.add("churn: duplicated events", duplicated as f64, "");
    report.add("churn: out-of-order events", out_of_order as f64, "");
    report.add("churn: left open at the receiver", left_open as f64, "");
    report.add(
        "churn: channels occupied at the end (A+B)",
        still_occupied as f64,
        "",
    );
    Ok(())
}

/// Every user's churn at once for `secs`; returns each user's joins and the seconds taken.
async fn churn_all(
    users: Vec<[(Socket, String); 2]>,
    ports: [u16; 2],
    secs: u64,
) -> Result<(Vec<(usize, u64)>, f64), String> {
    let started = Instant::now();
    let stop = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (users.into_iter().enumerate())
        .map(|(i, sockets)| tokio::spawn(churn_user(i, sockets, ports, stop)))
        .collect();
    let mut joins = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.into_iter().enumerate() {
        joins.push((i, task.await.map_err(|e| e.to_string())??));
    }
    Ok((joins, started.elapsed().as_secs_f64()))
}

/// One user's churn until `stop`: join and leave from each of its sockets in turn; returns its
/// joins.
async fn churn_user(
    i: usize,
    mut sockets: [(Socket, String); 2],
    ports: [u16; 2],
    stop: Instant,
) -> Result<u64, String> {
    let channel = format!("{CHURN_PREFIX}{i}");
    let user = format!("u{i}");
    // A leave is confirmed by the node of the next join, the other one.
    let checkers = [Publisher::new(ports[1]), Publisher::new(ports[0])];
    let mut joins = 0u64;
    while Instant::now() < stop {
        let side = (joins % 2) as usize;
        let (ws, socket_id) = &mut sockets[side];
        subscribe(ws, presence_data(socket_id, &channel, &user)).await?;
        let leave = json!({"event": "pusher:unsubscribe", "data": {"channel": channel}});
        clients::send(ws, leave).await?;
        joins += 1;
        wait_vacated(&checkers[side], &channel).await?;
    }
    Ok(joins)
}

/// Polls the channel through REST until the cluster has it unoccupied (5 s at most). A ping
/// would not do: a cluster node answers it before the leave has reached Redis, and a join on
/// the other node could then overtake the leave (one member on two sockets, no webhook).
async fn wait_vacated(rest: &Publisher, channel: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let path = format!("/channels/{channel}");
    while rest.get(&path, &[]).await?["occupied"] != false {
        if Instant::now() > deadline {
            return Err(format!("{channel} still occupied 5 s after its leave"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Waits (15 s at most) until every expected churn event arrived, then 500 ms more for late
/// duplicates; returns the seconds until the last expected one (-1: never).
async fn settle(counter: &WebhookCounter, joins: &[(usize, u64)]) -> f64 {
    let started = Instant::now();
    let mut settled = -1.0;
    while started.elapsed() < Duration::from_secs(15) {
        if lost_and_duplicated(counter, CHURN_PREFIX, joins).0 == 0 {
            settled = started.elapsed().as_secs_f64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    settled
}
