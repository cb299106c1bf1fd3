//! The scale scenario's client processes, seen from the bench: started as `herald-bench
//! scale-client`, each below its own descriptor limit, told when to connect, asked for their
//! figures, and stopped by PID (also when the scenario fails half-way).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::kernel::{hard_fd_limit, process_cpu_seconds};
use crate::scale_client::RESERVED_FDS;

/// Sockets one client process holds at most, even where the descriptor limit allows more: one
/// epoll thread per this many keeps the load generator's own lag out of the figures.
const MOST_PER_PROCESS: u64 = 50_000;

/// What a group of client processes is to connect: `count` sockets to `port`, the first with
/// the scenario-wide index `first`, the rest of the flags passed as they are.
pub struct Plan {
    pub port: u16,
    pub count: u64,
    pub first: u64,
    /// Handshakes in flight against the server, shared by the processes.
    pub concurrency: usize,
    /// More `scale-client` flags (`--shared`, `--big-every`).
    pub extra: Vec<String>,
}

/// Sockets one client process may hold here: its hard limit (which it raises its soft one to)
/// less what it keeps for itself.
pub fn per_process() -> u64 {
    let room = hard_fd_limit().map_or(MOST_PER_PROCESS, |l| l.saturating_sub(RESERVED_FDS));
    room.clamp(1, MOST_PER_PROCESS)
}

/// One client process.
struct Client {
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

/// The client processes of one run.
pub struct Fleet {
    clients: Vec<Client>,
}

/// The `ready` lines of every client, summed.
pub struct Connected {
    pub ready: u64,
    pub failed: u64,
    pub errors: Vec<String>,
    /// When the first client began (CLOCK_MONOTONIC ns).
    pub started_ns: u64,
    /// When the last socket's last subscription succeeded.
    pub last_ready_ns: u64,
}

impl Connected {
    /// Seconds from the first client's start to the last socket's subscription.
    pub fn secs(&self) -> f64 {
        self.last_ready_ns.saturating_sub(self.started_ns) as f64 / 1e9
    }

    /// Adds another fleet's figures.
    pub fn add(&mut self, other: Connected) {
        self.ready += other.ready;
        self.failed += other.failed;
        self.errors.extend(other.errors);
        self.started_ns = self.started_ns.min(other.started_ns);
        self.last_ready_ns = self.last_ready_ns.max(other.last_ready_ns);
    }
}

/// The `mark` lines of every client for one marker, merged.
pub struct Arrivals {
    pub got: u64,
    pub expected: u64,
    pub duplicates: u64,
    /// Nanoseconds (CLOCK_MONOTONIC) of every arrival, sorted.
    pub times: Vec<u64>,
}

impl Fleet {
    /// Starts the processes of `plan`, as many as its sockets need, and waits for their hello.
    pub async fn start(plan: &Plan) -> Result<Fleet, String> {
        let most = per_process();
        let processes = plan.count.div_ceil(most).max(1);
        let mut fleet = Fleet {
            clients: Vec::new(),
        };
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut first = plan.first;
        let concurrency = (plan.concurrency / processes as usize).max(1);
        for i in 0..processes {
            // Even shares, the first ones one larger.
            let count = plan.count / processes + u64::from(i < plan.count % processes);
            let mut command = Command::new(&exe);
            command.arg("scale-client");
            command.args(["--port", &plan.port.to_string()]);
            command.args(["--count", &count.to_string(), "--first", &first.to_string()]);
            command.args(["--concurrency", &concurrency.to_string()]);
            command.args(&plan.extra);
            let client = spawn(command)?;
            fleet.clients.push(client);
            first += count;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for client in &mut fleet.clients {
            client.expect("hello", deadline).await?;
        }
        Ok(fleet)
    }

    /// Processes in all.
    pub fn processes(&self) -> usize {
        self.clients.len()
    }

    /// CPU seconds of every client process so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.clients
            .iter()
            .map(|c| process_cpu_seconds(c.pid))
            .sum()
    }

    /// Tells every client to connect.
    pub async fn start_connecting(&mut self) -> Result<(), String> {
        for client in &mut self.clients {
            client.send("connect").await?;
        }
        Ok(())
    }

    /// Waits until `deadline` for every client's `ready`.
    pub async fn connected(&mut self, deadline: Instant) -> Result<Connected, String> {
        let mut connected = Connected {
            ready: 0,
            failed: 0,
            errors: Vec::new(),
            started_ns: u64::MAX,
            last_ready_ns: 0,
        };
        for client in &mut self.clients {
            let ready = client.expect("ready", deadline).await?;
            connected.ready += ready["ready"].as_u64().unwrap_or(0);
            connected.failed += ready["failed"].as_u64().unwrap_or(0);
            let errors = ready["errors"].as_array().into_iter().flatten();
            connected
                .errors
                .extend(errors.filter_map(|e| e.as_str().map(str::to_owned)));
            let started = ready["started_ns"].as_u64().unwrap_or(0);
            connected.started_ns = connected.started_ns.min(started);
            let last = ready["last_ready_ns"].as_u64().unwrap_or(0);
            connected.last_ready_ns = connected.last_ready_ns.max(last);
        }
        Ok(connected)
    }

    /// WebSocket and Pusher pings answered by every client so far; sockets lost.
    pub async fn pings(&mut self) -> Result<(u64, u64), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut pings, mut failed) = (0, 0);
        for client in &mut self.clients {
            client.send("stats").await?;
            let stats = client.expect("stats", deadline).await?;
            pings += stats["pings"].as_u64().unwrap_or(0);
            failed += stats["failed"].as_u64().unwrap_or(0);
        }
        Ok((pings, failed))
    }

    /// Waits (at most `bound`) for every client's arrivals of `marker`; a client that has not
    /// had all of them by then is asked for what it has.
    pub async fn arrivals(&mut self, marker: u32, bound: Duration) -> Result<Arrivals, String> {
        let deadline = Instant::now() + bound;
        let mut all = Arrivals {
            got: 0,
            expected: 0,
            duplicates: 0,
            times: Vec::new(),
        };
        for client in &mut self.clients {
            let mark = match client.expect_mark(marker, deadline).await {
                Ok(mark) => mark,
                Err(_) => {
                    client.send(&format!("report {marker}")).await?;
                    let late = Instant::now() + Duration::from_secs(10);
                    client.expect_mark(marker, late).await?
                }
            };
            all.got += mark["got"].as_u64().unwrap_or(0);
            all.expected += mark["expected"].as_u64().unwrap_or(0);
            all.duplicates += mark["duplicates"].as_u64().unwrap_or(0);
            let first = mark["first_ns"].as_u64().unwrap_or(0);
            let after = mark["after_first_us"].as_array().into_iter().flatten();
            all.times
                .extend(after.filter_map(Value::as_u64).map(|us| first + us * 1000));
        }
        all.times.sort_unstable();
        Ok(all)
    }

    /// Asks every client to quit (their sockets close with a reset) and waits 10 s at most;
    /// the drop kills whoever is left.
    pub async fn stop(mut self) {
        for client in &mut self.clients {
            let _ = client.send("quit").await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for client in &mut self.clients {
            let _ = tokio::time::timeout_at(deadline.into(), client.child.wait()).await;
        }
    }
}

impl Drop for Fleet {
    /// SIGKILL by PID to every client still running (the error paths).
    fn drop(&mut self) {
        for client in &mut self.clients {
            if matches!(client.child.try_wait(), Ok(None)) {
                let _ = client.child.start_kill();
            }
        }
    }
}

fn spawn(mut command: Command) -> Result<Client, String> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start a scale client: {e}"))?;
    let pid = child.id().ok_or("a scale client exited at once")?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    Ok(Client {
        child,
        pid,
        stdin,
        lines: BufReader::new(stdout).lines(),
    })
}

impl Client {
    async fn send(&mut self, command: &str) -> Result<(), String> {
        let line = format!("{command}\n");
        (self.stdin.write_all(line.as_bytes()).await)
            .map_err(|e| format!("scale client {}: {e}", self.pid))
    }

    /// The next line that is a JSON object with `key`, its value (other lines are skipped).
    async fn expect(&mut self, key: &str, deadline: Instant) -> Result<Value, String> {
        loop {
            let next = tokio::time::timeout_at(deadline.into(), self.lines.next_line()).await;
            let line = match next {
                Err(_) => return Err(format!("scale client {}: no {key} in time", self.pid)),
                Ok(Err(e)) => return Err(format!("scale client {}: {e}", self.pid)),
                Ok(Ok(None)) => return Err(format!("scale client {} exited", self.pid)),
                Ok(Ok(Some(line))) => line,
            };
            if let Ok(mut value) = serde_json::from_str::<Value>(&line) {
                if let Some(found) = value.get_mut(key) {
                    return Ok(found.take());
                }
            }
        }
    }

    /// The next `mark` line of `marker`.
    async fn expect_mark(&mut self, marker: u32, deadline: Instant) -> Result<Value, String> {
        loop {
            let mark = self.expect("mark", deadline).await?;
            if mark["marker"].as_u64() == Some(u64::from(marker)) {
                return Ok(mark);
            }
        }
    }
}
