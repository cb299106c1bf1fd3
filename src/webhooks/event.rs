//! Webhook events in Pusher's shapes, built from engine transitions and socket activity.

use std::sync::Arc;

use serde::Serialize;

use crate::engine::Transition;

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
}

/// The event types in [`crate::config::EVENT_TYPES`] order, as bit positions.
const KINDS: [&str; 7] = crate::config::EVENT_TYPES;

impl WebhookEvent {
    /// The event's `name`.
    pub fn kind(&self) -> &'static str {
        KINDS[self.kind_index()]
    }

    /// The position of the event's name in [`crate::config::EVENT_TYPES`].
    pub fn kind_index(&self) -> usize {
        match self {
            WebhookEvent::ChannelOccupied { .. } => 0,
            WebhookEvent::ChannelVacated { .. } => 1,
            WebhookEvent::MemberAdded { .. } => 2,
            WebhookEvent::MemberRemoved { .. } => 3,
            WebhookEvent::ClientEvent { .. } => 4,
            WebhookEvent::CacheMiss { .. } => 5,
            WebhookEvent::SubscriptionCount { .. } => 6,
        }
    }

    /// The channel the event happened on.
    pub fn channel(&self) -> &str {
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::MemberAdded { channel, .. }
            | WebhookEvent::MemberRemoved { channel, .. }
            | WebhookEvent::ClientEvent { channel, .. }
            | WebhookEvent::CacheMiss { channel }
            | WebhookEvent::SubscriptionCount { channel, .. } => channel,
        }
    }
}

impl From<&Transition> for WebhookEvent {
    fn from(transition: &Transition) -> Self {
        match transition {
            Transition::Occupied { channel } => WebhookEvent::ChannelOccupied {
                channel: channel.clone(),
            },
            Transition::Vacated { channel } => WebhookEvent::ChannelVacated {
                channel: channel.clone(),
            },
            Transition::MemberAdded {
                channel, user_id, ..
            } => WebhookEvent::MemberAdded {
                channel: channel.clone(),
                user_id: user_id.clone(),
            },
            Transition::MemberRemoved { channel, user_id } => WebhookEvent::MemberRemoved {
                channel: channel.clone(),
                user_id: user_id.clone(),
            },
        }
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
        assert_eq!(e.kind(), "client_event");
    }
}
