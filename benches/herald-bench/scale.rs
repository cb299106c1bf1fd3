//! The scale scenario (not in `all`): one Herald at growing socket counts up to what the
//! descriptor limits allow, each step beside the connect floor driven by the same lean
//! clients, then idle CPU with activity pings at the largest; then K nodes on one Redis near
//! the cap each, and a broadcast to every socket (`scale_cluster.rs`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::kernel::{hard_fd_limit, SocketMemory};
use crate::report::Report;
use crate::scale_fleet::{Fleet, Plan};
use crate::target::{self, free_port, Target};

/// Descriptors a server process keeps for itself (Herald keeps 100) and a margin.
const SERVER_RESERVED_FDS: u64 = 200;
/// Sockets per 20,000 (the idle target is stated per 20,000 sockets).
const IDLE_TARGET_SOCKETS: f64 = 20_000.0;
/// Pusher's default activity timeout, for the idle projection.
const PUSHER_ACTIVITY_SECS: f64 = 120.0;

/// Sizes of the scale scenario.
pub struct Sizes {
    /// Single-node socket counts below the largest.
    pub steps: Vec<u64>,
    /// The largest single-node count (`None`: what the server's descriptor limit allows).
    pub largest: Option<u64>,
    /// Cluster nodes (0: no cluster part).
    pub nodes: usize,
    /// Sockets per cluster node (`None`: near the cap).
    pub node_connections: Option<u64>,
    /// Seconds of the idle window at the largest single-node count.
    pub idle_secs: u64,
    /// Broadcasts to every cluster socket (the median is reported).
    pub broadcasts: usize,
    /// Handshakes in flight per client process.
    pub concurrency: usize,
    /// sendfloor.c, for the broadcast's floor.
    pub sendfloor: PathBuf,
}

/// Sockets one server process may hold here (`None`: no limit known).
pub fn server_room() -> Option<u64> {
    hard_fd_limit().map(|l| l.saturating_sub(SERVER_RESERVED_FDS))
}

/// A socket index that no earlier step used: every step gets source addresses of its own.
#[derive(Default)]
pub struct Indexes(u64);

impl Indexes {
    /// `count` fresh indexes; the first.
    pub fn take(&mut self, count: u64) -> u64 {
        let first = self.0;
        // Rounded up to whole source addresses.
        let per = crate::scale_client::PER_ADDRESS;
        self.0 += count.div_ceil(per) * per;
        first
    }
}

/// The Herald config of a scale run: no limit below the run's sockets, pings within the window.
pub fn server_config(port: u16, sockets: u64, activity_secs: u64) -> Value {
    let mut config = target::config(port, None);
    config["activity_timeout"] = json!(activity_secs.max(1));
    // Herald's next ping waits for the last one's pong timeout: kept as short, so a socket is
    // pinged every `activity_secs` (Pusher's defaults, 120 and 30 s, are not affected).
    config["pong_timeout"] = json!(activity_secs.clamp(1, 30));
    config["app_manager"]["array"]["apps"][0]["max_connections"] = json!(sockets.max(100_000) * 2);
    config
}

/// Runs the single-node curve, then the cluster; every process is stopped on every path.
pub async fn scale(server: &str, sizes: &Sizes) -> Result<Report, String> {
    let mut report = Report::new("scale");
    let mut indexes = Indexes::default();
    let largest = single_largest(sizes);
    let mut counts: Vec<u64> = sizes
        .steps
        .iter()
        .copied()
        .filter(|n| *n < largest)
        .collect();
    counts.push(largest);
    counts.sort_unstable();
    counts.dedup();
    for &count in &counts {
        let idle = (count == largest).then_some(sizes.idle_secs);
        single_step(server, count, idle, sizes, &mut indexes, &mut report).await?;
    }
    if sizes.nodes > 0 {
        crate::scale_cluster::cluster(server, sizes, &mut indexes, &mut report).await?;
    }
    let sum = |suffix: &str| -> f64 {
        let rows = report.rows.iter().filter(|r| r.0.ends_with(suffix));
        rows.map(|r| r.1).sum()
    };
    let (lost, failed) = (sum("lost deliveries"), sum("sockets lost"));
    if lost > 0.0 || failed > 0.0 {
        report.failure = Some(format!("{lost} deliveries lost, {failed} sockets lost"));
    }
    Ok(report)
}

fn single_largest(sizes: &Sizes) -> u64 {
    let room = server_room();
    match (sizes.largest, room) {
        (Some(asked), Some(room)) if asked > room => {
            eprintln!(
                "scale: capping {asked} connections to {room} (the server's descriptor limit)"
            );
            room
        }
        (Some(asked), _) => asked,
        (None, Some(room)) => room,
        (None, None) => 100_000,
    }
}

/// What one connect run of `count` sockets cost a server process.
pub struct Connect {
    pub count: u64,
    pub secs: f64,
    pub server_cpu: f64,
    pub client_cpu: f64,
    pub rss_before: u64,
    pub rss_after: u64,
    pub memory_before: SocketMemory,
    pub memory_after: SocketMemory,
}

/// Connects and subscribes `count` sockets to `target`, one channel each; returns the
/// figures and the fleet, still connected.
async fn connect_run(
    target: &Target,
    count: u64,
    sizes: &Sizes,
    indexes: &mut Indexes,
) -> Result<(Connect, Fleet), String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_before, memory_before) = (target.rss_bytes(), SocketMemory::sample());
    let plan = Plan {
        port: target.port,
        count,
        first: indexes.take(count),
        concurrency: sizes.concurrency,
        extra: Vec::new(),
    };
    let mut fleet = Fleet::start(&plan).await?;
    let (cpu_before, client_before) = (target.cpu_seconds(), fleet.cpu_seconds());
    fleet.start_connecting().await?;
    let deadline = Instant::now() + connect_bound(count);
    let connected = fleet.connected(deadline).await?;
    let (server_cpu, client_cpu) = (
        target.cpu_seconds() - cpu_before,
        fleet.cpu_seconds() - client_before,
    );
    if connected.failed > 0 {
        return Err(format!(
            "{} of {count} sockets failed to connect and subscribe: {:?}",
            connected.failed, connected.errors
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let figures = Connect {
        count,
        secs: connected.secs(),
        server_cpu,
        client_cpu,
        rss_before,
        rss_after: target.rss_bytes(),
        memory_before,
        memory_after: SocketMemory::sample(),
    };
    Ok((figures, fleet))
}

/// How long a connect phase of `count` sockets may take: generous, so only a stall fails.
pub fn connect_bound(count: u64) -> Duration {
    Duration::from_secs(60 + count / 200)
}

/// One step of the curve: the floor, then a fresh Herald, at `count` sockets; with `idle`,
/// that many seconds of idle CPU after Herald's connect.
async fn single_step(
    server: &str,
    count: u64,
    idle: Option<u64>,
    sizes: &Sizes,
    indexes: &mut Indexes,
    report: &mut Report,
) -> Result<(), String> {
    let floor = {
        let port = free_port();
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let command = format!("'{}' connect-floor --port {port}", exe.display());
        let target = Target::start(&command, &json!({}), port)?;
        let (floor, fleet) = connect_run(&target, count, sizes, indexes).await?;
        fleet.stop().await;
        floor
    };
    let port = free_port();
    let activity = (sizes.idle_secs / 2).max(1);
    let target = Target::start(server, &server_config(port, count, activity), port)?;
    let (herald, mut fleet) = connect_run(&target, count, sizes, indexes).await?;
    add_step(report, &herald, &floor);
    if let Some(secs) = idle {
        let figures = idle_window(&target, &mut fleet, secs).await;
        fleet.stop().await;
        add_idle(report, count, activity, secs, figures?);
    } else {
        fleet.stop().await;
    }
    Ok(())
}

fn add_step(report: &mut Report, herald: &Connect, floor: &Connect) {
    let n = herald.count as f64;
    let p = format!("N={}: ", herald.count);
    let per_us = |c: &Connect| c.server_cpu * 1e6 / c.count as f64;
    let rss = herald.rss_after.saturating_sub(herald.rss_before) as f64;
    let buffers = herald.memory_after.tcp_buffers as f64 - herald.memory_before.tcp_buffers as f64;
    let slab = herald.memory_after.slab as f64 - herald.memory_before.slab as f64;
    report.add(
        &format!("{p}Herald connect+subscribe per second"),
        n / herald.secs,
        "/s",
    );
    report.add(
        &format!("{p}floor connect+frame per second"),
        n / floor.secs,
        "/s",
    );
    report.add(
        &format!("{p}Herald CPU per connection"),
        per_us(herald),
        "us",
    );
    report.add(&format!("{p}floor CPU per connection"), per_us(floor), "us");
    report.add(
        &format!("{p}Herald / floor CPU per connection"),
        per_us(herald) / per_us(floor).max(1e-9),
        "x",
    );
    report.add(
        &format!("{p}client CPU per connection (Herald run)"),
        herald.client_cpu * 1e6 / n,
        "us",
    );
    report.add(
        &format!("{p}server RSS, empty"),
        herald.rss_before as f64 / 1048576.0,
        "MiB",
    );
    report.add(
        &format!("{p}server RSS per socket"),
        rss / n / 1024.0,
        "KiB",
    );
    report.add(
        &format!("{p}kernel TCP buffers per connection (both ends)"),
        buffers / n,
        "B",
    );
    report.add(
        &format!("{p}kernel slab per connection (both ends)"),
        slab / n / 1024.0,
        "KiB",
    );
    let inuse = herald.memory_after.tcp_inuse as f64 - herald.memory_before.tcp_inuse as f64;
    report.add(
        &format!("{p}kernel TCP sockets added per connection"),
        inuse / n,
        "",
    );
}

/// CPU seconds and pings answered over an idle window.
struct Idle {
    cpu: f64,
    pings: u64,
    failed: u64,
}

async fn idle_window(target: &Target, fleet: &mut Fleet, secs: u64) -> Result<Idle, String> {
    // The last subscriptions' stragglers settle first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (pings_before, _) = fleet.pings().await?;
    let cpu_before = target.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = target.cpu_seconds() - cpu_before;
    let (pings_after, failed) = fleet.pings().await?;
    Ok(Idle {
        cpu,
        pings: pings_after - pings_before,
        failed,
    })
}

fn add_idle(report: &mut Report, count: u64, activity: u64, secs: u64, idle: Idle) {
    let p = format!("N={count} idle: ");
    let share = idle.cpu / secs as f64 * 100.0;
    let per_ping = idle.cpu * 1e6 / idle.pings.max(1) as f64;
    // At Pusher's default, each socket is pinged once per 120 s (the clients' pongs count).
    let pusher_rate = IDLE_TARGET_SOCKETS / PUSHER_ACTIVITY_SECS;
    report.add(&format!("{p}window"), secs as f64, "s");
    report.add(&format!("{p}activity_timeout"), activity as f64, "s");
    report.add(&format!("{p}pings answered"), idle.pings as f64, "");
    report.add(
        &format!("{p}pings per second"),
        idle.pings as f64 / secs as f64,
        "/s",
    );
    report.add(&format!("{p}server CPU"), share, "% core");
    report.add(
        &format!("{p}server CPU per 20,000 sockets"),
        share * IDLE_TARGET_SOCKETS / count as f64,
        "% core",
    );
    report.add(&format!("{p}server CPU per ping"), per_ping, "us");
    report.add(
        &format!("{p}projected, 20,000 sockets at 120 s"),
        pusher_rate * per_ping / 1e4,
        "% core",
    );
    report.add("sockets lost", idle.failed as f64, "");
}
