//! A private PostgreSQL for the apps scenario: `initdb` into a temp directory (trust
//! authentication, loopback only), `postgres` on 127.0.0.1 and a free port, fed with `psql`,
//! stopped by PID and removed when dropped. As root the server runs as the `postgres` user
//! (PostgreSQL refuses root), switched to by the child itself (no `runuser` in between, so the
//! child's PID is the postmaster's).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::target::{free_port, stat_cpu_seconds};

/// Why the apps scenario cannot run without PostgreSQL.
pub const NO_POSTGRES: &str = "the apps scenario needs PostgreSQL's server programs under \
     /usr/lib/postgresql/*/bin (Debian: apt-get install -y postgresql)";

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`, `postgres` and `psql`.
pub fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| {
            ["initdb", "postgres", "psql"]
                .iter()
                .all(|p| bin.join(p).is_file())
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The uid and gid to run the server as: `postgres`'s when we are root, else our own.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions; getpwnam gets a NUL-terminated name and its result
    // is read at once, before any other call that could reuse its static buffer.
    unsafe {
        if libc::geteuid() != 0 {
            return Ok(None);
        }
        let entry = libc::getpwnam(c"postgres".as_ptr());
        if entry.is_null() {
            return Err("running as root and there is no postgres user to run PostgreSQL".into());
        }
        Ok(Some(((*entry).pw_uid, (*entry).pw_gid)))
    }
}

/// A running private PostgreSQL.
pub struct Postgres {
    child: Child,
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
}

impl Postgres {
    /// `initdb`, then `postgres`, waiting (20 s at most) until it answers a query.
    pub fn start(bin: &Path) -> Result<Postgres, String> {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("herald-bench-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let user = server_user()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let data = dir.join("data");
        let log = std::fs::File::create(dir.join("postgres.log")).map_err(|e| e.to_string())?;
        let mut initdb = as_user(bin.join("initdb"), &dir, user);
        initdb.arg("-D").arg(&data);
        initdb.args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        run(initdb
            .stdout(Stdio::null())
            .stderr(log.try_clone().map_err(|e| e.to_string())?))
        .map_err(|e| format!("initdb: {e} (log: {})", dir.join("postgres.log").display()))?;
        let mut server = as_user(bin.join("postgres"), &dir, user);
        server
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()]);
        server
            .arg("-k")
            .arg(&dir)
            .args(["-c", "fsync=off", "-c", "max_connections=100"]);
        let child = server
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let postgres = Postgres {
            child,
            port,
            bin: bin.to_owned(),
            dir,
        };
        postgres.wait_ready()?;
        Ok(postgres)
    }

    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.psql("SELECT 1") {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() > deadline => {
                    return Err(format!("PostgreSQL did not answer within 20 s: {error}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The URL Herald connects with.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` through `psql`, stopping at the first error.
    pub fn psql(&self, sql: &str) -> Result<(), String> {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ]);
        psql.args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql]);
        run(psql.stdout(Stdio::null()).stderr(Stdio::piped()))
    }

    /// CPU seconds of the postmaster and every process it started (backends, workers) so
    /// far: the live ones' own time plus what the postmaster collected from those that ended.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let reaped = children_ticks(&stat) / 100.0;
        let children: f64 = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
            .filter(|s| parent_pid(s) == Some(pid))
            .map(|s| stat_cpu_seconds(&s))
            .sum();
        stat_cpu_seconds(&stat) + reaped + children
    }
}

/// `program` in `dir`, as `user` when given.
fn as_user(program: PathBuf, dir: &Path, user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir).stdin(Stdio::null());
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

/// Runs `command` to its end; its stderr in the error when it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| e.to_string())?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// The fields of a /proc/PID/stat after the command name.
fn fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

fn parent_pid(stat: &str) -> Option<u32> {
    fields(stat).get(1)?.parse().ok()
}

/// cutime + cstime: the ticks of the children a process has waited for.
fn children_ticks(stat: &str) -> f64 {
    let fields = fields(stat);
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    tick(13).unwrap_or(0.0) + tick(14).unwrap_or(0.0)
}

impl Drop for Postgres {
    /// A fast shutdown (SIGINT) by PID, SIGKILL after 10 s; then the directory goes.
    fn drop(&mut self) {
        // SAFETY: a signal to our own child's PID, which is not reaped before the wait below.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
