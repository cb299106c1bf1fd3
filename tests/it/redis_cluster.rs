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
        let mut files = Vec::new();
        let servers: Vec<RedisServer> = (0..6)
            .map(|_| {
                let file = std::env::temp_dir().join(format!(
                    "herald-redis-cluster-{}-{}.conf",
                    std::process::id(),
                    unique()
                ));
                files.push(file.clone());
                RedisServer::start_with(vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    file.display().to_string(),
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    // The bus port is port + 10000 unless named: it could pass 65535.
                    "--cluster-port".into(),
                    free_port().to_string(),
                ])
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
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The ports of the servers that are primaries now.
    pub fn primaries(&self) -> Vec<u16> {
        let servers = self.servers.iter().map(|s| s.port);
        servers
            .filter(|port| self.cli(*port, &["ROLE"]).starts_with("master"))
            .collect()
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
