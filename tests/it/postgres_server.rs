//! A private PostgreSQL for one test: `initdb` into a temp directory, `postgres` on a free
//! loopback port with password (SCRAM) authentication, stopped by PID and removed on drop. As
//! root it runs as the `postgres` user (PostgreSQL refuses root). `scripts/test.sh` installs
//! Debian's `postgresql` when it is missing.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls_support::Certs;

/// The superuser the tests connect as, and its password.
pub const USER: &str = "herald";
pub const PASSWORD: &str = "s3cret pw";

pub struct PostgresServer {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
    /// Settings beyond the defaults (`ssl=on`, ...).
    settings: Vec<String>,
}

/// Start-up attempts on fresh ports: a port found free can be taken before the server binds.
const START_ATTEMPTS: usize = 5;

/// The directory of PostgreSQL's server programs (`/usr/lib/postgresql/<version>/bin`).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test.sh installs Debian's postgresql)")
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `program` with `args`, as the `postgres` user when this process is root.
fn command(program: &Path) -> Command {
    match is_root() {
        true => {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        }
        false => Command::new(program),
    }
}

impl PostgresServer {
    pub fn start() -> PostgresServer {
        PostgresServer::start_with(None)
    }

    /// A server that also speaks TLS, with `certs`' server certificate (for 127.0.0.1).
    pub fn start_tls(certs: &Certs) -> PostgresServer {
        PostgresServer::start_with(Some(certs))
    }

    fn start_with(tls: Option<&Certs>) -> PostgresServer {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "herald-pg-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let password_file = dir.join("password");
        std::fs::write(&password_file, PASSWORD).expect("password file");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown the data directory to postgres");
        }
        let status = command(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(status.success(), "initdb");
        let mut settings = Vec::new();
        if let Some(certs) = tls {
            // PostgreSQL wants its key readable by itself alone.
            let (cert, key) = (dir.join("data/server.pem"), dir.join("data/server.key"));
            std::fs::copy(certs.path("server.pem"), &cert).expect("copy the certificate");
            std::fs::copy(certs.path("server.key"), &key).expect("copy the key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            if is_root() {
                let owned = Command::new("chown")
                    .arg("postgres:postgres")
                    .args([&cert, &key])
                    .status();
                assert!(owned.is_ok_and(|s| s.success()), "chown the key");
            }
            settings = vec![
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            ];
        }
        let mut server = PostgresServer {
            child: None,
            dir,
            port: 0,
            settings,
        };
        for _ in 0..START_ATTEMPTS {
            server.port = free_port();
            if server.run() {
                return server;
            }
        }
        panic!("postgres found its port taken {START_ATTEMPTS} times in a row");
    }

    /// `postgres://herald:...@127.0.0.1:port/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/postgres",
            PASSWORD.replace(' ', "%20"),
            self.port
        )
    }

    /// Stops the server at once: SIGQUIT is PostgreSQL's immediate shutdown, which ends every
    /// backend too (a SIGKILLed postmaster would leave its backends serving open connections).
    /// As root the child is `runuser`; the postmaster's PID is in `postmaster.pid`.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = self.postmaster_pid() {
            let _ = Command::new("kill").args(["-QUIT", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the stopped server again on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.run(), "postgres restarts on port {}", self.port);
    }

    fn postmaster_pid(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        text.lines().next().map(str::to_owned)
    }

    /// Starts the server on `self.port`; false when it exited first (port taken).
    fn run(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("log file");
        let child = command(&bin_dir().join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // postmaster.pid's 8th line says "ready" once connections are accepted.
            let pid_file = std::fs::read_to_string(self.dir.join("data/postmaster.pid"));
            let ready = pid_file.is_ok_and(|text| {
                let lines: Vec<&str> = text.lines().collect();
                lines.get(3) == Some(&self.port.to_string().as_str())
                    && lines.get(7).is_some_and(|l| l.trim() == "ready")
            });
            if ready {
                return true;
            }
            let child = self.child.as_mut().expect("just started");
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        panic!(
            "postgres on port {} was not ready in 20 s:\n{log}",
            self.port
        );
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A few random hex digits, so two servers of one process never share a directory.
pub fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}
