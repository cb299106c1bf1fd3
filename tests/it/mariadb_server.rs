//! A private MariaDB for one test: `mariadb-install-db` into a temp directory, `mariadbd` on a
//! free loopback port and its own socket, with a `herald` user (password authentication) and
//! database made by an init file; stopped by PID and removed on drop. `scripts/test.sh`
//! installs Debian's `mariadb-server` when it is missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres_server::{free_port, rand_suffix};

/// The user and database the tests connect to, and the password.
pub const USER: &str = "herald";
pub const PASSWORD: &str = "s3cret-pw";
pub const DATABASE: &str = "herald";

pub struct MariaDbServer {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
}

const START_ATTEMPTS: usize = 5;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

impl MariaDbServer {
    pub fn start() -> MariaDbServer {
        let dir = std::env::temp_dir().join(format!(
            "herald-mariadb-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(["--skip-name-resolve", "--innodb-log-file-size=8M"]);
        if is_root() {
            install.arg("--user=root");
        }
        let status = install
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db runs (scripts/test.sh installs Debian's mariadb-server)");
        assert!(status.success(), "mariadb-install-db");
        let init = format!(
            "CREATE DATABASE IF NOT EXISTS {DATABASE};\n\
             CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';\n\
             GRANT ALL ON *.* TO '{USER}'@'127.0.0.1';\n"
        );
        std::fs::write(dir.join("init.sql"), init).expect("init file");
        let mut server = MariaDbServer {
            child: None,
            dir,
            port: 0,
        };
        for _ in 0..START_ATTEMPTS {
            server.port = free_port();
            if server.run() {
                return server;
            }
        }
        panic!("mariadbd found its port taken {START_ATTEMPTS} times in a row");
    }

    /// `mysql://herald:...@127.0.0.1:port/herald`.
    pub fn url(&self) -> String {
        format!(
            "mysql://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// Stops the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.run(), "mariadbd restarts on port {}", self.port);
    }

    /// Starts the server on `self.port`; false when it exited first (port taken).
    fn run(&mut self) -> bool {
        let log = self.dir.join(format!("error-{}.log", self.port));
        let mut server = Command::new("mariadbd");
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!(
                "--socket={}",
                self.dir.join("mariadb.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mariadb.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!(
                "--init-file={}",
                self.dir.join("init.sql").display()
            ))
            .args(["--bind-address=127.0.0.1", &format!("--port={}", self.port)])
            .args(["--skip-name-resolve", "--innodb-buffer-pool-size=32M"])
            .args([
                "--innodb-log-file-size=8M",
                "--innodb-flush-log-at-trx-commit=0",
            ]);
        if is_root() {
            server.arg("--user=root");
        }
        let child = server
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // The server's own log says so once it listens on its port.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("ready for connections") {
                return true;
            }
            let child = self.child.as_mut().expect("just started");
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        panic!(
            "mariadbd on port {} was not ready in 30 s:\n{text}",
            self.port
        );
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
