//! Who watches whom on this node: the sockets whose sign-in carried a `watchlist`, by the user
//! they watch, and the delivery of `pusher_internal:watchlist_events` when a watched user's
//! online status changes.
//!
//! The stage tells of each change once (one node: its line carries out the transition of the
//! user's `#user:` channel; a cluster: the script that made it publishes it to every node), so
//! a change costs one map lookup and one shared frame, whatever the number of users online. A
//! socket's initial status is read after the socket is registered; changes heard in between
//! are held and sent after it, so the socket never sees a change before the state it follows.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use super::recipient::Recipient;
use crate::outbound::WireFrame;
use crate::protocol::{frames, SocketId};

/// One app's watchers on this node.
pub struct Watchlists<R> {
    /// Per watched user, the sockets watching them. A user nobody here watches has no entry.
    by_user: DashMap<Arc<str>, Vec<Arc<Watcher<R>>>>,
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
                entry.push(watcher.clone());
                entry.key().clone()
            })
            .collect();
        Watching { watcher, ids }
    }

    /// Sends the socket its initial status (the watched users `online` says are, if any),
    /// then what changed since it was registered.
    pub fn start(&self, watching: &Watching<R>, online: impl Fn(&str) -> bool) {
        let watcher = &watching.watcher;
        let mut held = watcher.held();
        let online: Vec<&str> = watching
            .ids
            .iter()
            .map(|id| &**id)
            .filter(|id| online(id))
            .collect();
        if !online.is_empty() {
            let frame = frames::watchlist_events(online.into_iter().map(|id| (true, id)));
            watcher.recipient.push(&WireFrame::text(&frame));
        }
        let changes = held.take().unwrap_or_default();
        if !changes.is_empty() {
            let frame = frames::watchlist_events(changes.iter().map(|(on, id)| (*on, &**id)));
            watcher.recipient.push(&WireFrame::text(&frame));
        }
    }

    /// Tells every socket watching `user` that they went online (or offline); returns how many
    /// were told.
    pub fn changed(&self, user: &str, online: bool) -> usize {
        // Taken out of the map's lock: sockets are written to without it.
        let Some(watchers) = self.by_user.get(user).map(|w| w.value().clone()) else {
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

    /// Forgets the socket's watchlist: a socket that closed costs nothing more.
    pub fn unwatch(&self, watching: &Watching<R>) {
        for id in watching.ids.iter() {
            let emptied = self.by_user.get_mut(id).is_some_and(|mut watchers| {
                watchers.retain(|w| w.socket != watching.watcher.socket);
                watchers.is_empty()
            });
            if emptied {
                self.by_user
                    .remove_if(id, |_, watchers| watchers.is_empty());
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
                    let start = text.find('{').unwrap();
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
        lists.start(&watching, |id| id == "a");
        lists.changed("a", false);
        lists.changed("z", true);
        let events = frames.events();
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0]["events"],
            serde_json::json!([{"name": "online", "user_ids": ["a"]}])
        );
        assert_eq!(
            events[1]["events"],
            serde_json::json!([{"name": "online", "user_ids": ["c"]}]),
            "a change heard before the start follows the initial status"
        );
        assert_eq!(
            events[2]["events"],
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
}
