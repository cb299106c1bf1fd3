//! The process's limit on open files. Every client socket is one, and the usual soft limit
//! (1,024) is far below what a node holds, so the server raises its soft limit to the hard one
//! at start-up and says how many sockets that leaves; it never assumes a limit.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept for what is not a client socket: listeners, connections to Redis and
/// databases, webhook requests, files, the runtime.
pub const RESERVED: u64 = 100;

/// Where a hard limit of "unlimited" leaves the soft one: Linux's default `fs.nr_open`, past
/// which it refuses a soft limit.
const UNLIMITED_TARGET: u64 = 1 << 20;

/// The open-file limit before and after start-up raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit found (`None`: unlimited).
    pub found: Option<u64>,
    /// The soft limit now.
    pub now: Option<u64>,
}

impl OpenFiles {
    /// How many client sockets the limit leaves (`None`: no limit).
    pub fn sockets(&self) -> Option<u64> {
        self.now.map(|limit| limit.saturating_sub(RESERVED))
    }
}

/// Raises the soft open-file limit as far as the hard limit allows; a refusal leaves it as it
/// was (the log says so).
pub fn raise() -> OpenFiles {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let target = maximum.unwrap_or(UNLIMITED_TARGET);
    if current.is_some_and(|soft| soft < target) {
        let raised = Rlimit {
            current: Some(target),
            maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, target, "cannot raise the open-file limit");
        }
    }
    OpenFiles {
        found: current,
        now: getrlimit(Resource::Nofile).current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let hard = getrlimit(Resource::Nofile).maximum;
        // Lowered first, as most systems start a process (each test is a process of its own).
        let low = Rlimit {
            current: Some(1024),
            maximum: hard,
        };
        setrlimit(Resource::Nofile, low).unwrap();
        let files = raise();
        assert_eq!(files.found, Some(1024));
        assert!(files.now >= files.found || files.now.is_none(), "{files:?}");
        if let Some(hard) = hard {
            assert_eq!(files.now, Some(hard));
            assert_eq!(files.sockets(), Some(hard - RESERVED));
        }
        assert_eq!(raise().found, files.now, "a second call finds it raised");
    }
}
