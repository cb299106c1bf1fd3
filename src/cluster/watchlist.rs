//! Who watches whom on this node: the sockets whose sign-in carried a `watchlist`, by the user
//! they watch, and the delivery of `pusher_internal:watchlist_events` when a watched user's
//! online status changes.
//!
//! The stage tells of each change once (one node: its line carries out the transition of the
//! user's `#user:` channel; a cluster: the script that made it publishes it to every node), so
//! a change costs one map lookup and one shared frame, whatever the number of users online. A
//! socket's initial status is read after the socket is registered; a change heard in between
//! overrides what was read (it is newer), so the initial frame is the state as of its sending
//! and every frame after it a change from there. A cluster node cut off from the others
//! reconciles afterwards: it reads every watched user's status again and tells the differences.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use super::recipient::Recipient;
use crate::outbound::WireFrame;
use crate::protocol::{frames, SocketId};

/// One app's watchers on this node.
pub struct Watchlists<R> {
    /// Per watched user, the sockets watching them. A user nobody here watches has no entry.
    by_user: DashMap<Arc<str>, Watched<R>>,
    /// Counts the changes heard, so a reconciliation can tell a reading older than a change.
    heard: AtomicU64,
}

/// When a reconciliation's reading began, as [`Watchlists::mark`] returned it.
#[derive(Clone, Copy)]
pub struct Mark(u64);

/// A user watched on this node.
struct Watched<R> {
    watchers: Vec<Arc<Watcher<R>>>,
    /// The status this node last heard or read (`None` before its first reading): what a
    /// reconciliation compares with (see [`Watchlists::reconcile`]).
    online: Option<bool>,
    /// The count of changes heard when this user's last one was.
    heard_at: u64,
}

impl<R> Default for Watched<R> {
    fn default() -> Self {
        Watched {
            watchers: Vec::new(),
            online: None,
            heard_at: 0,
        }
    }
}

/// Changes heard for a watcher before its initial status went out: (online, user).
type Held = Option<Vec<(bool, Arc<str>)>>;

/// A watching socket.
pub struct Watcher<R> {
    socket: SocketId,
    recipient: R,
    /// Changes heard before the initial status went out (`None` once it has).
    held: Mutex<Held>,
}

/// A socket's registration: the handle its session keeps to start and to stop watching.
pub struct Watching<R> {
    watcher: Arc<Watcher<R>>,
    /// The watched ids, sharing the map's keys.
    ids: Box<[Arc<str>]>,
}

impl<R> Default for Watchlists<R> {
    fn default() -> Self {
        Watchlists {
            by_user: DashMap::new(),
            heard: AtomicU64::new(0),
        }
    }
}

impl<R> Watching<R> {
    /// The users watched.
    pub fn ids(&self) -> &[Arc<str>] {
        &self.ids
    }
}

impl<R: Recipient> Watcher<R> {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<R: Recipient> Watchlists<R> {
    /// Registers `socket` as watching `ids`; changes are held until [`Watchlists::start`].
    pub fn watch(&self, socket: SocketId, recipient: R, ids: &[String]) -> Watching<R> {
        let watcher = Arc::new(Watcher {
            socket,
            recipient,
            held: Mutex::new(Some(Vec::new())),
        });
        let ids = ids
            .iter()
            .map(|id| {
                let mut entry = self.by_user.entry(Arc::from(id.as_str())).or_default();
                entry.watchers.push(watcher.clone());
                entry.key().clone()
            })
            .collect();
        Watching { watcher, ids }
    }

    /// Sends the socket its initial status in one frame: the watched users online as `online`
    /// read them, or as a change heard since registration left them (the last one wins).
    pub fn start(&self, watching: &Watching<R>, online: impl Fn(&str) -> bool) {
        let watcher = &watching.watcher;
        let mut held = watcher.held();
        let heard: HashMap<Arc<str>, bool> = held
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|(on, id)| (id, on))
            .collect();
        let mut now_online = Vec::new();
        for id in watching.ids.iter() {
            let is_online = heard.get(id).copied().unwrap_or_else(|| online(id));
            if let Some(mut entry) = self.by_user.get_mut(id) {
                entry.online.get_or_insert(is_online);
            }
            if is_online {
                now_online.push(&**id);
            }
        }
        if !now_online.is_empty() {
            let frame = frames::watchlist_events(now_online.into_iter().map(|id| (true, id)));
            watcher.recipient.push(&WireFrame::text(&frame));
        }
    }

    /// Tells every socket watching `user` that they went online (or offline); returns how many
    /// were told.
    pub fn changed(&self, user: &str, online: bool) -> usize {
        // Taken out of the map's lock: sockets are written to without it.
        let heard_at = self.heard.fetch_add(1, Ordering::AcqRel) + 1;
        let Some(watchers) = self.by_user.get_mut(user).map(|mut watched| {
            watched.online = Some(online);
            watched.heard_at = heard_at;
            watched.watchers.clone()
        }) else {
            return 0;
        };
        let user: Arc<str> = Arc::from(user);
        let frame = WireFrame::text(&frames::watchlist_events([(online, &*user)]));
        let mut told = 0;
        for watcher in &watchers {
            let mut held = watcher.held();
            match held.as_mut() {
                Some(changes) => changes.push((online, user.clone())),
                None => {
                    if watcher.recipient.push(&frame) {
                        told += 1;
                    }
                }
            }
        }
        told
    }

    /// Every user watched on this node.
    pub fn watched(&self) -> Vec<Arc<str>> {
        self.by_user
            .iter()
            .map(|entry| entry.key().clone())
            .collect()
    }

    /// Taken before a reconciliation's reading begins.
    pub fn mark(&self) -> Mark {
        Mark(self.heard.load(Ordering::Acquire))
    }

    /// Tells the watchers of each user whose status `now` reads (`None`: not read) differs from
    /// the one this node last heard: the changes a node missed while it was cut off from the
    /// others. A user a change was heard of since `read_from` is left alone: that change is
    /// newer than the reading. Returns how many users changed.
    pub fn reconcile(&self, read_from: Mark, now: impl Fn(&str) -> Option<bool>) -> usize {
        let stale: Vec<(Arc<str>, bool)> = self
            .by_user
            .iter()
            .filter(|entry| entry.heard_at <= read_from.0)
            .filter_map(|entry| {
                let read = now(entry.key())?;
                (entry.online != Some(read)).then(|| (entry.key().clone(), read))
            })
            .collect();
        for (user, online) in &stale {
            self.changed(user, *online);
        }
        stale.len()
    }

    /// Forgets the socket's watchlist: a socket that closed costs nothing more.
    pub fn unwatch(&self, watching: &Watching<R>) {
        for id in watching.ids.iter() {
            let emptied = self.by_user.get_mut(id).is_some_and(|mut watched| {
                watched
                    .watchers
                    .retain(|w| w.socket != watching.watcher.socket);
                watched.watchers.is_empty()
            });
            if emptied {
                self.by_user
                    .remove_if(id, |_, watched| watched.watchers.is_empty());
            }
        }
    }

    /// How many users are watched on this node.
    #[cfg(test)]
    pub fn watched_users(&self) -> usize {
        self.by_user.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codes::SocketError;

    #[derive(Clone, Default)]
    struct Frames(Arc<Mutex<Vec<String>>>);

    impl Recipient for Frames {
        fn push(&self, frame: &WireFrame) -> bool {
            let text = String::from_utf8_lossy(frame.as_ref()).into_owned();
            self.0.lock().unwrap().push(text);
            true
        }
        fn close(&self, _: SocketError) {}
    }

    impl Frames {
        fn events(&self) -> Vec<serde_json::Value> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|text| {
                    let start = text.find("{\"event\"").unwrap();
                    let frame: serde_json::Value = serde_json::from_str(&text[start..]).unwrap();
                    assert_eq!(frame["event"], "pusher_internal:watchlist_events");
                    serde_json::from_str(frame["data"].as_str().unwrap()).unwrap()
                })
                .collect()
        }
    }

    fn socket(n: u64) -> SocketId {
        format!("{n}.{n}").parse().unwrap()
    }

    #[test]
    fn the_initial_status_lists_only_online_users_then_changes_follow() {
        let lists = Watchlists::default();
        let frames = Frames::default();
        let ids = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let watching = lists.watch(socket(1), frames.clone(), &ids);
        lists.changed("c", true);
        // Heard before the start, in this order: b's last word is that it is online.
        lists.changed("b", false);
        lists.changed("b", true);
        lists.start(&watching, |id| id == "a" || id == "b");
        lists.changed("a", false);
        lists.changed("z", true);
        let events = frames.events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[0]["events"],
            serde_json::json!([{"name": "online", "user_ids": ["a", "b", "c"]}]),
            "one initial frame: the state as changes heard meanwhile left it"
        );
        assert_eq!(
            events[1]["events"],
            serde_json::json!([{"name": "offline", "user_ids": ["a"]}])
        );
    }

    #[test]
    fn nobody_online_sends_nothing_and_a_closed_socket_costs_nothing() {
        let lists = Watchlists::default();
        let frames = Frames::default();
        let watching = lists.watch(socket(1), frames.clone(), &["a".to_owned()]);
        let other = lists.watch(socket(2), Frames::default(), &["a".to_owned()]);
        lists.start(&watching, |_| false);
        assert!(frames.events().is_empty(), "no empty user_ids, ever");
        lists.unwatch(&watching);
        assert_eq!(lists.changed("a", true), 0, "the other has not started");
        lists.unwatch(&other);
        assert_eq!(lists.watched_users(), 0);
        assert!(frames.events().is_empty());
    }

    #[test]
    fn a_reconciliation_tells_only_what_was_missed() {
        let lists = Watchlists::default();
        let frames = Frames::default();
        let ids = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let watching = lists.watch(socket(1), frames.clone(), &ids);
        lists.start(&watching, |id| id == "a");
        assert_eq!(frames.events().len(), 1);
        // Missed: a went offline and b online while the node was cut off; c was not read.
        let now = |id: &str| match id {
            "a" => Some(false),
            "b" => Some(true),
            _ => None,
        };
        let mark = lists.mark();
        assert_eq!(lists.reconcile(mark, now), 2);
        let events = frames.events();
        assert_eq!(events.len(), 3);
        assert_eq!(
            lists.reconcile(lists.mark(), now),
            0,
            "nothing left to tell"
        );
        // A change heard after the reading began is newer than what was read.
        let mark = lists.mark();
        lists.changed("a", true);
        let stale = |id: &str| (id == "a").then_some(false);
        assert_eq!(lists.reconcile(mark, stale), 0, "the reading is older");
    }
}
