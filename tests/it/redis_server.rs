//! A private `redis-server` for one test: on a free loopback port, without persistence, killed
//! by PID when dropped. `scripts/test.sh` installs Debian's `redis-server` when it is missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    /// Arguments beyond the defaults (`--replicaof ...`), kept for a restart.
    extra: Vec<String>,
}

/// Start-up attempts on fresh ports before giving up: a port found free can be taken by another
/// test's server before this one binds it.
const START_ATTEMPTS: usize = 5;

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(Vec::new())
    }

    /// A replica of `primary`.
    pub fn replica_of(primary: &RedisServer) -> RedisServer {
        let port = primary.port.to_string();
        RedisServer::start_with(vec!["--replicaof".into(), "127.0.0.1".into(), port])
    }

    /// A server with `extra` arguments beyond the defaults.
    pub fn start_with(extra: Vec<String>) -> RedisServer {
        for _ in 0..START_ATTEMPTS {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut server = RedisServer {
                child: Self::spawn(port, &extra),
                port,
                extra: extra.clone(),
            };
            if server.wait_until_ready() {
                return server;
            }
        }
        panic!("redis-server found its port taken {START_ATTEMPTS} times in a row");
    }

    /// Kills the server (its data goes: there is no persistence).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts an empty server again on the same port, after [`RedisServer::kill`].
    pub fn start_again(&mut self) {
        self.child = Self::spawn(self.port, &self.extra);
        assert!(
            self.wait_until_ready(),
            "redis-server could not bind port {} again",
            self.port
        );
    }

    /// SIGSTOP: the server holds every connection open and answers nothing.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
    }

    /// Runs one command without arguments (`FLUSHALL`, ...); true on `+OK`.
    pub fn command(&self, name: &str) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reply = [0u8; 5];
        stream.write_all(format!("{name}\r\n").as_bytes()).is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+OK\r\n"
    }

    /// The server's own RDB file name (in the temp dir): a replica writes the data it syncs
    /// there, and a server loads what it finds there at start. Never the working directory's
    /// `dump.rdb`, which another test's replica may have written.
    fn rdb_file(port: u16) -> String {
        format!("herald-redis-{}-{port}.rdb", std::process::id())
    }

    fn spawn(port: u16, extra: &[String]) -> Child {
        let dir = std::env::temp_dir();
        let _ = std::fs::remove_file(dir.join(Self::rdb_file(port)));
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--dir", &dir.display().to_string()])
            .args(["--dbfilename", &Self::rdb_file(port)])
            // A replica's first sync starts at once (Redis waits 5 s for more replicas).
            .args(["--repl-diskless-sync-delay", "0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test.sh installs Debian's redis-server)")
    }

    /// Whether a replica has acknowledged every write so far (`WAIT 1`, within 5 s).
    pub fn replicated(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(6)));
        let mut reply = [0u8; 4];
        stream.write_all(b"WAIT 1 5000\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b":1\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Waits until this server answers; false when it exited first (its port was taken).
    fn wait_until_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.answers_as_itself() {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer in 10 s", self.port);
    }

    /// Whether the server on the port is this child, by the process id its `INFO` reports: a
    /// PONG alone could come from another test's server that won the port.
    fn answers_as_itself(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"INFO server\r\n").is_err() {
            return false;
        }
        let wanted = format!("process_id:{}\r\n", self.child.id());
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(read) = stream.read(&mut chunk) {
            if read == 0 {
                break;
            }
            reply.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&reply);
            if let Some(at) = text.find("process_id:") {
                if text[at..].contains("\r\n") {
                    return text[at..].starts_with(&wanted);
                }
            }
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume_quietly();
        self.kill();
        let _ = std::fs::remove_file(std::env::temp_dir().join(Self::rdb_file(self.port)));
    }
}

impl RedisServer {
    /// A paused server must be running to die of SIGKILL promptly everywhere.
    fn resume_quietly(&self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
    }
}
