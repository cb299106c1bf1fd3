//! The console's journal: per app, a fixed-size ring of recent events (connections,
//! subscriptions, members, client and REST events, webhook deliveries, decision hook calls) and
//! a live feed of new ones for the console's viewers.
//!
//! An entry is serialized once, when it is recorded; viewers get the shared text. A broadcast
//! is one entry, never one per delivery. The feed is a bounded broadcast channel: a viewer that
//! falls behind loses entries (and is told how many), it never slows the server.
//!
//! Much of what is journaled comes from anonymous clients (headers, query values, names), so
//! everything is bounded in bytes: each string is cut ([`MAX_TEXT`], [`MAX_DATA`] for event
//! data), an entry that still comes out longer than [`MAX_ENTRY`] keeps only its kind, and
//! the ring holds at most [`RING`] entries and [`RING_BYTES`] bytes.

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
/// Bytes of any other string kept in an entry (a header, a name, a reason).
pub const MAX_TEXT: usize = 256;
/// Bytes of one serialized entry; a longer one keeps its kind and says how long it was.
pub const MAX_ENTRY: usize = 16 * 1024;
/// Bytes of entries kept per app: the ring drops its oldest past this, as past [`RING`].
pub const RING_BYTES: usize = 1 << 20;

/// One recorded event, as a viewer gets it.
#[derive(Serialize)]
struct Entry<'a, D> {
    seq: u64,
    time_ms: u64,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
    detail: D,
}

/// The detail of an entry that came out longer than [`MAX_ENTRY`].
#[derive(Serialize)]
struct CutDetail {
    cut: usize,
}

/// The detail of an entry that has none beyond its kind and channel: `{}`.
#[derive(Serialize)]
pub struct NoDetail {}

/// The detail of a member's entry: `{"user_id": ..}`.
#[derive(Serialize)]
pub struct MemberDetail<'a> {
    /// The member's user id (cut with [`shown_text`]); none for a subscription without one.
    pub user_id: Option<Cow<'a, str>>,
}

/// One app's journal.
pub struct AppJournal {
    enabled: bool,
    seq: AtomicU64,
    ring: Mutex<Ring>,
    feed: broadcast::Sender<Arc<str>>,
}

/// The recent entries and their bytes.
#[derive(Default)]
struct Ring {
    entries: VecDeque<Arc<str>>,
    bytes: usize,
}

impl Ring {
    fn push(&mut self, entry: Arc<str>) {
        self.bytes += entry.len();
        self.entries.push_back(entry);
        while self.entries.len() > RING || self.bytes > RING_BYTES {
            let Some(oldest) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= oldest.len();
        }
    }
}

impl AppJournal {
    /// An empty journal; `enabled: false` records nothing.
    pub(crate) fn new(enabled: bool) -> AppJournal {
        AppJournal {
            enabled,
            seq: AtomicU64::new(0),
            ring: Mutex::new(Ring::default()),
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
        let mut entry = Entry {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            time_ms: unix_millis(),
            kind,
            channel: channel.map(|c| shown(c, MAX_TEXT)),
            socket_id,
            detail: detail(),
        };
        let mut text = serde_json::to_string(&entry).expect("entries serialize");
        if text.len() > MAX_ENTRY {
            let cut = Entry {
                seq: entry.seq,
                time_ms: entry.time_ms,
                kind: entry.kind,
                channel: entry.channel.take(),
                socket_id,
                detail: CutDetail { cut: text.len() },
            };
            text = serde_json::to_string(&cut).expect("entries serialize");
        }
        let text: Arc<str> = Arc::from(text);
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text.clone());
        // No viewer is not an error: the entry stays in the ring.
        let _ = self.feed.send(text);
    }

    /// The recent entries, oldest first, and the live feed from right after them.
    pub fn follow(&self) -> (Vec<Arc<str>>, broadcast::Receiver<Arc<str>>) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        // Subscribed under the ring's lock: no entry falls between the two.
        let feed = self.feed.subscribe();
        (ring.entries.iter().cloned().collect(), feed)
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

/// `data` as an entry shows it: cut at [`MAX_DATA`] bytes.
pub fn shown_data(data: &str) -> Cow<'_, str> {
    shown(data, MAX_DATA)
}

/// Any other string an entry shows (a header, a name, a reason): cut at [`MAX_TEXT`] bytes.
pub fn shown_text(text: &str) -> Cow<'_, str> {
    shown(text, MAX_TEXT)
}

/// `text` cut at `max` bytes (on a character boundary), marked with its length when cut.
fn shown(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
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
        assert!(shown_text(&long).len() < MAX_TEXT + 32);
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_and_an_oversized_entry_keeps_only_its_kind() {
        let journal = AppJournal::new(true);
        let big = "x".repeat(MAX_ENTRY / 2);
        for _ in 0..RING {
            journal.record(
                "big",
                Some(&"c".repeat(10_000)),
                None,
                || serde_json::json!({ "text": big }),
            );
        }
        let (recent, _) = journal.follow();
        let bytes: usize = recent.iter().map(|e| e.len()).sum();
        assert!(bytes <= RING_BYTES, "{bytes} bytes kept");
        assert!(recent.len() < RING && recent.len() > RING_BYTES / MAX_ENTRY);
        assert!(recent[0].len() < MAX_ENTRY, "the channel was cut");
        journal.record(
            "huge",
            None,
            None,
            || serde_json::json!({ "text": "y".repeat(MAX_ENTRY) }),
        );
        let (recent, _) = journal.follow();
        let last = recent.last().unwrap();
        assert!(
            last.contains("\"kind\":\"huge\"") && last.contains("\"cut\""),
            "{last}"
        );
        assert!(last.len() < 200);
    }
}
