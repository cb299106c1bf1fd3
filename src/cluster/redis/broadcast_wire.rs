//! The wire format of the cluster's broadcasts: the topics (`{prefix}:{pN}:bc:{app}:{channel}`)
//! and the messages on them, as [`super::fanout`] publishes and the Lua scripts' `notice()`
//! writes them.

use std::sync::Arc;

use super::arrival_order::Stamp;
use super::channel_state::{partition_of, PARTITIONS};
use super::fanout::{Broadcast, BroadcastBody};
use crate::outbound::WireFrame;

/// The wire format's version, first on every message: a node refuses what it cannot read.
pub(super) const VERSION: &str = "h1";

/// The pub/sub topic of a channel: `{prefix}:{pN}:bc:{app}:{channel}`, under its partition's
/// hash tag, so a script of the partition may publish on it with `SPUBLISH` on Redis Cluster.
pub fn topic(prefix: &str, app: &str, channel: &str) -> String {
    let partition = partition_of(app, channel);
    format!("{prefix}:{{p{partition}}}:bc:{app}:{channel}")
}

/// The partition a key or topic of this node belongs to (`{prefix}:{pN}:...`).
pub(super) fn partition_of_key(prefix: &str, topic: &str) -> Option<u32> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix(":{p")?;
    let (partition, _) = rest.split_once('}')?;
    partition.parse().ok().filter(|p| *p < PARTITIONS)
}

/// The topic of an app's user-wide commands and user changes, one per partition (a user's
/// change is published by the script of the user's channel, in that channel's partition): not
/// a channel name (`#` is not allowed in one).
pub(super) const USERS_TOPIC: &str = "#users";

/// An app's users topic in `partition`.
pub(super) fn users_topic(prefix: &str, app: &str, partition: u32) -> String {
    format!("{prefix}:{{p{partition}}}:bc:{app}:{USERS_TOPIC}")
}

/// How a topic names its app and channel.
pub(super) struct Topics {
    /// `{prefix}:`.
    pub prefix: String,
    /// The apps' ids, longest first.
    pub app_ids: Arc<[String]>,
}

impl Topics {
    /// The app and the channel of `{prefix}:{pN}:bc:{app}:{channel}`. Both may hold ':' (app
    /// ids, and channel namespaces such as `chat:room`), so the app is the longest known id the
    /// topic starts with.
    pub fn split<'t>(&self, topic: &'t str) -> Option<(&'t str, &'t str)> {
        let tagged = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("{p")?;
        let (partition, rest) = tagged.split_once("}:bc:")?;
        if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.app_ids.iter().find_map(|id| {
            let channel = rest.strip_prefix(id.as_str())?.strip_prefix(':')?;
            Some((&rest[..id.len()], channel))
        })
    }
}

/// A message of topic `{prefix}:{pN}:bc:{app}:{channel}`: version of the format, kind (`e` event,
/// `a` member added, `r` member removed, `c` subscription count, `t` terminate, `w` a user
/// online or offline), origin, except, notice version, body; one per line, the body last, so it
/// may hold anything (a member added's body is the user id, prefixed by its length and `:`,
/// then the user info; a watchlist change's is `1` or `0`, then the user id).
pub(super) fn decode(
    topics: &Topics,
    topic: &str,
    message: &[u8],
) -> Option<(Broadcast, Option<Stamp>)> {
    let (app, channel) = topics.split(topic)?;
    let mut parts = message.splitn(6, |&byte| byte == b'\n');
    let mut line = || std::str::from_utf8(parts.next()?).ok();
    if line()? != VERSION {
        return None;
    }
    let kind = line()?;
    let origin = line()?.to_owned();
    let except = Some(line()?).filter(|e| !e.is_empty()).map(str::to_owned);
    let version = match line()? {
        "" => None,
        version => Some(version.parse().ok()?),
    };
    let (body, stamp) = body_of(kind, parts.next()?)?;
    let broadcast = Broadcast {
        app: app.to_owned(),
        channel: channel.to_owned(),
        origin,
        except,
        version,
        body,
    };
    Some((broadcast, stamp))
}

/// The body of a message of `kind`, and the stamp of a request's item.
fn body_of(kind: &str, body: &[u8]) -> Option<(BroadcastBody, Option<Stamp>)> {
    let text = || std::str::from_utf8(body).ok();
    let body = match kind {
        "e" => BroadcastBody::Event(WireFrame::from_wire(body)?),
        // An item of a request, `{stamp}` on the body's first line (see `arrival_order`).
        "o" => {
            let at = body.iter().position(|&byte| byte == b'\n')?;
            let stamp = Stamp::decode(std::str::from_utf8(&body[..at]).ok()?)?;
            let frame = WireFrame::from_wire(&body[at + 1..])?;
            return Some((BroadcastBody::Event(frame), Some(stamp)));
        }
        "a" => {
            // `{length of the user id}:{user id}{user info}`: a user id may hold anything.
            let (length, rest) = text()?.split_once(':')?;
            let length: usize = length.parse().ok()?;
            let (user_id, user_info) = (rest.get(..length)?, rest.get(length..)?);
            BroadcastBody::MemberAdded {
                user_id: user_id.to_owned(),
                user_info: user_info.to_owned(),
            }
        }
        "r" => BroadcastBody::MemberRemoved {
            user_id: text()?.to_owned(),
        },
        "c" => BroadcastBody::SubscriptionCount(text()?.parse().ok()?),
        "t" => BroadcastBody::Terminate {
            user_id: text()?.to_owned(),
        },
        "w" => {
            let text = text()?;
            let (online, user_id) = (text.get(..1)?, text.get(1..)?);
            BroadcastBody::Watchlist {
                user_id: user_id.to_owned(),
                online: online == "1",
            }
        }
        _ => return None,
    };
    Some((body, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_names_its_partition() {
        let channel = topic("herald", "app-1", "presence-room");
        let expected = partition_of("app-1", "presence-room");
        assert_eq!(partition_of_key("herald", &channel), Some(expected));
        let users = users_topic("herald", "app-1", 63);
        assert_eq!(partition_of_key("herald", &users), Some(63));
        assert_eq!(partition_of_key("other", &channel), None);
        assert_eq!(partition_of_key("herald", "herald:{p64}:bc:a:b"), None);
    }

    fn topics() -> Topics {
        Topics {
            prefix: "t:".into(),
            app_ids: vec!["my:app".to_owned(), "a".to_owned()].into(),
        }
    }

    #[test]
    fn a_topic_carries_its_channels_partition_tag() {
        let partition = partition_of("my:app", "chat:room");
        let expected = format!("t:{{p{partition}}}:bc:my:app:chat:room");
        assert_eq!(topic("t", "my:app", "chat:room"), expected);
        assert_eq!(topics().split(&expected), Some(("my:app", "chat:room")));
    }

    #[test]
    fn messages_decode_with_their_topic() {
        let decode = |prefix: &str, topic: &str, message: &[u8]| {
            let topics = Topics {
                prefix: prefix.to_owned(),
                ..topics()
            };
            decode(&topics, topic, message).map(|(broadcast, _)| broadcast)
        };
        let frame = WireFrame::text(r#"{"event":"e","data":"a\nb"}"#);
        let message = [b"h1\ne\nn1.ab\n12.34\n\n".as_slice(), frame.as_ref()].concat();
        let broadcast = decode("t:", "t:{p3}:bc:my:app:presence-room", &message).unwrap();
        assert_eq!(broadcast.app, "my:app");
        assert_eq!(broadcast.channel, "presence-room");
        assert_eq!(broadcast.origin, "n1.ab");
        assert_eq!(broadcast.except.as_deref(), Some("12.34"));
        assert_eq!(broadcast.version, None);
        assert_eq!(broadcast.body, BroadcastBody::Event(frame));
        let unframed = decode("t:", "t:{p3}:bc:a:c", b"h1\ne\nn1\n\n\n{}");
        assert_eq!(unframed, None, "an event's body is whole frames");
        let terminate = decode("t:", "t:{p3}:bc:a:#users", b"h1\nt\nn1\n\n\nu:1").unwrap();
        let user_id = "u:1".to_owned();
        assert_eq!(terminate.body, BroadcastBody::Terminate { user_id });
        let added = decode(
            "t:",
            "t:{p3}:bc:a:c",
            b"h1\na\nn1\n1.2\n7\n3:u\n:{\"x\":\n1}",
        )
        .unwrap();
        assert_eq!(added.version, Some(7));
        let user_info = "{\"x\":\n1}".to_owned();
        let user_id = "u\n:".to_owned();
        assert_eq!(
            added.body,
            BroadcastBody::MemberAdded { user_id, user_info }
        );
        let removed = decode("t:", "t:{p3}:bc:a:c", b"h1\nr\nn1\n\n8\nu").unwrap();
        assert_eq!(removed.except, None);
        let user_id = "u".to_owned();
        assert_eq!(removed.body, BroadcastBody::MemberRemoved { user_id });
        let count = decode("t:", "t:{p3}:bc:a:c", b"h1\nc\nn1\n\n9\n12").unwrap();
        assert_eq!(count.body, BroadcastBody::SubscriptionCount(12));
        assert_eq!(count.version, Some(9));
        let other_version = decode("t:", "t:{p3}:bc:a:c", b"h2\nr\nn1\n\n\nu");
        assert_eq!(other_version, None);
        assert_eq!(
            decode("t:", "t:{p3}:bc:a:c", b"h1\nz\nn1\n\n\nu"),
            None,
            "another kind"
        );
        assert_eq!(decode("t:", "other:{p3}:bc:a:c", b"h1\nr\nn1\n\n\nu"), None);
        assert_eq!(
            decode("t:", "t:bc:a:c", b"h1\nr\nn1\n\n\nu"),
            None,
            "untagged"
        );
        assert_eq!(decode("t:", "t:{px}:bc:a:c", b"h1\nr\nn1\n\n\nu"), None);
        let namespaced = decode("t:", "t:{p3}:bc:my:app:chat:room", b"h1\nr\nn1\n\n8\nu").unwrap();
        assert_eq!(
            (namespaced.app.as_str(), namespaced.channel.as_str()),
            ("my:app", "chat:room"),
            "a channel namespace's ':' is the channel's"
        );
        assert_eq!(
            decode("t:", "t:{p3}:bc:unknown:c", b"h1\nr\nn1\n\n8\nu"),
            None
        );
        let offline = decode("t:", "t:{p3}:bc:a:#users", b"h1\nw\nn1\n\n\n0u:1").unwrap();
        let user_id = "u:1".to_owned();
        let online = false;
        assert_eq!(offline.body, BroadcastBody::Watchlist { user_id, online });
    }
}
