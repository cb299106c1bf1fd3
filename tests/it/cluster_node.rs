//! A Herald cluster node in a child process, on a real Redis: crash tests need a process that
//! can be killed (dropping an in-process server runs its graceful cleanup, which is no crash).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::redis_cluster::RedisCluster;
use crate::redis_server::RedisServer;
use crate::support::{base_config, Client, Served, KEY};

/// Cluster timings short enough for tests that take seconds.
pub const HEARTBEAT_MS: u64 = 100;
pub const NODE_TIMEOUT_MS: u64 = 600;

pub struct ClusterNode {
    child: Child,
    pub port: u16,
    config: PathBuf,
}

/// Numbers the config files of the nodes this test process starts.
static NEXT_NODE: AtomicUsize = AtomicUsize::new(0);

/// Copies the node's log to this test's stderr (shown when the test fails) and sends the port
/// of its "Herald listening" line once.
fn relay_log(stdout: ChildStdout) -> mpsc::Receiver<u16> {
    let (listening, port) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("node: {line}");
            if let Some(port) = listening_port(&line) {
                let _ = listening.send(port);
            }
        }
    });
    port
}

/// The port of a "Herald listening addr=127.0.0.1:PORT ..." log line; `None` for other lines.
fn listening_port(line: &str) -> Option<u16> {
    let listening = &line[line.find("Herald listening")?..];
    let after = &listening[listening.find("addr=")? + "addr=".len()..];
    let addr = after.split_whitespace().next()?;
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

/// What the nodes of a test share: one Redis, or a Redis Cluster.
pub trait SharedRedis {
    /// The `adapter` section that connects a node to it.
    fn adapter(&self) -> Value;
}

impl<T: SharedRedis + ?Sized> SharedRedis for &T {
    fn adapter(&self) -> Value {
        (**self).adapter()
    }
}

impl SharedRedis for RedisServer {
    fn adapter(&self) -> Value {
        json!({"driver": "redis", "redis": {"url": self.url(), "prefix": "it"}})
    }
}

impl SharedRedis for RedisCluster {
    fn adapter(&self) -> Value {
        RedisCluster::adapter(self, true)
    }
}

/// The config of a node on `redis` after `edit`, with webhooks to `hook` when given.
pub fn node_config(redis: &impl SharedRedis, port: u16, edit: impl FnOnce(&mut Value)) -> Value {
    let mut config = base_config();
    config["port"] = json!(port);
    config["metrics"] = json!({"enabled": false});
    let mut adapter = redis.adapter();
    adapter["redis"]["heartbeat_interval_ms"] = json!(HEARTBEAT_MS);
    adapter["redis"]["node_timeout_ms"] = json!(NODE_TIMEOUT_MS);
    config["adapter"] = adapter;
    edit(&mut config);
    config
}

impl ClusterNode {
    /// Starts a node on a port of its own choosing and waits until it accepts connections.
    pub fn start(redis: &impl SharedRedis, edit: impl FnOnce(&mut Value)) -> ClusterNode {
        // Port 0: the node binds a free port itself and logs it, so no other process can take
        // the port between a test finding it free and the node binding it.
        let config = node_config(redis, 0, edit);
        let file = std::env::temp_dir().join(format!(
            "herald-node-{}-{}.json",
            std::process::id(),
            NEXT_NODE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&file, config.to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "warn,herald=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("herald runs");
        let listening = relay_log(child.stdout.take().expect("piped stdout"));
        let port = match listening.recv_timeout(Duration::from_secs(10)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().expect("the node is waited for");
                panic!("the node did not start listening within 10 s (it exited: {status})");
            }
        };
        ClusterNode {
            child,
            port,
            config: file,
        }
    }

    pub fn ws_url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}/app/{KEY}?protocol=7&client=js&version=8.4.0&flash=false",
            self.port
        )
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url()).await
    }

    /// SIGKILL: no goodbye at all.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as a rolling deploy stops a node.
    pub fn stop(&mut self) {
        signal(&self.child, "TERM");
    }

    /// SIGSTOP: the process is frozen, sockets and all, as in a long GC or VM pause.
    pub fn pause(&self) {
        signal(&self.child, "STOP");
    }

    /// SIGCONT after [`ClusterNode::pause`].
    pub fn resume(&self) {
        signal(&self.child, "CONT");
    }

    /// Waits (bounded) for a stopped node to exit.
    pub fn wait_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the node did not exit within 10 s");
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name}");
}

impl Served for ClusterNode {
    fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.config);
    }
}
