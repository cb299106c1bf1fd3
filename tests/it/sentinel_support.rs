//! Three private `redis-sentinel`s monitoring a test's primary, on free loopback ports, killed
//! by PID when dropped; with the timings of a quick failover (down after 1 s).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Value;

use crate::redis_server::RedisServer;

/// The name the sentinels monitor the primary under.
pub const MASTER: &str = "mymaster";

pub struct Sentinels {
    children: Vec<Child>,
    pub ports: Vec<u16>,
    dir: std::path::PathBuf,
}

impl Sentinels {
    /// Three sentinels on `primary`, once each knows its replica and the other sentinels.
    pub async fn start(primary: &RedisServer) -> Sentinels {
        let dir = std::env::temp_dir().join(format!(
            "herald-sentinels-{}-{}",
            std::process::id(),
            primary.port
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut sentinels = Sentinels {
            children: Vec::new(),
            ports: Vec::new(),
            dir,
        };
        for i in 0..3 {
            let port = free_port();
            let file = sentinels.dir.join(format!("sentinel-{i}.conf"));
            let conf = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                sentinels.dir.display(),
                primary.port
            );
            std::fs::write(&file, conf).unwrap();
            let child = Command::new("redis-sentinel")
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-sentinel runs (scripts/test.sh installs Debian's redis-sentinel)");
            sentinels.children.push(child);
            sentinels.ports.push(port);
        }
        sentinels.wait_until_ready().await;
        sentinels
    }

    /// `database.redis.sentinels` for a Herald config.
    pub fn config(&self) -> serde_json::Value {
        let list: Vec<_> = (self.ports.iter())
            .map(|port| serde_json::json!({"host": "127.0.0.1", "port": port}))
            .collect();
        serde_json::json!(list)
    }

    async fn ask(&self, port: u16, what: &[&str]) -> Option<Value> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        let mut con = client.get_multiplexed_async_connection().await.ok()?;
        let mut cmd = redis::cmd("SENTINEL");
        for arg in what {
            cmd.arg(*arg);
        }
        cmd.query_async::<Value>(&mut con).await.ok()
    }

    /// Until every sentinel lists one replica and two other sentinels (bounded).
    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ready = true;
            for port in &self.ports {
                let count = |v: Option<Value>| match v {
                    Some(Value::Array(items)) => items.len(),
                    _ => 0,
                };
                let replicas = count(self.ask(*port, &["replicas", MASTER]).await);
                let others = count(self.ask(*port, &["sentinels", MASTER]).await);
                ready &= replicas == 1 && others == 2;
            }
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinels did not see each other and the replica in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The port of the primary the first sentinel names.
    pub async fn primary_port(&self) -> Option<u16> {
        match self
            .ask(self.ports[0], &["get-master-addr-by-name", MASTER])
            .await?
        {
            Value::Array(parts) => match parts.get(1)? {
                Value::BulkString(port) => std::str::from_utf8(port).ok()?.parse().ok(),
                _ => None,
            },
            _ => None,
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
