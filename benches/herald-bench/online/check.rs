//! Whether every watcher saw the changes it must have seen: for each connection of a watcher
//! and each reconnect of a user it watches, one `offline` after the close and one `online`
//! after the sign-in again.

use super::users::{watchlist, SessionLog, UserLog};

/// A change that has not reached a watcher this long (µs) after the bench caused it is lost.
/// The churn never closes a user's connection sooner after its sign-in, so each change has
/// at least this long to arrive before the next one of the same user.
pub const LATE_MICROS: u64 = 5_000_000;

/// A connection checks only reconnects whose close came at least this long (µs) after its own
/// sign-in: before, the initial status (and the changes held while it is read) may stand for
/// the change.
const SETTLED_MICROS: u64 = 1_000_000;

/// Changes checked, and of them lost (none arrived) and duplicated (more than one arrived).
#[derive(Default)]
pub struct Checked {
    pub changes: u64,
    pub lost: u64,
    pub duplicated: u64,
}

/// Checks every connection of every user against the reconnects of the users it watched.
pub fn watch_changes(logs: &[UserLog], watch: usize) -> Checked {
    let mut checked = Checked::default();
    for (w, log) in logs.iter().enumerate() {
        for session in &log.sessions {
            for u in watchlist(w, logs.len(), watch) {
                check_pair(session, u, &logs[u], &mut checked);
            }
        }
    }
    checked
}

/// One connection against one watched user's reconnects. A reconnect's changes count until
/// the user's next close (or its last one at the end), so each arrival is matched once.
fn check_pair(session: &SessionLog, u: usize, watched: &UserLog, checked: &mut Checked) {
    let reconnects = &watched.reconnects;
    for (j, reconnect) in reconnects.iter().enumerate() {
        // And still open `LATE_MICROS` after the sign-in again: a change may take that long.
        let watching = session.success_at + SETTLED_MICROS < reconnect.close_sent
            && reconnect.signin_sent + LATE_MICROS < session.end_at;
        if !watching {
            continue;
        }
        let until = reconnects
            .get(j + 1)
            .map_or(watched.finished_at, |next| next.close_sent);
        let seen = |online: bool, from: u64| {
            let matches = |&&(user, on, at): &&(u32, bool, u64)| {
                user as usize == u && on == online && (from..until).contains(&at)
            };
            session.changes.iter().filter(matches).count() as u64
        };
        for got in [
            seen(false, reconnect.close_sent),
            seen(true, reconnect.signin_sent),
        ] {
            checked.changes += 1;
            checked.lost += u64::from(got == 0);
            checked.duplicated += got.saturating_sub(1);
        }
    }
}
