//! herald-bench: load scenarios against Herald (or any Pusher-compatible server that reads a
//! Sockudo-schema config.json), with real WebSocket clients and the signed REST API on loopback.
//!
//! `cargo build --release --workspace && target/release/herald-bench --scenario all` runs
//! everything against the herald binary built beside it; `--server 'CMD {config}'` runs the same
//! scenarios against another server.

mod apps;
mod burst;
mod clients;
mod cluster;
mod compression;
mod connect_floor;
mod console;
mod floor;
mod hooks;
mod kernel;
mod online;
mod pairs;
mod pg;
mod probes;
mod reader;
mod receiver;
mod report;
mod scale;
mod scale_client;
mod scale_cluster;
mod scale_conn;
mod scale_fleet;
mod scale_marks;
mod scenarios;
mod shards;
mod slow;
mod soak;
mod soak_churn;
mod soak_load;
mod soak_report;
mod soak_sampler;
mod target;
mod tls;
mod ws_wire;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde_json::json;

use receiver::WebhookCounter;
use report::Report;
use target::{free_port, Target};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Fanout,
    Channels,
    Presence,
    ClientEvents,
    Idle,
    Slow,
    WebhookBurst,
    /// Not part of `all`: the cost of hostile peers (unsigned bodies, idle connections, a
    /// consumer that stops reading, subscription-count amplification).
    Hardening,
    /// Two nodes on a private redis-server against a single node: fan-out across nodes and
    /// presence churn moving between them (in `all` when redis-server is on PATH).
    Cluster,
    /// Connection setup and subscribes with an allow-all decision hook against none, and
    /// fan-out while other sockets wait on a 50 ms hook.
    Hooks,
    /// Not part of `all`: signed-in users watching each other while a share of them reconnects
    /// every second, on a single node and on two nodes on a private redis-server.
    Online,
    /// Not part of `all`: cross-node fan-out over many channels and the publish ceiling on one
    /// Redis, on a Redis Cluster of three shards with PUBLISH, and with SPUBLISH.
    Shards,
    /// Not part of `all`: one node from 1,000 sockets to what the descriptor limits allow
    /// beside a bare connect floor, idle CPU with activity pings, then K nodes on one Redis near
    /// the cap each and a broadcast to every socket (lean mio clients as child processes).
    Scale,
    /// Not part of `all`: permessage-deflate off, on for every subscriber and for half of them,
    /// on a typical 1-2 KiB JSON event (sizes of fan-out: `--subscribers`, `--rate`, `--secs`).
    Compression,
    /// Not part of `all`: fan-out, presence churn with webhooks, client events and
    /// connect/disconnect churn together for `--minutes`, sampled every 10 s (memory,
    /// descriptors, queue gauges, latency); fails on a lost webhook, delivery or client event.
    Soak,
    /// Not part of `all`: connection setup per second with 1,000 apps in the config file
    /// against the same apps in a private PostgreSQL, its cache warm and cold.
    Apps,
    All,
}

/// Load scenarios for Pusher-compatible servers, on loopback only.
#[derive(Parser)]
#[command(name = "herald-bench")]
struct Cli {
    /// Which scenario to run.
    #[arg(long, value_enum, default_value = "all")]
    scenario: Scenario,
    /// The server command; `{config}` is replaced by the generated config path.
    /// Default: the herald binary beside this one.
    #[arg(long)]
    server: Option<String>,
    /// Fan-out: subscribers on the one channel.
    #[arg(long, default_value_t = 2000)]
    subscribers: usize,
    /// Fan-out: REST publishes per second.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// Fan-out: seconds of publishing.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Event data bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Many channels: channels (2 subscribers each).
    #[arg(long, default_value_t = 5000)]
    channels: usize,
    /// Many channels: REST publishes per second, round-robin.
    #[arg(long, default_value_t = 2000)]
    channel_rate: u64,
    /// Client events: pairs of sockets on private channels.
    #[arg(long, default_value_t = 500)]
    pairs: usize,
    /// Client events: events per second per socket.
    #[arg(long, default_value_t = 10)]
    client_rate: u64,
    /// Slow consumer: subscribers that keep reading.
    #[arg(long, default_value_t = 50)]
    slow_readers: usize,
    /// Slow consumer: event data bytes (large, to fill the slow socket's buffers quickly).
    #[arg(long, default_value_t = 65536)]
    slow_payload: usize,
    /// Slow consumer: seconds of publishing at 20 events/s.
    #[arg(long, default_value_t = 15)]
    slow_secs: u64,
    /// Presence churn: sockets joining and leaving.
    #[arg(long, default_value_t = 200)]
    churn_sockets: usize,
    /// Presence churn: seconds.
    #[arg(long, default_value_t = 10)]
    churn_secs: u64,
    /// Webhook burst: sockets, each joining and leaving presence channels of its own at once.
    #[arg(long, default_value_t = 200)]
    burst_sockets: usize,
    /// Webhook burst: presence channels each socket joins and leaves, one after the other.
    #[arg(long, default_value_t = 50)]
    burst_channels: usize,
    /// Webhook burst: milliseconds the receiver takes per request.
    #[arg(long, default_value_t = 20)]
    receiver_delay_ms: u64,
    /// Webhook burst: share of POSTs the receiver answers with 503 (independently per POST).
    #[arg(long, default_value_t = 0.3)]
    receiver_fail_rate: f64,
    /// Webhook burst: seconds the receiver is down (connection refused) from the burst's start.
    #[arg(long, default_value_t = 0)]
    receiver_down_secs: u64,
    /// Cluster: subscribers of the one channel in each fan-out run.
    #[arg(long, default_value_t = 1000)]
    cluster_subscribers: usize,
    /// Cluster: REST publishes per second.
    #[arg(long, default_value_t = 50)]
    cluster_rate: u64,
    /// Cluster: seconds of publishing per fan-out run (three runs).
    #[arg(long, default_value_t = 10)]
    cluster_secs: u64,
    /// Cluster: churning users, each with a presence socket on either node.
    #[arg(long, default_value_t = 50)]
    cluster_churn_users: usize,
    /// Cluster: seconds of presence churn.
    #[arg(long, default_value_t = 10)]
    cluster_churn_secs: u64,
    /// Hooks: sockets connected and subscribed in each setup run.
    #[arg(long, default_value_t = 2000)]
    hook_connections: usize,
    /// Hooks: of which at most this many at once.
    #[arg(long, default_value_t = 100)]
    hook_concurrency: usize,
    /// Hooks: fan-out subscribers beside the subscribing sockets.
    #[arg(long, default_value_t = 1000)]
    hook_subscribers: usize,
    /// Online: signed-in users, one connection each (capped by the file-descriptor limit).
    #[arg(long, default_value_t = 10000)]
    online_users: usize,
    /// Online: users each one watches (the next ones, so each is watched by as many).
    #[arg(long, default_value_t = 20)]
    online_watch: usize,
    /// Online: percent of the users reconnecting (signing in again) each second; a user at most
    /// once per 5 s.
    #[arg(long, default_value_t = 5.0)]
    online_churn: f64,
    /// Online: seconds of churn.
    #[arg(long, default_value_t = 20)]
    online_secs: u64,
    /// Shards: channels the events are spread over.
    #[arg(long, default_value_t = 200)]
    shards_channels: usize,
    /// Shards: subscribers of each channel, all on node B.
    #[arg(long, default_value_t = 5)]
    shards_per_channel: usize,
    /// Shards: REST publishes per second in the fan-out run.
    #[arg(long, default_value_t = 500)]
    shards_rate: u64,
    /// Shards: seconds of the fan-out run.
    #[arg(long, default_value_t = 10)]
    shards_secs: u64,
    /// Shards: the publish rates tried, in order, for the ceiling.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,4000,8000")]
    shards_ceiling_rates: Vec<u64>,
    /// Shards: seconds of each ceiling step.
    #[arg(long, default_value_t = 5)]
    shards_ceiling_secs: u64,
    /// Idle: connections (capped by the file-descriptor limit).
    #[arg(long, default_value_t = 20000)]
    idle_connections: usize,
    /// Scale: the largest single-node socket count (default: what the server's descriptor
    /// limit allows). Spread over as many client processes as their own limits need.
    #[arg(long)]
    scale_connections: Option<u64>,
    /// Scale: the single-node counts below the largest.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    scale_steps: Vec<u64>,
    /// Scale: cluster nodes on one private redis-server (0: no cluster part).
    #[arg(long, default_value_t = 4)]
    scale_nodes: usize,
    /// Scale: sockets per cluster node (default: what a node's descriptor limit allows).
    #[arg(long)]
    scale_node_connections: Option<u64>,
    /// Scale: seconds of idle CPU at the largest single-node count (activity_timeout is half).
    #[arg(long, default_value_t = 30)]
    scale_idle_secs: u64,
    /// Scale: broadcasts to every cluster socket (the median is reported).
    #[arg(long, default_value_t = 3)]
    scale_broadcasts: usize,
    /// Scale: handshakes in flight per server, shared by its client processes. Below the
    /// listen backlog (128 for Herald, as for std and mio listeners): more overflows the
    /// accept queue, and a dropped SYN is sent again only after a second.
    #[arg(long, default_value_t = 100)]
    scale_concurrency: usize,
    /// Apps: timed sockets per case, spread over the apps' keys.
    #[arg(long, default_value_t = 2000)]
    apps_connections: u64,
    /// Apps: apps in the config file or the table.
    #[arg(long, default_value_t = 1000)]
    apps_count: u64,
    /// sendfloor.c, compiled and run beside fan-out to report this machine's floor.
    #[arg(long, default_value = "../shared/tools/sendfloor.c")]
    sendfloor: PathBuf,
    /// Herald's debug console during the run: off, on and closed, or open (one viewer streaming
    /// the bench app's journal).
    #[arg(long, value_enum, default_value = "closed")]
    console: console::ConsoleMode,
    /// Serve TLS: a private CA and a certificate for 127.0.0.1 made with `openssl` (removed at
    /// the end), the server's `ssl` block, wss:// clients and an https:// publisher trusting only
    /// that CA (the clients' TLS work is the bench's CPU, not the server's).
    #[arg(long)]
    tls: bool,
    /// Soak: duration and sizes.
    #[command(flatten)]
    soak: soak::Sizes,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn default_server() -> String {
    let exe = std::env::current_exe().expect("current exe");
    let herald = exe.with_file_name("herald");
    format!("{} --config {{config}}", herald.display())
}

/// The per-process open-file limit, read from /proc.
fn fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(1024)
}

fn scale_sizes(cli: &Cli) -> scale::Sizes {
    scale::Sizes {
        steps: cli.scale_steps.clone(),
        largest: cli.scale_connections,
        nodes: cli.scale_nodes,
        node_connections: cli.scale_node_connections,
        idle_secs: cli.scale_idle_secs,
        broadcasts: cli.scale_broadcasts.max(1),
        concurrency: cli.scale_concurrency.max(1),
        sendfloor: cli.sendfloor.clone(),
    }
}

fn cluster_sizes(cli: &Cli) -> cluster::Sizes {
    cluster::Sizes {
        subscribers: cli.cluster_subscribers,
        rate: cli.cluster_rate,
        secs: cli.cluster_secs,
        payload: cli.payload,
        churn_users: cli.cluster_churn_users,
        churn_secs: cli.cluster_churn_secs,
    }
}

/// The online sizes; the users capped below the file-descriptor limit, as the bench holds a
/// connection per user (the servers are child processes with their own).
fn online_sizes(cli: &Cli) -> online::Sizes {
    let limit = fd_limit().saturating_sub(200);
    if cli.online_users > limit {
        eprintln!(
            "online: capping {} users to {limit} (file-descriptor limit)",
            cli.online_users
        );
    }
    let users = cli.online_users.min(limit);
    online::Sizes {
        users,
        watch: cli.online_watch.min(users.saturating_sub(1)),
        percent: cli.online_churn,
        secs: cli.online_secs,
    }
}

async fn run(cli: &Cli, scenario: Scenario, server: &str) -> Result<Report, String> {
    let port = free_port();
    match scenario {
        Scenario::Fanout => {
            let target = Target::start(server, &target::config(port, None), port)?;
            let load = scenarios::PublishLoad {
                name: "fan-out",
                channels: 1,
                per_channel: cli.subscribers,
                rate: cli.rate,
                secs: cli.secs,
                payload: cli.payload,
            };
            let place = scenarios::Placement::single(&target);
            let mut report = scenarios::publish_load(&place, &load).await?;
            let ours = report
                .rows
                .iter()
                .find(|r| r.0 == "server CPU per delivery")
                .map_or(0.0, |r| r.1);
            if let Some(floor) = floor::sendfloor(&cli.sendfloor, cli.subscribers) {
                let us = floor["us_cpu_per_write"].as_f64().unwrap_or(0.0);
                report.add("sendfloor CPU per write (same run)", us, "us");
                report.add("server CPU per delivery / floor", ours / us.max(1e-9), "x");
            }
            match floor::paced(cli.subscribers, cli.rate, cli.secs) {
                Ok(us) => {
                    report.add("paced floor CPU per write (same run)", us, "us");
                    report.add(
                        "server CPU per delivery / paced floor",
                        ours / us.max(1e-9),
                        "x",
                    );
                }
                Err(error) => eprintln!("paced floor: {error}"),
            }
            Ok(report)
        }
        Scenario::Channels => {
            let target = Target::start(server, &target::config(port, None), port)?;
            let load = scenarios::PublishLoad {
                name: "many channels",
                channels: cli.channels,
                per_channel: 2,
                rate: cli.channel_rate,
                secs: cli.secs,
                payload: cli.payload,
            };
            scenarios::publish_load(&scenarios::Placement::single(&target), &load).await
        }
        Scenario::ClientEvents => {
            let target = Target::start(server, &target::config(port, None), port)?;
            pairs::client_events(&target, cli.pairs, cli.client_rate, cli.secs).await
        }
        Scenario::Slow => {
            let target = Target::start(server, &target::config(port, None), port)?;
            slow::slow_consumer(
                &target,
                cli.slow_readers,
                20,
                cli.slow_secs,
                cli.slow_payload,
            )
            .await
        }
        Scenario::Presence => {
            let counter = WebhookCounter::default();
            let url = counter.start().await;
            let target = Target::start(server, &target::config(port, Some(&url)), port)?;
            scenarios::presence_churn(&target, &counter, cli.churn_sockets, cli.churn_secs).await
        }
        Scenario::WebhookBurst => {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut config = target::config(port, Some(&format!("http://{addr}/webhooks")));
            // Retries from 200 ms, capped at 2 s (the target settings). Sockudo reads
            // them from its queue's settings, and sends webhooks only with a queue configured.
            config["webhooks"]["retry"] =
                json!({"initial_backoff_ms": 200, "max_backoff_ms": 2000});
            config["queue"] = json!({"driver": "memory", "reliability": {
                "retry_base_delay_ms": 200, "retry_max_delay_ms": 2000, "max_attempts": 1000,
                "memory_capacity": 1_000_000}});
            let target = Target::start(server, &config, port)?;
            let burst = burst::Burst {
                sockets: cli.burst_sockets,
                channels_per_socket: cli.burst_channels,
            };
            let behaviour = burst::Behaviour {
                delay: std::time::Duration::from_millis(cli.receiver_delay_ms),
                fail_rate: cli.receiver_fail_rate,
                down_for: std::time::Duration::from_secs(cli.receiver_down_secs),
            };
            burst::webhook_burst(&target, addr, &burst, behaviour).await
        }
        Scenario::Idle => {
            let target = Target::start(server, &target::config(port, None), port)?;
            let limit = fd_limit().saturating_sub(100);
            if cli.idle_connections > limit {
                eprintln!(
                    "idle: capping {} connections to {limit} (file-descriptor limit)",
                    cli.idle_connections
                );
            }
            scenarios::idle(&target, cli.idle_connections.min(limit)).await
        }
        Scenario::Hardening => probes::hardening(server).await,
        Scenario::Cluster => cluster::cluster(server, &cluster_sizes(cli)).await,
        Scenario::Hooks => {
            let sizes = hooks::Sizes {
                connections: cli.hook_connections,
                concurrency: cli.hook_concurrency,
                subscribers: cli.hook_subscribers,
                rate: cli.rate,
                secs: cli.secs,
                payload: cli.payload,
            };
            hooks::hooks(server, &sizes).await
        }
        Scenario::Online => online::online(server, &online_sizes(cli)).await,
        Scenario::Shards => {
            let sizes = shards::Sizes {
                channels: cli.shards_channels,
                per_channel: cli.shards_per_channel,
                rate: cli.shards_rate,
                secs: cli.shards_secs,
                payload: cli.payload,
                ceiling_rates: cli.shards_ceiling_rates.clone(),
                ceiling_secs: cli.shards_ceiling_secs,
            };
            shards::shards(server, &sizes).await
        }
        Scenario::Scale => scale::scale(server, &scale_sizes(cli)).await,
        Scenario::Compression => {
            let sizes = compression::Sizes {
                subscribers: cli.subscribers.min(fd_limit().saturating_sub(200)),
                rate: cli.rate,
                secs: cli.secs,
            };
            compression::compression(server, &sizes).await
        }
        Scenario::Soak => soak::soak(server, &cli.soak, cli.payload).await,
        Scenario::Apps => {
            let sizes = apps::Sizes {
                connections: cli.apps_connections,
                apps: cli.apps_count.max(1),
                concurrency: cli.scale_concurrency.max(1),
            };
            apps::apps(server, &sizes).await
        }
        Scenario::All => unreachable!("expanded by main"),
    }
}

/// The hidden modes the scale scenario starts this binary in: `scale-client` and
/// `connect-floor` (each a plain epoll loop, no runtime).
fn hidden_mode() -> Option<i32> {
    let mut args = std::env::args();
    let mode = args.nth(1)?;
    match mode.as_str() {
        "scale-client" => {
            let client = scale_client::ClientArgs::parse_from(std::env::args().skip(1));
            Some(scale_client::run(client))
        }
        "connect-floor" => {
            let port = args.skip_while(|a| a != "--port").nth(1)?.parse().ok()?;
            Some(connect_floor::run(port))
        }
        _ => None,
    }
}

fn main() {
    if let Some(code) = hidden_mode() {
        std::process::exit(code);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let cli = Cli::parse();
    console::set_mode(cli.console);
    if cli.tls {
        if let Err(error) = tls::enable() {
            eprintln!("--tls: {error}");
            std::process::exit(1);
        }
    }
    let server = cli.server.clone().unwrap_or_else(default_server);
    let scenarios = match cli.scenario {
        Scenario::All => {
            let mut all = vec![
                Scenario::Fanout,
                Scenario::Channels,
                Scenario::Presence,
                Scenario::ClientEvents,
                Scenario::Idle,
                Scenario::Slow,
                Scenario::WebhookBurst,
                Scenario::Hooks,
            ];
            match cluster::redis_server() {
                Some(_) => all.push(Scenario::Cluster),
                None => println!("cluster: skipped, {}", cluster::NO_REDIS),
            }
            all
        }
        Scenario::Apps if pg::bin_dir().is_none() => {
            println!("apps: skipped, {}", pg::NO_POSTGRES);
            Vec::new()
        }
        one => vec![one],
    };
    println!("server: {server}");
    let mut results = Vec::new();
    let mut failed = false;
    for scenario in scenarios {
        match run(&cli, scenario, &server).await {
            Ok(report) => {
                report.print();
                results.push(report.json());
                if let Some(failure) = &report.failure {
                    eprintln!("scenario failed: {failure}");
                    failed = true;
                }
            }
            Err(error) => {
                eprintln!("scenario failed: {error}");
                failed = true;
            }
        }
    }
    println!("tls: {}", tls::describe());
    tls::cleanup();
    let all = json!({"server": server, "tls": cli.tls, "results": results});
    println!("\n{all}");
    if let Some(path) = &cli.json {
        std::fs::write(path, all.to_string()).expect("write the JSON results");
    }
    if failed {
        std::process::exit(1);
    }
}
