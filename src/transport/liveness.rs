//! When to ping a silent socket, when to give up on it, and the sign-in deadline.

use std::time::Duration;

use tokio::time::Instant;

/// What the connection should do when its timer fires.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet: sleep until the next deadline.
    Nothing,
    /// Send a WebSocket Ping frame.
    Ping,
    /// Close with 4201: the ping went unanswered.
    PongTimeout,
    /// Close with 4009: the app requires sign-in and none came.
    SigninTimeout,
}

/// Liveness state of one connection.
pub struct Liveness {
    activity_timeout: Duration,
    pong_timeout: Duration,
    last_seen: Instant,
    ping_sent: Option<Instant>,
    signin_deadline: Option<Instant>,
}

impl Liveness {
    /// Starts the clocks at `now`; `signin_timeout` is set when the app requires sign-in.
    pub fn new(
        now: Instant,
        activity_timeout: Duration,
        pong_timeout: Duration,
        signin_timeout: Option<Duration>,
    ) -> Self {
        Liveness {
            activity_timeout,
            pong_timeout,
            last_seen: now,
            ping_sent: None,
            signin_deadline: signin_timeout.map(|t| now + t),
        }
    }

    /// Any inbound frame (message, Pong) proves the peer alive.
    pub fn seen(&mut self, now: Instant) {
        self.last_seen = now;
    }

    /// The connection signed in (or authorized a private channel): no more sign-in deadline.
    pub fn authorized(&mut self) {
        self.signin_deadline = None;
    }

    /// The next instant at which [`Liveness::due`] has something to decide.
    pub fn next_deadline(&self) -> Instant {
        let liveness = match self.ping_sent {
            Some(sent) if self.last_seen < sent => sent + self.pong_timeout,
            _ => self.last_seen + self.activity_timeout,
        };
        self.signin_deadline.map_or(liveness, |d| d.min(liveness))
    }

    /// Decides what is due at `now` and records a ping as sent.
    pub fn due(&mut self, now: Instant) -> Due {
        if self.signin_deadline.is_some_and(|d| now >= d) {
            return Due::SigninTimeout;
        }
        if let Some(sent) = self.ping_sent {
            if self.last_seen >= sent {
                self.ping_sent = None;
            } else if now >= sent + self.pong_timeout {
                return Due::PongTimeout;
            } else {
                return Due::Nothing;
            }
        }
        if now >= self.last_seen + self.activity_timeout {
            self.ping_sent = Some(now);
            return Due::Ping;
        }
        Due::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn pings_after_silence_then_times_out() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, 10 * S, 3 * S, None);
        assert_eq!(l.next_deadline(), t0 + 10 * S);
        assert_eq!(l.due(t0 + 5 * S), Due::Nothing);
        assert_eq!(l.due(t0 + 10 * S), Due::Ping);
        assert_eq!(l.next_deadline(), t0 + 13 * S);
        assert_eq!(l.due(t0 + 13 * S), Due::PongTimeout);
    }

    #[test]
    fn an_answer_resets_the_clock() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, 10 * S, 3 * S, None);
        assert_eq!(l.due(t0 + 10 * S), Due::Ping);
        l.seen(t0 + 11 * S);
        assert_eq!(l.due(t0 + 13 * S), Due::Nothing);
        assert_eq!(l.next_deadline(), t0 + 21 * S);
    }

    #[test]
    fn activity_postpones_the_ping() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, 10 * S, 3 * S, None);
        l.seen(t0 + 8 * S);
        assert_eq!(l.due(t0 + 10 * S), Due::Nothing);
        assert_eq!(l.next_deadline(), t0 + 18 * S);
    }

    #[test]
    fn signin_deadline_until_authorized() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, 10 * S, 3 * S, Some(2 * S));
        assert_eq!(l.next_deadline(), t0 + 2 * S);
        assert_eq!(l.due(t0 + 2 * S), Due::SigninTimeout);
        l.authorized();
        assert_eq!(l.due(t0 + 2 * S), Due::Nothing);
    }
}
