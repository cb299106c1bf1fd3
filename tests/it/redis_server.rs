//! A private `redis-server` for one test: on a free loopback port, without persistence, killed
//! by PID when dropped. `scripts/test.sh` installs Debian's `redis-server` when it is missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = RedisServer {
            child: Self::spawn(port),
            port,
        };
        server.wait_until_ready();
        server
    }

    /// Kills the server (its data goes: there is no persistence).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts an empty server again on the same port, after [`RedisServer::kill`].
    pub fn start_again(&mut self) {
        self.child = Self::spawn(self.port);
        self.wait_until_ready();
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

    fn spawn(port: u16) -> Child {
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test.sh installs Debian's redis-server)")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING in 10 s",
            self.port
        );
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume_quietly();
        self.kill();
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
