//! The Pusher-level state of one connection, and the single path by which it leaves a channel.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use tokio::time::Instant;

use super::liveness::Liveness;
use super::outbound::Outbound;
use crate::apps::App;
use crate::engine::Transition;
use crate::protocol::{frames, ChannelKind, ChannelType, SocketId};
use crate::server::state::SharedState;
use crate::webhooks::WebhookEvent;

/// Client events accepted in the current one-second window.
pub(super) struct RateWindow {
    started: Instant,
    count: u32,
}

impl RateWindow {
    fn new(now: Instant) -> Self {
        RateWindow {
            started: now,
            count: 0,
        }
    }

    /// Counts one event; false when it would exceed `max` in this second.
    pub(super) fn allow(&mut self, now: Instant, max: u32) -> bool {
        if now.duration_since(self.started).as_secs() >= 1 {
            self.started = now;
            self.count = 0;
        }
        if self.count >= max {
            return false;
        }
        self.count += 1;
        true
    }
}

/// One connection's session.
pub(super) struct Session {
    pub socket_id: SocketId,
    pub app: Arc<App>,
    pub shared: SharedState,
    pub outbound: Outbound,
    /// Subscribed channels, with the presence user id this socket joined as.
    pub channels: HashMap<Arc<str>, Option<Arc<str>>>,
    /// The id this connection signed in as.
    pub user: Option<SignedInUser>,
    pub liveness: Liveness,
    pub client_events: RateWindow,
}

/// A signed-in user: its id and its `user_info`, reused for presence without `channel_data`.
pub(super) struct SignedInUser {
    pub id: Arc<str>,
    pub user_info: Option<Arc<serde_json::value::RawValue>>,
}

impl Session {
    pub fn new(app: Arc<App>, shared: SharedState, outbound: Outbound, liveness: Liveness) -> Self {
        Session {
            socket_id: SocketId::random(),
            app,
            shared,
            outbound,
            channels: HashMap::new(),
            user: None,
            liveness,
            client_events: RateWindow::new(Instant::now()),
        }
    }

    /// Queues a frame for this socket only.
    pub fn send(&self, frame: String) {
        self.outbound.push(Utf8Bytes::from(frame));
    }

    /// Queues a frame for every subscriber of `channel` except `except`.
    pub async fn broadcast(&self, channel: &str, frame: String, except: Option<SocketId>) {
        let shared = &self.shared;
        shared
            .cluster
            .broadcast(
                &self.app,
                channel,
                Utf8Bytes::from(frame),
                except,
                &shared.metrics,
            )
            .await;
    }

    /// Tells the other members about presence changes and hands transitions on.
    pub async fn publish_transitions(&self, transitions: Vec<Transition>) {
        let transitions = self.shared.cluster.resolve(&self.app, transitions).await;
        for transition in &transitions {
            match transition {
                Transition::MemberAdded {
                    channel,
                    user_id,
                    user_info,
                } => {
                    let frame = frames::member_added(channel, user_id, user_info.as_deref());
                    self.broadcast(channel, frame, Some(self.socket_id)).await;
                }
                Transition::MemberRemoved { channel, user_id } => {
                    self.broadcast(
                        channel,
                        frames::member_removed(channel, user_id),
                        Some(self.socket_id),
                    )
                    .await;
                }
                Transition::Occupied { .. } | Transition::Vacated { .. } => {}
            }
        }
        self.shared.emit(&self.app, &transitions);
    }

    /// Sends `pusher_internal:subscription_count` (and its webhook) when the app enables it.
    pub async fn announce_subscription_count(&self, channel: &str, count: usize) {
        let kind = ChannelType::of(channel).kind;
        if !self.app.enable_subscription_count
            || matches!(kind, ChannelKind::Presence | ChannelKind::ServerToUser)
        {
            return;
        }
        let event = WebhookEvent::SubscriptionCount {
            channel: Arc::from(channel),
            subscription_count: count,
        };
        self.shared.webhooks.submit(&self.app.id, event);
        if count > 0 {
            self.broadcast(channel, frames::subscription_count(channel, count), None)
                .await;
        }
    }

    /// Leaves one channel: the one path shared by unsubscribe, disconnect, terminate and shutdown.
    pub async fn leave(&mut self, channel: &str) {
        if self.channels.remove(channel).is_none() {
            return;
        }
        let Some(left) = self.app.channels.unsubscribe(channel, self.socket_id) else {
            return;
        };
        self.shared.metrics.subscription(-1);
        self.publish_transitions(left.transitions).await;
        self.announce_subscription_count(channel, left.subscription_count)
            .await;
    }

    /// Leaves every channel and forgets the sign-in; run once when the connection ends.
    pub async fn leave_all(&mut self) {
        let channels: Vec<Arc<str>> = self.channels.keys().cloned().collect();
        for channel in channels {
            self.leave(&channel).await;
        }
        if let Some(user) = self.user.take() {
            self.app.users.remove(&user.id, self.socket_id);
        }
    }
}
