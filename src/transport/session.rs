//! The Pusher-level state of one connection, the single path by which it leaves a channel, and
//! the cleanup that runs when the session is dropped, whatever ended the connection.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::liveness::Liveness;
use super::outbound::Outbound;
use super::wire::WireFrame;
use crate::apps::App;
use crate::engine::{ChannelView, Transition};
use crate::metrics::Metrics;
use crate::protocol::{frames, ChannelKind, ChannelType, SocketId};
use crate::server::state::{Shared, SharedState};
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

/// A connection counted against its app's quota and the metrics; released on drop.
pub struct ConnectionSlot {
    app: Arc<App>,
    metrics: Arc<Metrics>,
}

impl ConnectionSlot {
    /// Takes a slot, or `None` when the app is at `max_connections`.
    pub fn acquire(app: &Arc<App>, metrics: &Arc<Metrics>) -> Option<ConnectionSlot> {
        app.try_add_connection().then(|| {
            metrics.connection(1);
            ConnectionSlot {
                app: app.clone(),
                metrics: metrics.clone(),
            }
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.app.remove_connection();
        self.metrics.connection(-1);
    }
}

/// A signed-in user: its id and its `user_info`, reused for presence without `channel_data`.
pub(super) struct SignedInUser {
    pub id: Arc<str>,
    pub user_info: Option<Arc<serde_json::value::RawValue>>,
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
    /// Dropped after [`Session::drop`] has left every channel.
    _slot: ConnectionSlot,
}

impl Session {
    pub fn new(
        app: Arc<App>,
        shared: SharedState,
        outbound: Outbound,
        liveness: Liveness,
        slot: ConnectionSlot,
    ) -> Self {
        Session {
            socket_id: SocketId::random(),
            app,
            shared,
            outbound,
            channels: HashMap::new(),
            user: None,
            liveness,
            client_events: RateWindow::new(Instant::now()),
            _slot: slot,
        }
    }

    /// Queues a frame for this socket only.
    pub fn send(&self, frame: String) {
        self.outbound.push(&WireFrame::text(&frame));
    }

    /// Queues a frame for every subscriber of `channel` except `except`.
    pub fn broadcast(&self, channel: &str, frame: String, except: Option<SocketId>) {
        let shared = &self.shared;
        shared.cluster.broadcast(
            &self.app,
            channel,
            WireFrame::text(&frame),
            except,
            &shared.metrics,
        );
    }

    /// Leaves one channel: the one path shared by unsubscribe, disconnect, terminate and shutdown.
    pub fn leave(&mut self, channel: &str) {
        if self.channels.remove(channel).is_none() {
            return;
        }
        let (shared, app, me) = (&self.shared, &self.app, self.socket_id);
        let left = app.channels.unsubscribe(channel, me, |left, view| {
            publish_locked(
                shared,
                app,
                me,
                channel,
                &left.transitions,
                Some(left.subscription_count),
                view,
            );
        });
        if left.is_some() {
            shared.metrics.subscription(-1);
        }
    }

    fn leave_all(&mut self) {
        let channels: Vec<Arc<str>> = self.channels.keys().cloned().collect();
        for channel in channels {
            self.leave(&channel);
        }
        if let Some(user) = self.user.take() {
            self.app.users.remove(&user.id, self.socket_id);
        }
    }
}

impl Drop for Session {
    /// Every exit path (close, error, terminate, shutdown, even a panic) leaves every channel.
    fn drop(&mut self) {
        self.leave_all();
    }
}

/// Queues what a subscription change means for others, while the channel is locked: member
/// notices, the subscription count (when `count` changed), and the webhook events.
///
/// Frames are only queued here (no write under the lock), so holding the lock is short.
pub(super) fn publish_locked(
    shared: &Shared,
    app: &App,
    me: SocketId,
    channel: &str,
    transitions: &[Transition],
    count: Option<usize>,
    view: ChannelView<'_, Outbound>,
) {
    let mut queued = 0;
    let mut to_others = |frame: String, except: Option<SocketId>| {
        let frame = WireFrame::text(&frame);
        queued += view.for_each(except, |q| {
            q.push_queued(&frame);
        });
    };
    for transition in transitions {
        match transition {
            Transition::MemberAdded {
                channel,
                user_id,
                user_info,
            } => {
                to_others(
                    frames::member_added(channel, user_id, user_info.as_deref()),
                    Some(me),
                );
            }
            Transition::MemberRemoved { channel, user_id } => {
                to_others(frames::member_removed(channel, user_id), Some(me));
            }
            Transition::Occupied { .. } | Transition::Vacated { .. } => {}
        }
    }
    shared.emit(app, transitions);
    // Not on presence (user counts are the members), server-to-user or encrypted channels
    // (pusher-websocket-java tries to decrypt any internal event there that is not "{}").
    let counted = !matches!(
        ChannelType::of(channel).kind,
        ChannelKind::Presence | ChannelKind::ServerToUser | ChannelKind::PrivateEncrypted
    );
    if let (Some(count), true, true) = (count, app.enable_subscription_count, counted) {
        let event = WebhookEvent::SubscriptionCount {
            channel: Arc::from(channel),
            subscription_count: count,
        };
        shared.webhooks.submit(&app.id, event);
        if count > 0 {
            to_others(frames::subscription_count(channel, count), None);
        }
    }
    shared.metrics.messages_out(queued);
}
