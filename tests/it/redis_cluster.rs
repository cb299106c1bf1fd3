//! A private Redis Cluster for one test: three primaries with one replica each (six
//! `redis-server` processes on free loopback ports, `cluster-node-timeout` 1000 ms), joined by
//! `redis-cli --cluster create`, killed by PID when dropped.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::redis_server::RedisServer;

pub struct RedisCluster {
    pub servers: Vec<RedisServer>,
    /// The cluster's node files, removed on drop.
    files: Vec<std::path::PathBuf>,
}

impl RedisCluster {
    /// Starts the six servers, creates the cluster and waits until every slot is served.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(&[])
    }

    /// [`RedisCluster::start`] with `extra` arguments for every server.
    pub fn start_with(extra: &[&str]) -> RedisCluster {
        let mut files = Vec::new();
        let servers: Vec<RedisServer> = (0..6)
            .map(|_| {
                let file = std::env::temp_dir().join(format!(
                    "herald-redis-cluster-{}-{}.conf",
                    std::process::id(),
                    unique()
                ));
                files.push(file.clone());
                let mut arguments: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
                arguments.extend([
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    file.display().to_string(),
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    // The bus port is port + 10000 unless named: it could pass 65535.
                    "--cluster-port".into(),
                    free_port().to_string(),
                ]);
                RedisServer::start_with(arguments)
            })
            .collect();
        let addresses: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs (Debian's redis-tools, which redis-server depends on)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = RedisCluster { servers, files };
        cluster.wait_until_ok();
        cluster
    }

    /// The `adapter` of a Herald node on this cluster.
    pub fn adapter(&self, sharded: bool) -> Value {
        let nodes: Vec<String> = self
            .servers
            .iter()
            .take(2)
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        json!({"driver": "redis-cluster", "cluster": {
            "nodes": nodes, "prefix": "it", "use_sharded_pubsub": sharded}})
    }

    /// Runs `redis-cli -p {port} {args}`; its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, args)
    }

    /// Every server's port.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.iter().map(|s| s.port).collect()
    }

    /// The ports of the servers that are primaries now.
    pub fn primaries(&self) -> Vec<u16> {
        primaries(&self.ports())
    }

    /// The primary that serves `key`'s slot now.
    pub fn owner_of(&self, key: &str) -> u16 {
        owner_of(&self.ports(), key)
    }

    /// SIGSTOP of the server on `port`: it holds its connections and answers nothing.
    pub fn pause(&self, port: u16) {
        self.server(port).pause();
    }

    /// SIGCONT after [`RedisCluster::pause`].
    pub fn resume(&self, port: u16) {
        self.server(port).resume();
    }

    fn server(&self, port: u16) -> &RedisServer {
        self.servers
            .iter()
            .find(|s| s.port == port)
            .expect("a server")
    }

    /// The port of the replica of the primary on `port`.
    pub fn replica_of(&self, port: u16) -> u16 {
        let id = self.cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        let replicas = self.cli(port, &["CLUSTER", "REPLICAS", &id]);
        // Each line: `id ip:port@bus flags ...`.
        let address = replicas.split_whitespace().nth(1).expect("a replica");
        let port = address
            .split(['@'])
            .next()
            .and_then(|a| a.rsplit(':').next());
        port.and_then(|p| p.parse().ok()).expect("a replica's port")
    }

    /// SIGKILL of the server on `port`.
    pub fn kill(&mut self, port: u16) {
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("a server");
        server.kill();
    }

    /// Waits until the servers still running say the cluster is ok again (a replica promoted).
    pub fn wait_until_healed(&self, without: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let running = self.servers.iter().filter(|s| s.port != without);
            let ok = running.clone().all(|s| {
                self.cli(s.port, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            });
            if ok && self.primaries().len() == 3 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no replica was promoted within 30 s");
    }

    /// Waits until every server says the cluster is ok (every slot served, everyone agrees).
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = self.servers.iter().all(|s| {
                let info = self.cli(s.port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the Redis Cluster was not ok within 30 s");
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.servers.clear();
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn unique() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs `redis-cli -p {port} {args}`; its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Which of `ports` are primaries now.
pub fn primaries(ports: &[u16]) -> Vec<u16> {
    let ports = ports.iter().copied();
    ports
        .filter(|port| cli(*port, &["ROLE"]).starts_with("master"))
        .collect()
}

/// The primary among `ports` that serves `key`'s slot now.
pub fn owner_of(ports: &[u16], key: &str) -> u16 {
    let slot = cli(ports[0], &["CLUSTER", "KEYSLOT", key]);
    let slot: u16 = slot.trim().parse().expect("a slot");
    let owns = |port: &u16| {
        let shards = cli(*port, &["CLUSTER", "SLOTS"]);
        let lines: Vec<&str> = shards.lines().map(str::trim).collect();
        // `redis-cli` prints each range as start, end, then its nodes (ip, port, id).
        lines.windows(4).any(|w| {
            let (Ok(start), Ok(end)) = (w[0].parse::<u16>(), w[1].parse::<u16>()) else {
                return false;
            };
            start <= slot && slot <= end && w[2] == "127.0.0.1" && w[3] == port.to_string()
        })
    };
    *primaries(ports)
        .iter()
        .find(|p| owns(p))
        .expect("a primary owns the slot")
}

/// Moves `key`'s slot, with its keys, from the primary serving it to another primary, as
/// `redis-cli --cluster reshard` does (IMPORTING / MIGRATING, `MIGRATE` in batches, then
/// `SETSLOT NODE` everywhere); returns the new owner.
pub fn migrate_slot_of(ports: &[u16], key: &str) -> u16 {
    let slot = cli(ports[0], &["CLUSTER", "KEYSLOT", key])
        .trim()
        .to_owned();
    let from = owner_of(ports, key);
    let to = *primaries(ports)
        .iter()
        .find(|p| **p != from)
        .expect("another primary");
    let id = |port: u16| cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
    let (from_id, to_id) = (id(from), id(to));
    cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
    cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    loop {
        let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        if keys.is_empty() {
            break;
        }
        let to_port = to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
        args.extend(keys);
        let moved = cli(from, &args);
        assert!(moved.trim() == "OK", "MIGRATE: {moved}");
    }
    // The target first, then the source, then the rest, as redis-cli does: no moment where the
    // two send each other's clients back and forth.
    let rest = ports.iter().copied().filter(|p| *p != to && *p != from);
    for port in [to, from].into_iter().chain(rest) {
        cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
    to
}
