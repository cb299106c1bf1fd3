//! The server under test: a child process started from a command template, its config file,
//! and its CPU time and memory read from /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub const APP_ID: &str = "bench-app";
pub const KEY: &str = "bench-key";
pub const SECRET: &str = "bench-secret";

/// CPU seconds of a process from its /proc/PID/stat (utime + stime, in USER_HZ = 100 ticks).
pub fn stat_cpu_seconds(stat: &str) -> f64 {
    // Fields after the command name (which may contain spaces) start at the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The benchmark's own CPU seconds, to show how busy the load generator was.
pub fn own_cpu_seconds() -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// A running server process.
pub struct Target {
    child: Child,
    pub port: u16,
    config_dir: PathBuf,
    /// With `--console open`: a viewer of the server's console while it runs.
    viewer: Option<crate::console::Viewer>,
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Sockudo-schema config of a benchmark run.
pub fn config(port: u16, webhook_url: Option<&str>) -> Value {
    let webhooks = match webhook_url {
        Some(url) => {
            json!([{"url": url, "event_types": ["channel_occupied", "channel_vacated", "member_added", "member_removed"]}])
        }
        None => json!([]),
    };
    let mut config = json!({
        "host": "127.0.0.1",
        "port": port,
        "debug": false,
        "metrics": {"enabled": false},
        "webhooks": {"batching": {"enabled": true, "duration": 50}, "grace_period_ms": 0},
        "presence": {"max_members_per_channel": 100},
        // Sockudo limits REST and WebSocket rates by default; a load test must not be throttled.
        "rate_limiter": {"enabled": false},
        // Herald's debug console (`--console`); other servers ignore the key.
        "console": crate::console::section(),
        "app_manager": {"driver": "memory", "array": {"apps": [{
            "id": APP_ID, "key": KEY, "secret": SECRET,
            "enabled": true,
            "max_connections": 100000,
            "enable_client_messages": true,
            "max_client_events_per_second": 10000,
            "webhooks": webhooks
        }]}}
    });
    // `--tls`: the server port speaks only TLS.
    if let Some(ssl) = crate::tls::section() {
        config["ssl"] = ssl;
    }
    config
}

impl Target {
    /// Starts `command` (with `{config}` replaced by the config path) and waits for its port.
    pub fn start(command: &str, config: &Value, port: u16) -> Result<Target, String> {
        let config_dir =
            std::env::temp_dir().join(format!("herald-bench-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&config_dir).map_err(|e| e.to_string())?;
        let config_path = config_dir.join("config.json");
        std::fs::write(&config_path, config.to_string()).map_err(|e| e.to_string())?;
        let command = command.replace("{config}", &config_path.display().to_string());
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let mut target = Target {
            child,
            port,
            config_dir,
            viewer: None,
        };
        let watched = config.get("console").is_some();
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                if watched {
                    target.viewer = crate::console::Viewer::start(port);
                }
                return Ok(target);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{command:?} did not listen on port {port} within 10 s"
        ))
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(
            Path::new("/proc")
                .join(self.child.id().to_string())
                .join(name),
        )
        .unwrap_or_default()
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn running(&self) -> bool {
        let stat = self.proc_file("stat");
        !stat.is_empty() && !stat.contains(") Z ")
    }

    /// User + system CPU seconds the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        stat_cpu_seconds(&self.proc_file("stat"))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Descriptors the server holds open (entries of /proc/PID/fd; 0 once it is gone).
    pub fn open_fds(&self) -> usize {
        let dir = Path::new("/proc").join(self.pid().to_string()).join("fd");
        std::fs::read_dir(dir).map_or(0, |entries| entries.count())
    }

    /// Resident memory in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.proc_file("status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Target {
    /// SIGKILL: the process dies without a goodbye (a crash, an OOM kill).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Target {
    /// SIGTERM first, so the server shuts down cleanly (and a profiler wrapping it writes its
    /// output); SIGKILL if it is still there after 20 s.
    fn drop(&mut self) {
        self.viewer = None;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..200 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.config_dir);
    }
}
