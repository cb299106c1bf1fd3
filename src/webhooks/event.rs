//! Webhook events in Pusher's shapes, as the cluster stage decides them.

use std::sync::Arc;

use serde::Serialize;

use crate::config::EventKind;
use crate::protocol::channel::user_of_channel;

/// One webhook event; serializes to Pusher's `{"name": ..., "channel": ..., ...}` shape.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum WebhookEvent {
    /// The channel's first subscriber arrived.
    ChannelOccupied { channel: Arc<str> },
    /// The channel's last subscriber left.
    ChannelVacated { channel: Arc<str> },
    /// A user's first socket joined the presence channel.
    MemberAdded {
        channel: Arc<str>,
        user_id: Arc<str>,
    },
    /// A user's last socket left the presence channel.
    MemberRemoved {
        channel: Arc<str>,
        user_id: Arc<str>,
    },
    /// A client event was relayed; `data` is a string (JSON-encoded when the client sent JSON).
    ClientEvent {
        channel: Arc<str>,
        event: String,
        data: String,
        socket_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<Arc<str>>,
    },
    /// A cache channel was subscribed with nothing cached.
    CacheMiss { channel: Arc<str> },
    /// A channel's subscription count changed (apps with `enable_subscription_count`).
    SubscriptionCount {
        channel: Arc<str>,
        subscription_count: usize,
    },
    /// A user's first signed-in connection arrived: the occupancy of its `#user:` channel,
    /// which orders and pairs it but is not part of the event.
    UserOnline {
        #[serde(skip)]
        channel: Arc<str>,
        user_id: Arc<str>,
    },
    /// A user's last signed-in connection closed (held for the grace period).
    UserOffline {
        #[serde(skip)]
        channel: Arc<str>,
        user_id: Arc<str>,
    },
}

/// What a vacate/remove pairs with: a channel (occupied/vacated) or a member of one.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum PairKey {
    /// `channel_occupied` / `channel_vacated` of this channel.
    Channel(Arc<str>),
    /// `member_added` / `member_removed` of this user on this channel.
    Member(Arc<str>, Arc<str>),
}

/// Which half of a pair an event is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PairRole {
    /// `channel_occupied`, `member_added`: something became live.
    Opens,
    /// `channel_vacated`, `member_removed`: it ended.
    Closes,
}

/// Counts bytes written, so an event's JSON length is known without building the string.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl WebhookEvent {
    /// A channel's first subscriber arrived: `user_online` on a user's own channel.
    pub fn occupied(channel: Arc<str>) -> WebhookEvent {
        match user_of_channel(&channel) {
            Some(user) => WebhookEvent::UserOnline {
                user_id: Arc::from(user),
                channel,
            },
            None => WebhookEvent::ChannelOccupied { channel },
        }
    }

    /// A channel's last subscriber left: `user_offline` on a user's own channel.
    pub fn vacated(channel: Arc<str>) -> WebhookEvent {
        match user_of_channel(&channel) {
            Some(user) => WebhookEvent::UserOffline {
                user_id: Arc::from(user),
                channel,
            },
            None => WebhookEvent::ChannelVacated { channel },
        }
    }

    /// The event a cluster stream entry holds, from its fields (`name`, `channel`, `user_id`);
    /// `None` for a name this build does not know.
    pub fn from_fields<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Option<WebhookEvent> {
        let channel: Arc<str> = Arc::from(field("channel")?);
        let user = || field("user_id").map(Arc::from);
        let text = |name| field(name).map(str::to_owned);
        Some(match field("name")? {
            "client_event" => WebhookEvent::ClientEvent {
                channel,
                event: text("event")?,
                data: text("data")?,
                socket_id: text("socket_id")?,
                user_id: user(),
            },
            "cache_miss" => WebhookEvent::CacheMiss { channel },
            "subscription_count" => WebhookEvent::SubscriptionCount {
                channel,
                subscription_count: field("subscription_count")?.parse().ok()?,
            },
            // The scripts name a user's transitions by its channel's occupancy.
            "channel_occupied" => WebhookEvent::occupied(channel),
            "channel_vacated" => WebhookEvent::vacated(channel),
            "member_added" => WebhookEvent::MemberAdded {
                channel,
                user_id: user()?,
            },
            "member_removed" => WebhookEvent::MemberRemoved {
                channel,
                user_id: user()?,
            },
            _ => return None,
        })
    }

    /// The fields [`WebhookEvent::from_fields`] reads back, besides `name` and `channel`.
    pub fn extra_fields(&self) -> Vec<(&'static str, String)> {
        match self {
            WebhookEvent::ChannelOccupied { .. }
            | WebhookEvent::ChannelVacated { .. }
            | WebhookEvent::UserOnline { .. }
            | WebhookEvent::UserOffline { .. }
            | WebhookEvent::CacheMiss { .. } => Vec::new(),
            WebhookEvent::MemberAdded { user_id, .. }
            | WebhookEvent::MemberRemoved { user_id, .. } => {
                vec![("user_id", user_id.to_string())]
            }
            WebhookEvent::ClientEvent {
                event,
                data,
                socket_id,
                user_id,
                ..
            } => {
                let mut fields = vec![
                    ("event", event.clone()),
                    ("data", data.clone()),
                    ("socket_id", socket_id.clone()),
                ];
                fields.extend(user_id.as_ref().map(|u| ("user_id", u.to_string())));
                fields
            }
            WebhookEvent::SubscriptionCount {
                subscription_count, ..
            } => vec![("subscription_count", subscription_count.to_string())],
        }
    }

    /// The event's kind (its `name`).
    pub fn kind(&self) -> EventKind {
        match self {
            WebhookEvent::ChannelOccupied { .. } => EventKind::ChannelOccupied,
            WebhookEvent::ChannelVacated { .. } => EventKind::ChannelVacated,
            WebhookEvent::MemberAdded { .. } => EventKind::MemberAdded,
            WebhookEvent::MemberRemoved { .. } => EventKind::MemberRemoved,
            WebhookEvent::ClientEvent { .. } => EventKind::ClientEvent,
            WebhookEvent::CacheMiss { .. } => EventKind::CacheMiss,
            WebhookEvent::SubscriptionCount { .. } => EventKind::SubscriptionCount,
            WebhookEvent::UserOnline { .. } => EventKind::UserOnline,
            WebhookEvent::UserOffline { .. } => EventKind::UserOffline,
        }
    }

    /// The length of the event's JSON, as it will appear in a webhook body.
    pub fn json_len(&self) -> usize {
        let mut count = ByteCount(0);
        serde_json::to_writer(&mut count, self).expect("events serialize");
        count.0
    }

    /// The pair this event belongs to, for occupancy and membership events.
    pub fn pair(&self) -> Option<(PairKey, PairRole)> {
        let channel_key = |channel: &Arc<str>| PairKey::Channel(channel.clone());
        let member_key =
            |channel: &Arc<str>, user: &Arc<str>| PairKey::Member(channel.clone(), user.clone());
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::UserOnline { channel, .. } => {
                Some((channel_key(channel), PairRole::Opens))
            }
            WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::UserOffline { channel, .. } => {
                Some((channel_key(channel), PairRole::Closes))
            }
            WebhookEvent::MemberAdded { channel, user_id } => {
                Some((member_key(channel, user_id), PairRole::Opens))
            }
            WebhookEvent::MemberRemoved { channel, user_id } => {
                Some((member_key(channel, user_id), PairRole::Closes))
            }
            WebhookEvent::ClientEvent { .. }
            | WebhookEvent::CacheMiss { .. }
            | WebhookEvent::SubscriptionCount { .. } => None,
        }
    }

    /// The channel the event happened on, shared.
    pub fn channel_name(&self) -> &Arc<str> {
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::MemberAdded { channel, .. }
            | WebhookEvent::MemberRemoved { channel, .. }
            | WebhookEvent::ClientEvent { channel, .. }
            | WebhookEvent::CacheMiss { channel }
            | WebhookEvent::SubscriptionCount { channel, .. }
            | WebhookEvent::UserOnline { channel, .. }
            | WebhookEvent::UserOffline { channel, .. } => channel,
        }
    }

    /// The channel the event happened on.
    pub fn channel(&self) -> &str {
        self.channel_name()
    }
}

impl AsRef<WebhookEvent> for WebhookEvent {
    fn as_ref(&self) -> &WebhookEvent {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_in_pushers_shape() {
        let e = WebhookEvent::MemberAdded {
            channel: "presence-a".into(),
            user_id: "7".into(),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"name": "member_added", "channel": "presence-a", "user_id": "7"})
        );
        let e = WebhookEvent::ClientEvent {
            channel: "private-a".into(),
            event: "client-x".into(),
            data: "{}".into(),
            socket_id: "1.2".into(),
            user_id: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"name": "client_event", "channel": "private-a", "event": "client-x", "data": "{}", "socket_id": "1.2"})
        );
        assert_eq!(e.kind().name(), "client_event");
        assert_eq!(e.json_len(), serde_json::to_string(&e).unwrap().len());
    }

    #[test]
    fn a_users_channel_occupancy_is_their_online_status() {
        let online = WebhookEvent::occupied("#user:7".into());
        assert_eq!(
            serde_json::to_value(&online).unwrap(),
            json!({"name": "user_online", "user_id": "7"})
        );
        assert_eq!(
            online.channel(),
            "#user:7",
            "ordered and paired by its channel"
        );
        let offline = WebhookEvent::from_fields(|f| match f {
            "name" => Some("channel_vacated"),
            "channel" => Some("#user:7"),
            _ => None,
        })
        .unwrap();
        assert_eq!(offline.kind(), EventKind::UserOffline);
        assert_eq!(offline.pair().unwrap().0, online.pair().unwrap().0);
        let plain = WebhookEvent::occupied("room".into());
        assert_eq!(plain.kind(), EventKind::ChannelOccupied);
    }
}
