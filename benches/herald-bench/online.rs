//! The online scenario (not part of `all`): users online and offline. `users` users, one
//! signed-in connection each, each watching the next `watch` users (so each is watched by as
//! many); for `secs`, `percent` of them a second (evenly spread, at random) close their
//! connection and sign in again on a new one, once `user_offline` has arrived (a user is asked
//! again at the earliest 5 s after its last sign-in). Once on a single node, then on two nodes
//! sharing a private redis-server, where each reconnect moves the user to the other node.
//!
//! Measured: transitions (a reconnect is one offline and one online) per server CPU-second,
//! the watchlist frames the clients got and whether every watcher saw every change it must
//! have, the `user_online`/`user_offline` webhooks (grace period 0, so every transition is
//! sent) lost, duplicated and out of order, and the latency from a sign-in being sent to its
//! watchers' `online`.

mod check;
mod hooks;
mod users;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::task::JoinHandle;

use crate::clients::now_micros;
use crate::cluster::{node_config, redis_server, start_redis, NO_REDIS};
use crate::report::{percentile, Report};
use crate::target::{self, free_port, own_cpu_seconds, Target};
use hooks::UserHooks;
use users::{user_task, Command, Ctx, UserLog};

/// Sizes of the online scenario.
pub struct Sizes {
    /// Users, one connection each.
    pub users: usize,
    /// Users each one watches.
    pub watch: usize,
    /// Share of the users reconnecting each second, in percent.
    pub percent: f64,
    /// Seconds of churn.
    pub secs: u64,
}

/// Where a run's users connect, and the processes whose CPU it counts, by name.
struct Nodes<'a> {
    ports: Vec<u16>,
    processes: Vec<(&'static str, &'a Target)>,
}

impl Nodes<'_> {
    fn cpu_seconds(&self) -> Vec<f64> {
        self.processes.iter().map(|p| p.1.cpu_seconds()).collect()
    }
}

/// The bench app with watchlist events on, and an endpoint for the user events only.
fn with_user_events(mut config: Value, webhook: &str) -> Value {
    let app = &mut config["app_manager"]["array"]["apps"][0];
    app["enable_watchlist_events"] = json!(true);
    app["webhooks"] = json!([{"url": webhook, "event_types": ["user_online", "user_offline"]}]);
    config
}

/// Runs the scenario on a single node, then on two (skipped without redis-server).
pub async fn online(server: &str, sizes: &Sizes) -> Result<Report, String> {
    let mut report = Report::new("online");
    {
        // Stopped before the two nodes start, so it does not idle beside their measurement.
        let hooks = UserHooks::new(sizes.users);
        let port = free_port();
        let config = with_user_events(target::config(port, None), &hooks.start().await);
        let node = Target::start(server, &config, port)?;
        let nodes = Nodes {
            ports: vec![port],
            processes: vec![("node", &node)],
        };
        run(&mut report, "single node: ", &nodes, hooks, sizes).await?;
    }
    match redis_server() {
        Some(binary) => two_nodes(&mut report, server, &binary, sizes).await?,
        None => eprintln!("online: two nodes skipped, {NO_REDIS}"),
    }
    Ok(report)
}

/// The same on nodes A and B sharing a private redis-server; the CPU is A + B + Redis.
async fn two_nodes(
    report: &mut Report,
    server: &str,
    binary: &Path,
    sizes: &Sizes,
) -> Result<(), String> {
    let hooks = UserHooks::new(sizes.users);
    let webhook = hooks.start().await;
    // Declared first, dropped last: the nodes leave Redis before it stops.
    let redis = start_redis(binary)?;
    let start = |id: &str| {
        let port = free_port();
        let config = with_user_events(node_config(port, &webhook, &redis, id), &webhook);
        Target::start(server, &config, port)
    };
    let (a, b) = (start("bench-a")?, start("bench-b")?);
    let nodes = Nodes {
        ports: vec![a.port, b.port],
        processes: vec![("node A", &a), ("node B", &b), ("redis-server", &redis)],
    };
    run(report, "two nodes: ", &nodes, hooks, sizes).await
}

type Tasks = Vec<JoinHandle<Result<UserLog, String>>>;

/// One task per user, each with its command channel; a task that fails says why at once.
fn spawn_users(ctx: &Arc<Ctx>) -> (Vec<UnboundedSender<Command>>, Tasks) {
    (0..ctx.users)
        .map(|i| {
            let (send, receive) = mpsc::unbounded_channel();
            let ctx = ctx.clone();
            let task = tokio::spawn(async move {
                let result = user_task(i, ctx, receive).await;
                if let Err(error) = &result {
                    eprintln!("online: {error}");
                }
                result
            });
            (send, task)
        })
        .unzip()
}

/// Waits until every user is signed in and its `user_online` arrived; returns the seconds.
async fn setup(ctx: &Ctx, tasks: &Tasks) -> Result<f64, String> {
    let started = Instant::now();
    while ctx.ready.load(Ordering::Relaxed) < ctx.users {
        if tasks.iter().any(|t| t.is_finished()) {
            return Err("a user failed to sign in (see above)".into());
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err("the users did not sign in within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A missing one is not waited for forever: it shows as lost in the report.
    let online = |_: usize, t: &hooks::UserTally| t.online >= 1;
    ctx.hooks.wait_all(online, Duration::from_secs(30)).await;
    Ok(started.elapsed().as_secs_f64())
}

/// What the churn asked for: reconnects per user, and the asks no user was ready for.
struct Churn {
    asked: Vec<u64>,
    skipped: u64,
}

/// Asks `percent` of the users a second to reconnect, one at a time evenly spread, for `secs`.
async fn churn(ctx: &Ctx, senders: &[UnboundedSender<Command>], sizes: &Sizes) -> Churn {
    let rate = (sizes.users as f64 * sizes.percent / 100.0).max(1e-3);
    let count = (rate * sizes.secs as f64).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut churn = Churn {
        asked: vec![0; sizes.users],
        skipped: 0,
    };
    let mut rng = StdRng::seed_from_u64(sizes.users as u64);
    let started = Instant::now();
    for n in 0..count {
        tokio::time::sleep_until((started + interval.mul_f64(n as f64)).into()).await;
        let Some(u) = pick(&mut rng, ctx, &churn.asked) else {
            churn.skipped += 1;
            continue;
        };
        churn.asked[u] += 1;
        let _ = senders[u].send(Command::Reconnect);
    }
    // The churn lasts `secs` even when it asks for nothing (`--online-churn 0`: the idle cost).
    tokio::time::sleep_until((started + Duration::from_secs(sizes.secs)).into()).await;
    churn
}

/// A random user that may reconnect now: its last sign-in's `user_online` arrived (so its
/// next `user_offline` cannot overtake it on the way to the receiver, which would look out of
/// order), and, after a reconnect, that sign-in was sent `LATE_MICROS` ago (so its watchers
/// had that long to see the change before the next one). `None` when 100 tries found none.
fn pick(rng: &mut StdRng, ctx: &Ctx, asked: &[u64]) -> Option<usize> {
    let rested = now_micros().saturating_sub(check::LATE_MICROS);
    let ready = |u: usize| {
        (asked[u] == 0 || ctx.signed_at(u) <= rested) && ctx.hooks.user(u).online == asked[u] + 1
    };
    (0..100)
        .map(|_| rng.random_range(0..asked.len()))
        .find(|&u| ready(u))
}

/// Waits (30 s at most) until every asked reconnect has signed in again.
async fn reconnected(ctx: &Ctx, asked: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctx.reconnected.load(Ordering::Relaxed) < asked {
        if Instant::now() > deadline {
            return Err("reconnects still unfinished 30 s after the churn".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Has every open connection note its view (every user is online now), then closes them all
/// (the closed channels) and gathers the logs.
async fn finish(
    ctx: &Ctx,
    senders: Vec<UnboundedSender<Command>>,
    tasks: Tasks,
) -> Result<Vec<UserLog>, String> {
    for sender in &senders {
        let _ = sender.send(Command::Check);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctx.checked.load(Ordering::Relaxed) < ctx.users && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(senders);
    let mut logs = Vec::with_capacity(tasks.len());
    for task in tasks {
        logs.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok(logs)
}

/// What the churn cost, from its start until its webhooks settled.
struct Cost {
    churn_secs: f64,
    /// CPU seconds of each server process.
    server_cpu: Vec<(&'static str, f64)>,
    own_cpu: f64,
    /// Seconds from the last reconnect until every webhook of the churn arrived (-1: never).
    settled: f64,
}

/// One run: users signed in, churned, checked and closed.
async fn run(
    report: &mut Report,
    prefix: &str,
    nodes: &Nodes<'_>,
    hooks: UserHooks,
    sizes: &Sizes,
) -> Result<(), String> {
    let ctx = Ctx::new(nodes.ports.clone(), sizes.users, sizes.watch, hooks.clone());
    let ctx = Arc::new(ctx);
    let (senders, tasks) = spawn_users(&ctx);
    let setup_secs = setup(&ctx, &tasks).await?;
    let (churn, cost) = measure(&ctx, &senders, nodes, sizes).await?;
    let logs = finish(&ctx, senders, tasks).await?;
    // Every user goes offline once more as its last connection closes.
    let closed = |i: usize, t: &hooks::UserTally| t.offline > churn.asked[i];
    hooks.wait_all(closed, Duration::from_secs(30)).await;
    // Late duplicates would arrive by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let row = |name: &str| format!("{prefix}{name}");
    report.add(&row("users (one connection each)"), sizes.users as f64, "");
    report.add(&row("watched users per user"), sizes.watch as f64, "");
    report.add(&row("first sign-in of every user"), setup_secs, "s");
    add_cost(report, &row, &churn, &cost);
    add_watchers(report, &row, &logs, sizes.watch);
    add_webhooks(report, &row, &hooks, &churn, &logs, cost.settled);
    Ok(())
}

/// The churn, its webhooks settling and the late frames, with the CPU they took.
async fn measure(
    ctx: &Ctx,
    senders: &[UnboundedSender<Command>],
    nodes: &Nodes<'_>,
    sizes: &Sizes,
) -> Result<(Churn, Cost), String> {
    let cpu_before = nodes.cpu_seconds();
    let own_before = own_cpu_seconds();
    ctx.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let churn = churn(ctx, senders, sizes).await;
    reconnected(ctx, churn.asked.iter().sum()).await?;
    let churn_secs = started.elapsed().as_secs_f64();
    let done = |i: usize, t: &hooks::UserTally| {
        t.online == churn.asked[i] + 1 && t.offline == churn.asked[i]
    };
    let settled = ctx.hooks.wait_all(done, Duration::from_secs(15)).await;
    // The watchers' last frames (and any duplicate) are part of the churn's cost.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctx.measuring.store(false, Ordering::Relaxed);
    let cost = Cost {
        churn_secs,
        server_cpu: (nodes.processes.iter().zip(nodes.cpu_seconds()))
            .zip(cpu_before)
            .map(|((p, after), before)| (p.0, after - before))
            .collect(),
        own_cpu: own_cpu_seconds() - own_before,
        settled,
    };
    Ok((churn, cost))
}

fn add_cost(report: &mut Report, row: &dyn Fn(&str) -> String, churn: &Churn, cost: &Cost) {
    let reconnects: u64 = churn.asked.iter().sum();
    let transitions = (reconnects * 2) as f64;
    report.add(
        &row("reconnects (one offline + one online each)"),
        reconnects as f64,
        "",
    );
    report.add(
        &row("reconnects skipped (no user ready)"),
        churn.skipped as f64,
        "",
    );
    report.add(&row("transitions"), transitions, "");
    report.add(
        &row("transitions per second"),
        transitions / cost.churn_secs,
        "/s",
    );
    let server_cpu: f64 = cost.server_cpu.iter().map(|p| p.1).sum();
    report.add(&row("server CPU seconds"), server_cpu, "s");
    if cost.server_cpu.len() > 1 {
        for (name, cpu) in &cost.server_cpu {
            report.add(&row(&format!("server CPU seconds: {name}")), *cpu, "s");
        }
    }
    let per_cpu = transitions / server_cpu.max(1e-9);
    report.add(&row("transitions per server CPU-second"), per_cpu, "/cpu-s");
    report.add(&row("load generator CPU seconds"), cost.own_cpu, "s");
}

/// What the watchers got: frames, every change checked, the views at the end, and latency.
fn add_watchers(report: &mut Report, row: &dyn Fn(&str) -> String, logs: &[UserLog], watch: usize) {
    let sum = |f: fn(&UserLog) -> u64| logs.iter().map(f).sum::<u64>() as f64;
    report.add(&row("watchlist frames delivered"), sum(|l| l.frames), "");
    let checked = check::watch_changes(logs, watch);
    let name = "watchlist changes checked (watcher open throughout)";
    report.add(&row(name), checked.changes as f64, "");
    report.add(
        &row("watchlist changes lost (none in 5 s)"),
        checked.lost as f64,
        "",
    );
    report.add(
        &row("watchlist changes duplicated"),
        checked.duplicated as f64,
        "",
    );
    let name = "watchlist ids not watched or events misnamed";
    report.add(&row(name), sum(|l| l.strangers), "");
    let name = "watched users offline in a view at the end (all online)";
    report.add(&row(name), sum(|l| l.wrong_at_end), "");
    let mut samples: Vec<u64> = logs
        .iter()
        .flat_map(|l| l.latencies.iter().copied())
        .collect();
    samples.sort_unstable();
    report.add(
        &row("sign-in to watchers' online: samples"),
        samples.len() as f64,
        "",
    );
    for p in [50.0, 99.0] {
        let name = format!("sign-in to watchers' online p{p}");
        report.add(&row(&name), percentile(&samples, p) as f64 / 1000.0, "ms");
    }
    let max = samples.last().copied().unwrap_or(0) as f64 / 1000.0;
    report.add(&row("sign-in to watchers' online max"), max, "ms");
}

/// The user webhooks against the truth: per user, one online per sign-in and one offline per
/// close, strictly alternating.
fn add_webhooks(
    report: &mut Report,
    row: &dyn Fn(&str) -> String,
    hooks: &UserHooks,
    churn: &Churn,
    logs: &[UserLog],
    settled: f64,
) {
    let (users, unknown) = hooks.snapshot();
    let (mut expected, mut lost, mut duplicated, mut out_of_order) = (0u64, 0u64, 0u64, 0u64);
    for (tally, asked) in users.iter().zip(&churn.asked) {
        let each = asked + 1;
        for got in [tally.online, tally.offline] {
            expected += each;
            lost += each.saturating_sub(got);
            duplicated += got.saturating_sub(each);
        }
        out_of_order += tally.out_of_order;
    }
    let unconfirmed: u64 = logs.iter().map(|l| l.unconfirmed).sum();
    report.add(
        &row("user webhooks expected (with setup and close)"),
        expected as f64,
        "",
    );
    report.add(
        &row("user webhooks settled after the last reconnect"),
        settled,
        "s",
    );
    report.add(
        &row("reconnects without their offline webhook in 5 s"),
        unconfirmed as f64,
        "",
    );
    report.add(&row("user webhooks lost"), lost as f64, "");
    report.add(&row("user webhooks duplicated"), duplicated as f64, "");
    report.add(&row("user webhooks out of order"), out_of_order as f64, "");
    report.add(&row("user webhooks for unknown users"), unknown as f64, "");
}
