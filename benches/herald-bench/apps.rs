//! The apps scenario (not in `all`): connection setup per second (connect,
//! `pusher:connection_established`, one subscribe and its reply, as the scale scenario's
//! single-node step counts it) with many apps in the config file (`memory`) against the same
//! apps in a private PostgreSQL (`pgsql`), its cache warm and cold. Each case on a fresh server;
//! the sockets are the scale scenario's lean clients, spread over the app keys.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::pg::{self, Postgres};
use crate::report::Report;
use crate::scale::{connect_bound, Indexes};
use crate::scale_fleet::{Fleet, Plan};
use crate::target::{self, free_port, Target};

/// Herald's own DDL of Sockudo's table, so the rows are read from exactly what it would create.
const CREATE_TABLE: &str = include_str!("../../src/app_store/sql/postgres_applications.sql");
/// The app keys are this followed by the app's number (the clients' `--app-key`).
const KEY_PREFIX: &str = "apps-key-";

/// Sizes of the apps scenario.
pub struct Sizes {
    /// Sockets of the timed phase, spread over the apps' keys.
    pub connections: u64,
    /// Apps, in the config file or in the table.
    pub apps: u64,
    /// Handshakes in flight.
    pub concurrency: usize,
}

/// What the timed phase of one case cost.
struct Timed {
    count: u64,
    secs: f64,
    server_cpu: f64,
    client_cpu: f64,
    /// PostgreSQL's CPU over the phase (the pgsql cases).
    database_cpu: Option<f64>,
}

/// The apps of the config file (`memory`), with the table's limits (0: unlimited).
fn memory_apps(apps: u64) -> Value {
    let apps: Vec<Value> = (0..apps)
        .map(|i| {
            json!({"id": format!("apps-id-{i}"), "key": format!("{KEY_PREFIX}{i}"),
                "secret": format!("apps-secret-{i}"), "enabled": true,
                "max_connections": 0, "max_client_events_per_second": 0})
        })
        .collect();
    json!({"driver": "memory", "array": {"apps": apps}})
}

/// The server config: the bench's, with `app_manager` (and `database`) replaced.
fn config(port: u16, app_manager: Value, database: Option<Value>) -> Value {
    let mut config = target::config(port, None);
    config["app_manager"] = app_manager;
    if let Some(database) = database {
        config["database"] = database;
    }
    config
}

/// A pgsql config on `postgres`: apps kept for 300 s once read.
fn pgsql_config(port: u16, postgres: &Postgres) -> Value {
    let manager = json!({"driver": "pgsql", "cache": {"enabled": true, "ttl": 300}});
    let database = json!({"postgres": {"url": postgres.url(), "cache_ttl": 300}});
    config(port, manager, Some(database))
}

/// The table and its `apps` rows, inserted in one statement.
fn fill(postgres: &Postgres, apps: u64) -> Result<(), String> {
    postgres.psql(&CREATE_TABLE.replace("{table}", "applications"))?;
    postgres.psql(&format!(
        "INSERT INTO applications (id, key, secret, max_connections, \
         max_client_events_per_second, enabled) \
         SELECT 'apps-id-' || i, '{KEY_PREFIX}' || i, 'apps-secret-' || i, 0, 0, true \
         FROM generate_series(0, {}) AS i",
        apps.saturating_sub(1)
    ))
}

/// Connects and subscribes `count` sockets (socket `i` with key `i % apps`), each on a
/// channel of its own; returns the figures with the fleet still connected.
async fn connect(
    target: &Target,
    postgres: Option<&Postgres>,
    count: u64,
    sizes: &Sizes,
    indexes: &mut Indexes,
) -> Result<(Timed, Fleet), String> {
    let plan = Plan {
        port: target.port,
        count,
        // Whole thousands: socket `first + i` has key `i % apps` when apps divide 1,000.
        first: indexes.take(count),
        concurrency: sizes.concurrency,
        extra: [
            "--app-key",
            KEY_PREFIX,
            "--app-keys",
            &sizes.apps.to_string(),
        ]
        .map(str::to_owned)
        .to_vec(),
    };
    let mut fleet = Fleet::start(&plan).await?;
    let database_before = postgres.map(Postgres::cpu_seconds);
    let (cpu_before, client_before) = (target.cpu_seconds(), fleet.cpu_seconds());
    fleet.start_connecting().await?;
    let connected = fleet
        .connected(Instant::now() + connect_bound(count))
        .await?;
    let timed = Timed {
        count,
        secs: connected.secs(),
        server_cpu: target.cpu_seconds() - cpu_before,
        client_cpu: fleet.cpu_seconds() - client_before,
        database_cpu: postgres
            .zip(database_before)
            .map(|(p, b)| p.cpu_seconds() - b),
    };
    if connected.failed > 0 {
        return Err(format!(
            "{} of {count} sockets failed to connect and subscribe: {:?}",
            connected.failed, connected.errors
        ));
    }
    Ok((timed, fleet))
}

/// One case on a fresh server: with `warm`, one socket per app first (not timed, closed
/// before the timed phase), then the timed sockets.
async fn case(
    server: &str,
    config: &Value,
    postgres: Option<&Postgres>,
    warm: bool,
    sizes: &Sizes,
    indexes: &mut Indexes,
) -> Result<Timed, String> {
    let target = Target::start(server, config, config["port"].as_u64().unwrap_or(0) as u16)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    if warm {
        let (_, fleet) = connect(&target, postgres, sizes.apps, sizes, indexes).await?;
        fleet.stop().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (timed, fleet) = connect(&target, postgres, sizes.connections, sizes, indexes).await?;
    fleet.stop().await;
    Ok(timed)
}

/// Runs the three cases; PostgreSQL starts after the memory case and stops at the end.
pub async fn apps(server: &str, sizes: &Sizes) -> Result<Report, String> {
    let bin = pg::bin_dir().ok_or(pg::NO_POSTGRES)?;
    let mut indexes = Indexes::default();
    let mut report = Report::new("apps");
    report.add("apps", sizes.apps as f64, "");
    report.add("timed sockets per case", sizes.connections as f64, "");
    let memory = {
        let port = free_port();
        let config = config(port, memory_apps(sizes.apps), None);
        case(server, &config, None, false, sizes, &mut indexes).await?
    };
    add_case(&mut report, "memory", &memory);
    let postgres = Postgres::start(&bin)?;
    fill(&postgres, sizes.apps)?;
    let mut pgsql = Vec::new();
    for warm in [true, false] {
        let config = pgsql_config(free_port(), &postgres);
        pgsql.push(case(server, &config, Some(&postgres), warm, sizes, &mut indexes).await?);
    }
    add_case(&mut report, "pgsql warm", &pgsql[0]);
    add_case(&mut report, "pgsql cold", &pgsql[1]);
    compare(&mut report, &memory, &pgsql[0], &pgsql[1], sizes);
    Ok(report)
}

fn per_second(timed: &Timed) -> f64 {
    timed.count as f64 / timed.secs.max(1e-9)
}

fn cpu_us(timed: &Timed) -> f64 {
    timed.server_cpu * 1e6 / timed.count.max(1) as f64
}

fn add_case(report: &mut Report, name: &str, timed: &Timed) {
    let n = timed.count.max(1) as f64;
    let p = format!("{name}: ");
    report.add(
        &format!("{p}connect+subscribe per second"),
        per_second(timed),
        "/s",
    );
    report.add(&format!("{p}seconds"), timed.secs, "s");
    report.add(
        &format!("{p}server CPU per connection"),
        cpu_us(timed),
        "us",
    );
    report.add(
        &format!("{p}client CPU per connection"),
        timed.client_cpu * 1e6 / n,
        "us",
    );
    if let Some(cpu) = timed.database_cpu {
        report.add(&format!("{p}PostgreSQL CPU, timed phase"), cpu * 1e3, "ms");
    }
}

/// The ratios to memory, and what the cold case's lookups cost beyond the warm case.
fn compare(report: &mut Report, memory: &Timed, warm: &Timed, cold: &Timed, sizes: &Sizes) {
    let rate = per_second(memory).max(1e-9);
    report.add(
        "pgsql warm / memory, per second",
        per_second(warm) / rate,
        "x",
    );
    report.add(
        "pgsql cold / memory, per second",
        per_second(cold) / rate,
        "x",
    );
    let memory_cpu = cpu_us(memory).max(1e-9);
    report.add(
        "pgsql warm / memory, CPU per connection",
        cpu_us(warm) / memory_cpu,
        "x",
    );
    report.add(
        "pgsql cold / memory, CPU per connection",
        cpu_us(cold) / memory_cpu,
        "x",
    );
    let lookups = sizes.apps.min(cold.count).max(1) as f64;
    report.add(
        "pgsql cold: lookups (first socket of each key)",
        lookups,
        "",
    );
    let share = lookups / cold.count.max(1) as f64 * 100.0;
    report.add("pgsql cold: sockets that made a lookup", share, "%");
    let extra_cpu = cold.server_cpu - warm.server_cpu;
    report.add(
        "pgsql cold: server CPU per lookup beyond warm",
        extra_cpu * 1e6 / lookups,
        "us",
    );
    let cpu_share = extra_cpu / cold.server_cpu.max(1e-9) * 100.0;
    report.add("pgsql cold: lookups' share of server CPU", cpu_share, "%");
    let time_share = (cold.secs - warm.secs) / cold.secs.max(1e-9) * 100.0;
    report.add("pgsql cold: lookups' share of setup time", time_share, "%");
    if let Some(database) = cold.database_cpu {
        report.add(
            "pgsql cold: PostgreSQL CPU per lookup",
            database * 1e6 / lookups,
            "us",
        );
    }
}
