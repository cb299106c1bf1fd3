//! Presence membership of one channel: users ref-counted by their sockets.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

/// A member as declared in a presence subscription's `channel_data`.
#[derive(Clone, Debug)]
pub struct PresenceMember {
    /// The user id, normalized to a string (`1` and `"1"` are the same member).
    pub user_id: Arc<str>,
    /// The user's `user_info`, kept as sent.
    pub user_info: Option<Arc<RawValue>>,
}

struct Member {
    info: Option<Arc<RawValue>>,
    sockets: u32,
}

/// The members of one presence channel.
#[derive(Default)]
pub(crate) struct Members {
    by_user: HashMap<Arc<str>, Member>,
}

impl Members {
    pub(crate) fn len(&self) -> usize {
        self.by_user.len()
    }

    pub(crate) fn contains(&self, user_id: &str) -> bool {
        self.by_user.contains_key(user_id)
    }

    /// Adds one socket of the member; true when this is the user's first socket.
    ///
    /// `user_info` is fixed by the first socket; later sockets do not change it.
    pub(crate) fn add_socket(&mut self, member: &PresenceMember) -> bool {
        let entry = self
            .by_user
            .entry(member.user_id.clone())
            .or_insert_with(|| Member {
                info: member.user_info.clone(),
                sockets: 0,
            });
        entry.sockets += 1;
        entry.sockets == 1
    }

    /// Removes one socket of the user; true when it was the user's last socket.
    pub(crate) fn remove_socket(&mut self, user_id: &str) -> bool {
        let Some(member) = self.by_user.get_mut(user_id) else {
            return false;
        };
        member.sockets -= 1;
        if member.sockets == 0 {
            self.by_user.remove(user_id);
            true
        } else {
            false
        }
    }

    /// The `subscription_succeeded` data: `{"presence":{"ids":[..],"hash":{..},"count":n}}`.
    pub(crate) fn snapshot_json(&self) -> String {
        snapshot_json(
            self.by_user
                .iter()
                .map(|(id, m)| (&**id, m.info.as_deref())),
        )
    }

    /// The `user_info` the user joined with.
    pub(crate) fn info(&self, user_id: &str) -> Option<Arc<RawValue>> {
        self.by_user.get(user_id).and_then(|m| m.info.clone())
    }

    pub(crate) fn user_ids(&self) -> Vec<Arc<str>> {
        self.by_user.keys().cloned().collect()
    }
}

/// A presence channel's `subscription_succeeded` data from its members (user id, `user_info`):
/// `{"presence":{"ids":[..],"hash":{..},"count":n}}`.
pub fn snapshot_json<'a>(members: impl Iterator<Item = (&'a str, Option<&'a RawValue>)>) -> String {
    #[derive(Serialize)]
    struct Snapshot<'a> {
        presence: Presence<'a>,
    }
    #[derive(Serialize)]
    struct Presence<'a> {
        ids: Vec<&'a str>,
        hash: HashMap<&'a str, Option<&'a RawValue>>,
        count: usize,
    }
    let (ids, hash): (Vec<&str>, HashMap<&str, Option<&RawValue>>) =
        members.map(|(id, info)| (id, (id, info))).unzip();
    let snapshot = Snapshot {
        presence: Presence {
            count: ids.len(),
            ids,
            hash,
        },
    };
    serde_json::to_string(&snapshot).expect("snapshot serializes")
}
