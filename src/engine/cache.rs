//! The last event published on each cache channel, kept for a TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// The last event published on a cache channel: only its frame, which holds the data too, so
/// an event is stored once.
#[derive(Clone, Debug)]
pub struct CachedEvent {
    /// The serialized frame, replayed to new subscribers as is.
    pub frame: Arc<str>,
    expires_at: Instant,
}

impl CachedEvent {
    /// An event kept elsewhere (in Redis) with `ttl` left.
    pub fn new(frame: Arc<str>, ttl: Duration) -> CachedEvent {
        CachedEvent {
            frame,
            expires_at: Instant::now() + ttl,
        }
    }

    /// The data string as published, read back from the frame (REST `info=cache` only).
    pub fn data(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Frame {
            data: String,
        }
        serde_json::from_str::<Frame>(&self.frame).map_or_else(|_| String::new(), |f| f.data)
    }

    /// Time left before the entry expires.
    pub fn ttl(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }
}

/// Last events of the app's cache channels. Entries outlive occupancy, as on Pusher.
pub struct ChannelCache {
    entries: DashMap<Arc<str>, CachedEvent>,
    ttl: Duration,
}

impl ChannelCache {
    /// An empty cache whose entries live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        ChannelCache {
            entries: DashMap::new(),
            ttl,
        }
    }

    /// Stores the channel's last event, replacing the previous one.
    pub fn store(&self, channel: Arc<str>, frame: Arc<str>) {
        let entry = CachedEvent {
            frame,
            expires_at: Instant::now() + self.ttl,
        };
        self.entries.insert(channel, entry);
    }

    /// The channel's last event, if one was stored and has not expired.
    pub fn get(&self, channel: &str) -> Option<CachedEvent> {
        let now = Instant::now();
        let hit = self.entries.get(channel).map(|e| e.clone());
        match hit {
            Some(entry) if entry.expires_at > now => Some(entry),
            Some(_) => {
                self.entries.remove_if(channel, |_, e| e.expires_at <= now);
                None
            }
            None => None,
        }
    }

    /// Drops every expired entry; called periodically so unread channels do not accumulate.
    pub fn purge_expired(&self) {
        let now = Instant::now();
        self.entries.retain(|_, e| e.expires_at > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_expires() {
        let cache = ChannelCache::new(Duration::from_millis(30));
        assert!(cache.get("cache-a").is_none());
        let frame = r#"{"event":"e","channel":"cache-a","data":"d"}"#;
        cache.store("cache-a".into(), frame.into());
        assert_eq!(cache.get("cache-a").unwrap().data(), "d");
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get("cache-a").is_none());
    }
}
