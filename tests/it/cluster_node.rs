//! A Herald cluster node in a child process, on a real Redis: crash tests need a process that
//! can be killed (dropping an in-process server runs its graceful cleanup, which is no crash).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The config of a node on `redis` after `edit`, with webhooks to `hook` when given.
pub fn node_config(redis: &RedisServer, port: u16, edit: impl FnOnce(&mut Value)) -> Value {
    let mut config = base_config();
    config["port"] = json!(port);
    config["metrics"] = json!({"enabled": false});
    config["adapter"] = json!({"driver": "redis", "redis": {
        "url": redis.url(), "prefix": "it",
        "heartbeat_interval_ms": HEARTBEAT_MS, "node_timeout_ms": NODE_TIMEOUT_MS}});
    edit(&mut config);
    config
}

impl ClusterNode {
    /// Starts a node and waits until it accepts connections.
    pub fn start(redis: &RedisServer, edit: impl FnOnce(&mut Value)) -> ClusterNode {
        let port = free_port();
        let config = node_config(redis, port, edit);
        let file =
            std::env::temp_dir().join(format!("herald-node-{}-{port}.json", std::process::id()));
        std::fs::write(&file, config.to_string()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("herald runs");
        let mut node = ClusterNode {
            child,
            port,
            config: file,
        };
        node.wait_until_listening();
        node
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the node exited at start-up: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the node on port {} did not listen within 10 s", self.port);
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
