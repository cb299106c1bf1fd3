//! The online scenario's webhook receiver: `user_online` and `user_offline` counted per user,
//! de-duplicated by `webhook-id` (a retried POST is not a duplicate event), each user's strict
//! alternation checked in the order the events arrive.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// What arrived for one user.
#[derive(Clone, Copy, Default)]
pub struct UserTally {
    pub online: u64,
    pub offline: u64,
    /// Events that repeated the state they should change (online after online, an offline
    /// first or after offline).
    pub out_of_order: u64,
    /// Whether the last event said online.
    last_online: bool,
}

#[derive(Default)]
struct Tally {
    seen_ids: HashSet<String>,
    /// Indexed by the user's number (`u{i}`).
    users: Vec<UserTally>,
    /// Events for an id the bench never signed in, or of another name.
    unknown: u64,
}

/// Counts the user events of users `u0..u{n}`.
#[derive(Clone)]
pub struct UserHooks {
    tally: Arc<Mutex<Tally>>,
}

/// The user number of an id the bench signs in as (`u{i}`).
pub fn user_number(id: &str) -> Option<usize> {
    id.strip_prefix('u')?.parse().ok()
}

async fn receive(State(hooks): State<UserHooks>, headers: HeaderMap, body: Bytes) -> &'static str {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok());
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return "bad";
    };
    let mut tally = hooks.tally.lock().unwrap();
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        if !tally.seen_ids.insert(id.to_owned()) {
            return "ok";
        }
    }
    for event in json["events"].as_array().into_iter().flatten() {
        let online = match event["name"].as_str() {
            Some("user_online") => true,
            Some("user_offline") => false,
            _ => {
                tally.unknown += 1;
                continue;
            }
        };
        let number = event["user_id"].as_str().and_then(user_number);
        let Some(user) = number.and_then(|i| tally.users.get_mut(i)) else {
            tally.unknown += 1;
            continue;
        };
        // A user starts offline: the first event must say online, and each the opposite of
        // the one before.
        user.out_of_order += u64::from(user.last_online == online);
        user.last_online = online;
        match online {
            true => user.online += 1,
            false => user.offline += 1,
        }
    }
    "ok"
}

impl UserHooks {
    pub fn new(users: usize) -> UserHooks {
        let tally = Tally {
            users: vec![UserTally::default(); users],
            ..Tally::default()
        };
        UserHooks {
            tally: Arc::new(Mutex::new(tally)),
        }
    }

    /// Serves on an ephemeral loopback port; returns the URL.
    pub async fn start(&self) -> String {
        let app = Router::new().route("/webhooks", post(receive));
        crate::receiver::serve_webhooks(app.with_state(self.clone())).await
    }

    pub fn user(&self, i: usize) -> UserTally {
        self.tally.lock().unwrap().users[i]
    }

    /// Every user's tally, and the events for unknown users or of other names.
    pub fn snapshot(&self) -> (Vec<UserTally>, u64) {
        let tally = self.tally.lock().unwrap();
        (tally.users.clone(), tally.unknown)
    }

    /// Polls every 5 ms until `done` holds for user `i`; false after `bound`.
    pub async fn wait(&self, i: usize, done: impl Fn(&UserTally) -> bool, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while !done(&self.user(i)) {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Polls every 20 ms until `done(i, tally)` holds for every user; the seconds it took, or
    /// -1 when it still did not after `bound`.
    pub async fn wait_all(&self, done: impl Fn(usize, &UserTally) -> bool, bound: Duration) -> f64 {
        let started = Instant::now();
        while started.elapsed() < bound {
            let all = {
                let tally = self.tally.lock().unwrap();
                tally.users.iter().enumerate().all(|(i, t)| done(i, t))
            };
            if all {
                return started.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        -1.0
    }
}
