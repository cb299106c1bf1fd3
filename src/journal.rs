//! The console's journal: per app, a fixed-size ring of recent events (connections,
//! subscriptions, members, client and REST events, webhook deliveries, decision hook calls) and
//! a live feed of new ones for the console's viewers.
//!
//! An entry is serialized once, when it is recorded; viewers get the shared text. A broadcast
//! is one entry, never one per delivery. The feed is a bounded broadcast channel: a viewer that
//! falls behind loses entries (and is told how many), it never slows the server.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// Entries kept per app for a viewer that opens the console.
pub const RING: usize = 500;
/// Entries a viewer may be behind before it loses some.
pub const FEED: usize = 1024;
/// Bytes of an event's data kept in an entry; the rest is cut (and marked so).
pub const MAX_DATA: usize = 2048;

/// One recorded event, as a viewer gets it.
#[derive(Serialize)]
struct Entry<'a, D> {
    seq: u64,
    time_ms: u64,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
    detail: D,
}

/// The detail of an entry that has none beyond its kind and channel: `{}`.
#[derive(Serialize)]
pub struct NoDetail {}

/// The detail of a member's entry: `{"user_id": ..}`.
#[derive(Serialize)]
pub struct MemberDetail<'a> {
    /// The member's user id; none for a subscription without one.
    pub user_id: Option<&'a str>,
}

/// One app's journal.
pub struct AppJournal {
    enabled: bool,
    seq: AtomicU64,
    ring: Mutex<VecDeque<Arc<str>>>,
    feed: broadcast::Sender<Arc<str>>,
}

impl AppJournal {
    /// An empty journal; `enabled: false` records nothing.
    pub(crate) fn new(enabled: bool) -> AppJournal {
        AppJournal {
            enabled,
            seq: AtomicU64::new(0),
            ring: Mutex::new(VecDeque::new()),
            feed: broadcast::channel(FEED).0,
        }
    }

    /// Whether anything is recorded (the console is on); callers skip building entries if not.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records an event of `kind`; `detail` is built only when the journal is on. Typed
    /// details serialize straight into the entry's text (a `Value` would allocate per field).
    pub fn record<D: Serialize>(
        &self,
        kind: &str,
        channel: Option<&str>,
        socket_id: Option<&str>,
        detail: impl FnOnce() -> D,
    ) {
        if !self.enabled {
            return;
        }
        let entry = Entry {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            time_ms: unix_millis(),
            kind,
            channel,
            socket_id,
            detail: detail(),
        };
        let text: Arc<str> = Arc::from(serde_json::to_string(&entry).expect("entries serialize"));
        {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(text.clone());
        }
        // No viewer is not an error: the entry stays in the ring.
        let _ = self.feed.send(text);
    }

    /// The recent entries, oldest first, and the live feed from right after them.
    pub fn follow(&self) -> (Vec<Arc<str>>, broadcast::Receiver<Arc<str>>) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        // Subscribed under the ring's lock: no entry falls between the two.
        let feed = self.feed.subscribe();
        (ring.iter().cloned().collect(), feed)
    }
}

/// The journals of every app, by app id.
pub struct Journal {
    apps: HashMap<String, Arc<AppJournal>>,
    off: Arc<AppJournal>,
}

impl Journal {
    /// Journals for `app_ids`, recording only when `enabled`.
    pub fn new<'a>(enabled: bool, app_ids: impl IntoIterator<Item = &'a str>) -> Journal {
        let apps = app_ids
            .into_iter()
            .map(|id| (id.to_owned(), Arc::new(AppJournal::new(enabled))))
            .collect();
        Journal {
            apps,
            off: Arc::new(AppJournal::new(false)),
        }
    }

    /// The journal of one app (one that records nothing for an unknown id).
    pub fn app(&self, app_id: &str) -> Arc<AppJournal> {
        self.apps.get(app_id).unwrap_or(&self.off).clone()
    }
}

/// Milliseconds since the Unix epoch, as entries carry them.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `data` as an entry shows it: cut at [`MAX_DATA`] bytes (on a character boundary).
pub fn shown_data(data: &str) -> Cow<'_, str> {
    if data.len() <= MAX_DATA {
        return Cow::Borrowed(data);
    }
    let mut end = MAX_DATA;
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &data[..end], data.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_entries_and_the_feed_follows_it() {
        let journal = AppJournal::new(true);
        for i in 0..RING + 5 {
            journal.record("test", None, None, || serde_json::json!({ "i": i }));
        }
        let (recent, mut feed) = journal.follow();
        assert_eq!(recent.len(), RING);
        assert!(recent[0].contains("\"i\":5"), "{}", recent[0]);
        journal.record("next", Some("c"), Some("1.2"), || NoDetail {});
        let next = feed.try_recv().unwrap();
        assert!(next.contains("\"kind\":\"next\"") && next.contains("\"channel\":\"c\""));
    }

    #[test]
    fn an_off_journal_records_nothing_and_long_data_is_cut() {
        let journal = AppJournal::new(false);
        journal.record("test", None, None, || -> NoDetail {
            unreachable!("not built when off")
        });
        assert!(journal.follow().0.is_empty());
        let long = "é".repeat(MAX_DATA);
        let shown = shown_data(&long);
        assert!(shown.ends_with(&format!("({} bytes)", long.len())));
    }
}
