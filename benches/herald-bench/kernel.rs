//! What the scale scenario reads from the kernel: the system-wide monotonic clock, the
//! open-file limit, and the memory that sockets cost outside any process (`/proc`).

/// Nanoseconds of `CLOCK_MONOTONIC`: one clock for every process on the machine, so a publish
/// timed in the bench and an arrival timed in a client process can be subtracted.
pub fn monotonic_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The hard open-file limit (`None`: unlimited).
pub fn hard_fd_limit() -> Option<u64> {
    let limit = rlimit_nofile();
    (limit.rlim_max != libc::RLIM_INFINITY).then_some(limit.rlim_max)
}

fn rlimit_nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the pointer it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit
}

/// Raises the soft open-file limit to the hard one (capped at Linux's default `nr_open` when
/// the hard one is unlimited); returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = rlimit_nofile();
    let target = match limit.rlim_max {
        libc::RLIM_INFINITY => 1 << 20,
        hard => hard,
    };
    if limit.rlim_cur < target {
        limit.rlim_cur = target;
        // SAFETY: setrlimit reads one rlimit; a refusal leaves the old limit, read below.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
    rlimit_nofile().rlim_cur
}

/// Kernel memory held for sockets, sampled system-wide: both ends of every loopback socket.
#[derive(Clone, Copy, Default)]
pub struct SocketMemory {
    /// `TCP: ... mem` of /proc/net/sockstat: pages of TCP buffers, in bytes.
    pub tcp_buffers: u64,
    /// `Slab:` of /proc/meminfo in bytes: the socket, inode and file objects live there.
    pub slab: u64,
    /// `TCP: inuse` of /proc/net/sockstat.
    pub tcp_inuse: u64,
}

impl SocketMemory {
    /// Reads both files now.
    pub fn sample() -> SocketMemory {
        let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
        let tcp = sockstat
            .lines()
            .find(|l| l.starts_with("TCP:"))
            .unwrap_or("");
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let slab_kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("Slab:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        SocketMemory {
            tcp_buffers: field_after(tcp, "mem") * page_size(),
            slab: slab_kib * 1024,
            tcp_inuse: field_after(tcp, "inuse"),
        }
    }
}

/// The number after `name` in a sockstat line (`TCP: inuse 5 orphan 0 ... mem 210`).
fn field_after(line: &str, name: &str) -> u64 {
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == name {
            return words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    0
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// CPU seconds (user and system) of process `pid`, from /proc (0 once it is gone).
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    crate::target::stat_cpu_seconds(&stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_fields() {
        let line = "TCP: inuse 12 orphan 0 tw 3 alloc 14 mem 210";
        assert_eq!(field_after(line, "mem"), 210);
        assert_eq!(field_after(line, "inuse"), 12);
        assert_eq!(field_after(line, "none"), 0);
    }
}
